"""PMP virtualization: the firmware's virtual pmpcfg/pmpaddr registers, decoded into address ranges
and enforced on every translated access, plus the memory the monitor keeps for itself.

The softmmu calls `check` (an access guard, runtime/core/mmu.py, installed by the monitor) for each access
that leaves the inline TLB fast path: loads, stores, instruction fetches and page-table walks.
Pages go into the fast-path
TLB only when `page_uniform` says one PMP decision covers the whole page, so an entry that covers
part of a page keeps that page on the slow path, where every access is checked. Any change of the
PMP registers flushes the hart's TLBs and jump cache (`Monitor.pmp_changed`).

Rules (privileged spec 3.7.1):
- Entries are checked from the lowest index; the first entry that matches any byte of an access
  decides it: "The lowest-numbered PMP entry that matches any byte of an access determines whether
  that access succeeds or fails." An entry that matches only some of the bytes makes it fail.
- M-mode (the firmware) is restricted only by locked entries: "If the L bit is clear and the
  privilege mode of the access is M, the access succeeds."
- "If no PMP entry matches an M-mode access, the access succeeds. If no PMP entry matches an
  S-mode or U-mode access, but at least one PMP entry is implemented, the access fails." As QEMU
  does, an entry counts here once it is active (A != OFF): before the firmware programs any entry
  the OS world is not restricted.
- Page-table walks are checked with S-mode privilege (3.7.2: "the effective privilege mode is S").
- MPRV accesses of the firmware are checked with the privilege in MPP (the softmmu passes it).

The monitor's own memory (`reserved`) is denied to every privilege, before the PMP entries: it is
what Miralis protects with its first physical PMP entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.core.hart import Hart
from runtime.core.machine_api import PAGE_SIZE
from translator import csrs as C

PMP_R, PMP_W, PMP_X, PMP_L = 0x01, 0x02, 0x04, 0x80
A_OFF, A_TOR, A_NA4, A_NAPOT = 0, 1, 2, 3
ACCESS_BIT = {"r": PMP_R, "w": PMP_W, "x": PMP_X}
PAGE_MASK = ~(PAGE_SIZE - 1)


def napot_range(addr: int) -> tuple[int, int]:
    """[lo, hi) of a NAPOT pmpaddr: t trailing ones encode 2^(t+3) bytes (spec Table 3.10)."""
    t = (addr ^ (addr + 1)).bit_length() - 1
    lo = (addr >> t << t) << 2
    return lo, lo + (1 << (t + 3))


def decode(cfg: list[int], addr: list[int]) -> tuple[list[tuple[int, int, int]], bool]:
    """The entries that can match, in priority order as (lo, hi exclusive, cfg), and whether any
    entry is active. A TOR entry with pmpaddr[i-1] >= pmpaddr[i] "matches no addresses"."""
    out = []
    active = False
    for i, c in enumerate(cfg):
        a = (c >> 3) & 3
        if a == A_OFF:
            continue
        active = True
        if a == A_TOR:
            lo, hi = (addr[i - 1] << 2 if i else 0), addr[i] << 2
        elif a == A_NA4:
            lo = addr[i] << 2
            hi = lo + 4
        else:
            lo, hi = napot_range(addr[i])
        if lo < hi:
            out.append((lo, hi, c))
    return out, active


@dataclass
class HartPmp:
    """The decoded PMP of one hart."""

    entries: list[tuple[int, int, int]] = field(default_factory=list)
    active: bool = False
    locked: bool = False  # Some entry restricts M-mode


class VirtualPmp:
    """PMP checks for the harts of one machine."""

    def __init__(self, reserved: list[tuple[int, int]] | None = None) -> None:
        # The monitor's memory as [lo, hi) ranges: no guest access at any privilege.
        self.reserved = [(base, base + size) for base, size in (reserved or [])]
        self.harts: dict[int, HartPmp] = {}

    def update(self, hart: Hart, cfg: list[int], addr: list[int]) -> None:
        """Re-decodes a hart's PMP after a pmpcfg/pmpaddr write."""
        entries, active = decode(cfg, addr)
        self.harts[hart.id] = HartPmp(entries, active, any(c & PMP_L for _, _, c in entries))

    def check(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        """May `priv` perform `access` ("r", "w", "x") on [paddr, paddr + size)?"""
        end = paddr + size
        for lo, hi in self.reserved:
            if paddr < hi and lo < end:
                return False
        st = self.harts.get(hart.id)
        if st is None or (priv == C.PRV_M and not st.locked):
            return True
        for lo, hi, cfg in st.entries:
            if paddr < hi and lo < end:
                if paddr < lo or end > hi:
                    return False  # Matches some but not all bytes
                if priv == C.PRV_M and not cfg & PMP_L:
                    return True
                return bool(cfg & ACCESS_BIT[access])
        return priv == C.PRV_M or not st.active

    def page_uniform(self, hart: Hart, priv: int, paddr: int) -> bool:
        """Is the page of paddr decided alike for every byte at `priv` (so a fast-path TLB entry
        is safe)?"""
        lo_p = paddr & PAGE_MASK
        hi_p = lo_p + PAGE_SIZE
        for lo, hi in self.reserved:
            if lo_p < hi and lo < hi_p:
                return False
        st = self.harts.get(hart.id)
        if st is None or (priv == C.PRV_M and not st.locked):
            return True
        for lo, hi, _cfg in st.entries:
            if lo_p < hi and lo < hi_p:
                return lo <= lo_p and hi_p <= hi
        return True
