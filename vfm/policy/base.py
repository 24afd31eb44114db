"""The policy interface (`Policy`, the hooks vfm/policy/__init__.py describes), what a world switch
is (`Switch`), and the access guard that puts the policies' memory ranges above the PMP."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from runtime.core.hart import Hart
from runtime.core.machine_api import PAGE_SIZE
from translator.csrs import INTERRUPT_BIT, PRV_M
from vfm import sbi
from vfm.causes import cause_name, irq_name

PAGE_MASK = ~(PAGE_SIZE - 1)
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
    """The access guard (runtime/core/mmu.py `AccessGuard`) of a monitor with policies: the virtual
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

    def os_rights(self, hart: Hart, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """The PMP's runs, with no rights on a page that a policy's OS range touches (each access
        there must reach the policy)."""
        runs = self.pmp.os_rights(hart, lo, hi)
        for rlo, rhi, _ in self.os:
            a, b = rlo & PAGE_MASK, (rhi + PAGE_SIZE - 1) & PAGE_MASK
            out = []
            for x, y, r in runs:
                if x < b and a < y and r:
                    out += [run for run in ((x, max(x, a), r), (max(x, a), min(y, b), 0), (min(y, b), y, r))
                            if run[0] < run[1]]
                else:
                    out.append((x, y, r))
            runs = out
        return runs

    def page_uniform(self, hart: Hart, priv: int, paddr: int) -> bool:
        if not self.pmp.page_uniform(hart, priv, paddr):
            return False
        lo_p = paddr & PAGE_MASK
        hi_p = lo_p + PAGE_SIZE
        for lo, hi, _ in (self.fw if hart.priv == PRV_M else self.os):
            if lo_p < hi and lo < hi_p:
                return False
        return True
