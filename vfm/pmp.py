"""PMP virtualization: the firmware's virtual pmpcfg/pmpaddr registers, decoded into address ranges
and enforced on every translated access, plus the memory the monitor keeps for itself.

The softmmu calls `check` (an access guard, runtime/core/mmu.py, installed by the monitor) for each access
that leaves the inline TLB fast path: loads, stores, instruction fetches and page-table walks.
Pages go into the fast-path
TLB only when `page_uniform` says one PMP decision covers the whole page, so an entry that covers
part of a page keeps that page on the slow path, where every access is checked; `os_rights` tells
the native TLB refill, in runs of pages, what the OS world may do on every byte of a page. Any
change of the PMP registers flushes the hart's TLBs, what the refill knows, and the jump cache
(`Monitor.pmp_changed`).

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
from runtime.core.machine_api import OS_RIGHTS_ALL, OS_RIGHTS_S_SHIFT, PAGE_SIZE
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

    def os_rights(self, hart: Hart, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """What the OS world (U and S) may do on every byte of each page of [lo, hi) (page
        aligned), as runs (a, b, rights) (runtime/core/mmu.py `AccessGuard.os_rights`). Exact
        except on a page that an entry or a reserved range covers only in part: no rights."""
        st = self.harts.get(hart.id)
        cuts = {lo, hi}
        bounds = [x for r in self.reserved for x in r]
        if st is not None:
            bounds += [x for e in st.entries for x in e[:2]]
        for x in bounds:
            for p in (x & PAGE_MASK, (x + PAGE_SIZE - 1) & PAGE_MASK):
                if lo < p < hi:
                    cuts.add(p)
        # Between two cuts, every entry and reserved range covers all of the span or none of it,
        # except in a page holding a bound that is not page aligned (a span of its own).
        runs: list[tuple[int, int, int]] = []
        pts = sorted(cuts)
        for a, b in zip(pts, pts[1:], strict=False):
            r = self._span_rights(st, a, b)
            if runs and runs[-1][2] == r:
                runs[-1] = (runs[-1][0], b, r)
            else:
                runs.append((a, b, r))
        return runs

    def _span_rights(self, st: HartPmp | None, a: int, b: int) -> int:
        """The OS world's rights on every byte of [a, b), by `check`'s rules for U and S; none if
        no single decision covers the span."""
        for lo, hi in self.reserved:
            if a < hi and lo < b:
                return 0
        if st is None:
            return OS_RIGHTS_ALL
        for lo, hi, cfg in st.entries:
            if a < hi and lo < b:
                # 3.7.1: "The lowest-numbered PMP entry that matches any byte of an access
                # determines whether that access succeeds or fails"; one that matches only part
                # of the span decides some accesses in it and not others.
                if a < lo or b > hi:
                    return 0
                rwx = cfg & (PMP_R | PMP_W | PMP_X)
                return rwx | rwx << OS_RIGHTS_S_SHIFT
        # 3.7.1: "If no PMP entry matches an S-mode or U-mode access, but at least one PMP entry
        # is implemented, the access fails" (implemented: active, as in `check`).
        return 0 if st.active else OS_RIGHTS_ALL

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
