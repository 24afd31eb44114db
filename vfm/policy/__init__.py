"""Security policies of the monitor: what the firmware may do to the OS, chosen with
`mirage jit-run --policy NAME` (several `--policy` options combine, in the order given).

A policy is a `Policy` subclass (vfm/policy/base.py) in a module of this package, registered in
`_registry`. The monitor
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

from vfm.policy.base import Policy, PolicyError, PolicyGuard, Switch

__all__ = ["Policy", "PolicyError", "PolicyGuard", "Switch", "make", "names"]


def _registry() -> dict[str, type[Policy]]:
    # Imported here: a run without --policy does not pay for them at start-up.
    from vfm.policy.audit import Audit
    from vfm.policy.protect_payload import ProtectPayload

    return {p.name: p for p in (ProtectPayload, Audit)}


def names() -> list[str]:
    return sorted(_registry())


def make(selected: list[str], audit_log: str | None = None) -> list[Policy]:
    """The policies named on the command line, in order (duplicates once); PolicyError on an
    unknown name or an option without the policy it belongs to."""
    if not selected and audit_log is None:
        return []
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
