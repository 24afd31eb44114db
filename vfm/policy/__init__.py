"""Security policies of the monitor: what the firmware may do to the OS, chosen with
`mirage jit-run --policy NAME` (several `--policy` options combine, in the order given).

A policy is a `Policy` subclass in a module of this package, registered in `POLICIES`. The monitor
calls its hooks at the points below and nowhere else; with no policy it calls none, installs no
guard of its own, and every path is the one it was.

- `to_firmware(hart, switch)`: a world switch OS -> firmware, before the trap is injected
  (`switch` says why: SBI extension and function for an ecall, else the cause), and
  `to_os(hart, priv) -> priv`: firmware -> OS, after the firmware's mret/sret chose where (pc)
  and in which privilege the OS resumes, before it runs; a policy may change both. The first
  `to_os` is the boot hand-over.
- `firmware_access(hart, paddr, size, access, priv)`: a firmware load, store, fetch, MPRV access
  or page-table walk that touches one of the ranges of `firmware_ranges()`; False blocks it (the
  firmware gets the access fault a PMP would give). Accesses reach this on the slow path only: the
  monitor keeps guarded pages out of the firmware's fast-path TLB entries.
- `os_access(hart, paddr, size, access, priv)`: the same for OS-world accesses to the ranges of
  `os_ranges()`: how a policy that owns memory of its own (an enclave, pages lent by the OS) keeps
  the OS out of it. Ranges may change at any time; the policy then calls `Monitor.guard_changed`.
- `csr_write(hart, num, value)` for the CSR numbers in `csr_writes` (virtual PMP registers
  included): the value to write, or None to drop the write.
- `interrupt(hart, irq)`: an M-level interrupt the monitor took; True when the policy handled it.
- `firmware_tick(hart)` (if `watches_firmware`): at each interrupt check while the firmware runs,
  so a policy can end a firmware's turn (the monitor owns the OS's timer).
- `close()`: the run ended (flush logs); `stats()`: counters for `--stats` (under "vfm/policies").
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from runtime.hart import Hart
from translator import abi
from translator.csrs import INTERRUPT_BIT, PRV_M
from vfm import sbi
from vfm.causes import cause_name, irq_name

PAGE_MASK = ~(abi.PAGE_SIZE - 1)
REPORT_LIMIT = 10  # Blocked attempts reported on stderr per kind; the rest are only counted


class PolicyError(Exception):
    """A bad policy name or option (the command line turns it into a one-line error)."""


@dataclass(slots=True)
class Switch:
    """Why the OS world entered the firmware: an M-level trap (cause with INTERRUPT_BIT for an
    interrupt, tval) at epc from privilege `priv`; for an SBI call (ecall from S), the extension
    and function (a7, a6)."""

    cause: int
    tval: int
    epc: int
    priv: int
    eid: int | None = None
    fid: int | None = None

    @property
    def is_ecall(self) -> bool:
        return self.eid is not None

    @property
    def is_interrupt(self) -> bool:
        return bool(self.cause & INTERRUPT_BIT)

    def label(self) -> str:
        """"TIME.set_timer", "legacy.console_putchar", "interrupt MTI", "trap illegal_insn"."""
        if self.eid is not None:
            ext, fn = sbi.call_name(self.eid, self.fid)
            return f"{ext}.{fn}"
        if self.is_interrupt:
            return f"interrupt {irq_name(self.cause & 63)}"
        return f"trap {cause_name(self.cause)}"


class Policy:
    """Base class: every hook does nothing, so a policy overrides only what it needs."""

    name = ""
    csr_writes: frozenset[int] = frozenset()
    watches_firmware = False

    def __init__(self) -> None:
        self.blocked: Counter[str] = Counter()

    @classmethod
    def create(cls, options: dict) -> Policy:
        """The policy for the command line's options (e.g. "audit_log"); PolicyError if unusable."""
        return cls()

    def attach(self, monitor) -> None:
        self.mon = monitor

    # Memory
    def firmware_ranges(self) -> list[tuple[int, int]]:
        """[lo, hi) physical ranges whose firmware accesses go through `firmware_access`."""
        return []

    def os_ranges(self) -> list[tuple[int, int]]:
        return []

    def firmware_access(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        return True

    def os_access(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        return True

    # World switches and the firmware's turn
    def to_firmware(self, hart: Hart, switch: Switch) -> None:
        pass

    def to_os(self, hart: Hart, priv: int) -> int:
        """Returns the privilege the OS resumes at (the firmware's choice unless overruled)."""
        return priv

    def firmware_tick(self, hart: Hart) -> None:
        pass

    # CSRs and interrupts
    def csr_write(self, hart: Hart, num: int, value: int) -> int | None:
        return value

    def interrupt(self, hart: Hart, irq: int) -> bool:
        return False

    # End of run
    def close(self) -> None:
        pass

    def stats(self) -> dict:
        return {}

    # For subclasses
    def report(self, kind: str, message: str) -> None:
        """A blocked attempt: counted under `kind` (stats "blocked"), and the first few of each
        kind are reported on stderr."""
        blocked = self.blocked
        blocked[kind] += 1
        if blocked[kind] <= REPORT_LIMIT:
            more = " (further ones of this kind only counted)" if blocked[kind] == REPORT_LIMIT else ""
            print(f"mirage: {self.name}: blocked: {message}{more}", file=sys.stderr, flush=True)


class PolicyGuard:
    """The access guard (runtime/mmu.py `AccessGuard`) of a monitor with policies: the virtual
    PMP first, then each policy whose ranges the access touches, for the world it comes from
    (the firmware: `hart.priv` is M, MPRV accesses included). Pages in a guarded range get no
    fast-path TLB entry in that world, so each access to them comes here."""

    def __init__(self, pmp, policies: list[Policy]) -> None:
        self.pmp = pmp
        self.fw = [(lo, hi, p.firmware_access) for p in policies for lo, hi in p.firmware_ranges()]
        self.os = [(lo, hi, p.os_access) for p in policies for lo, hi in p.os_ranges()]
        self.active = bool(self.fw or self.os)

    def check(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        if not self.pmp.check(hart, paddr, size, access, priv):
            return False
        end = paddr + size
        ok = True
        for lo, hi, allow in (self.fw if hart.priv == PRV_M else self.os):
            # Every policy sees the access (an audit logs what another blocks).
            if paddr < hi and lo < end and not allow(hart, paddr, size, access, priv):
                ok = False
        return ok

    def page_uniform(self, hart: Hart, mmu: int, paddr: int) -> bool:
        if not self.pmp.page_uniform(hart, mmu, paddr):
            return False
        lo_p = paddr & PAGE_MASK
        hi_p = lo_p + abi.PAGE_SIZE
        for lo, hi, _ in (self.fw if hart.priv == PRV_M else self.os):
            if lo_p < hi and lo < hi_p:
                return False
        return True


def _registry() -> dict[str, type[Policy]]:
    from vfm.policy.audit import Audit
    from vfm.policy.protect_payload import ProtectPayload

    return {p.name: p for p in (ProtectPayload, Audit)}


def names() -> list[str]:
    return sorted(_registry())


def make(selected: list[str], audit_log: str | None = None) -> list[Policy]:
    """The policies named on the command line, in order (duplicates once); PolicyError on an
    unknown name or an option without the policy it belongs to."""
    known = _registry()
    seen: list[str] = []
    for name in selected:
        if name not in known:
            raise PolicyError(f"unknown policy {name!r} (known: {', '.join(sorted(known))})")
        if name not in seen:
            seen.append(name)
    if audit_log is not None and "audit" not in seen:
        raise PolicyError("--audit-log needs --policy audit")
    options = {"audit_log": audit_log}
    return [known[name].create(options) for name in seen]
