"""Softmmu: Sv39 page walks, permission checks and the TLB the generated code probes inline.

The TLB is QEMU's design: per MMU index, a direct-mapped table of (read tag, write tag, addend);
a tag matches `vaddr & (PAGE_MASK | (size - 1))`, so a miss, a misaligned address or a page that
must be watched (translated code, MMIO, tohost) takes the slow path. The interpreter fetches
through a code TLB of its own (tag, addend), so code and data pages do not evict each other.
"""

from __future__ import annotations

import ctypes
from array import array
from typing import Protocol

from runtime.core.hart import Hart, Trap
from runtime.core.memory import PhysicalMemory
from translator import abi
from translator import csrs as C
from translator.abi import ffi

MASK64 = (1 << 64) - 1
PAGE_MASK = ~(abi.PAGE_SIZE - 1) & MASK64
INVALID = abi.TLB_INVALID
# Device-page translations kept per hart at most (Mmu.translate).
IO_TLB_SIZE = 64

ACCESS_FAULT = {"r": C.LOAD_ACCESS, "w": C.STORE_ACCESS, "x": C.INSN_ACCESS}
PAGE_FAULT = {"r": C.LOAD_PAGE_FAULT, "w": C.STORE_PAGE_FAULT, "x": C.INSN_PAGE_FAULT}

# The privilege each TLB (MMU index) serves
MMU_PRIV = {abi.MMU_U: C.PRV_U, abi.MMU_S: C.PRV_S, abi.MMU_S_SUM: C.PRV_S, abi.MMU_M: C.PRV_M}

# The rights an access guard reports for the OS world (`AccessGuard.os_rights`): the PMP's R, W,
# X bits (privileged spec 3.7.1, pmpcfg) for U-mode, and the same shifted by OS_RIGHTS_S_SHIFT
# for S-mode; the native refill's bits (abi.GPERM_*) take U's for MMU_U, S's for MMU_S and MMU_S_SUM.
OS_RIGHTS_S_SHIFT = 3
OS_RIGHTS_ALL = (1 << 2 * OS_RIGHTS_S_SHIFT) - 1

# PTE bits (privileged spec 4.3.1)
PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = (1 << i for i in range(8))


class AccessGuard(Protocol):
    """Physical-memory protection above the page tables (the PMP and what the monitor adds): the
    softmmu asks `check` on every access that leaves the inline TLB fast path (loads, stores,
    fetches, page-table walks), and installs a fast-path entry for a page only if `page_uniform`
    says one decision covers all of it, so guarded pages keep every access on the slow path. The
    native TLB refill acts on what `os_rights` reported for all of RAM when the guard was
    installed or last changed (Mmu.guard_changed)."""

    def check(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        """May `priv` perform `access` ("r", "w", "x") on [paddr, paddr + size)? `hart.priv` tells
        the world: PRV_M is the firmware (also for its MPRV accesses, where priv is MPP)."""
        ...

    def page_uniform(self, hart: Hart, priv: int, paddr: int) -> bool:
        """May the page of paddr get a fast-path entry in a TLB of `hart` that serves accesses at
        privilege `priv` (PRV_M: the firmware's own)?"""
        ...

    def os_rights(self, hart: Hart, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """What the OS world of `hart` may do on the pages of [lo, hi) (page aligned), as sorted
        disjoint page-aligned runs (a, b, rights) within it (OS_RIGHTS_*; a page in no run: no
        rights). A right may be reported only if `check` allows that access at that privilege on
        every byte of every page of the run, and keeps doing so until the guard's owner calls
        `guard_changed`: it lets the native refill act without asking `check`."""
        ...


class Mmu:
    """Address translation for the harts of one machine."""

    def __init__(self, mem: PhysicalMemory) -> None:
        self.mem = mem
        # Physical pages that must not get fast-path write entries: they hold translated code or
        # watched words. Stores to them are done natively unless they overlap one of those
        # (abi.TLB_NOTDIRTY): `code_map` has per RAM page the 64-byte chunks holding them.
        self.write_watch: set[int] = set()
        self.code_map = ffi.new("uint64_t[]", max(1, mem.ram_size >> abi.PAGE_BITS))
        self.stats_walks = 0
        self.stats_fills = 0
        # Size of the leaf the last translation used (0: no page table); a TLB entry records it,
        # so that an sfence.vma naming any address of a superpage drops entries cut from it.
        self.leaf_size = 0
        # The native TLB scans (translator/softmmu.py), set by the machine once its runtime code is
        # linked: fn(hart_t *, page offset in RAM) and fn(hart_t *, vaddr, MMU-index mask).
        self.unwrite = None
        self.flush_page_native = None
        # The guard's bound methods (set_guard): fn(hart, paddr, size, access, priv) -> bool, and
        # fn(hart, priv, paddr) -> bool; None: no guard.
        self.pmp_check = None
        self.pmp_page = None
        self.os_rights = None  # The guard's os_rights; None: no guard, the OS may do anything
        # Per hart id, its gperm table (abi.GPERM_*, one uint16_t per RAM page: add_hart) and a
        # view of it.
        self._gperm: dict[int, tuple[object, memoryview]] = {}
        self.trace = None  # runtime.frontends.trace.Tracer for -d mmu
        # Translations of device pages by hart id: {(MMU index, virtual page, access): (physical
        # page, pages in its leaf - 1)} (translate), dropped with the hart's TLBs.
        self._io: dict[int, dict[tuple[int, int, str], tuple[int, int]]] = {}

    def set_guard(self, guard: AccessGuard | None) -> None:
        """Installs the access guard (the caller flushes the TLBs filled under the old one)."""
        self.pmp_check = None if guard is None else guard.check
        self.pmp_page = None if guard is None else guard.page_uniform
        self.os_rights = None if guard is None else guard.os_rights

    def add_hart(self, hart: Hart) -> None:
        """Gives `hart` its gperm table (abi.GPERM_*: what the native refill may do on each RAM
        page), filled from the guard."""
        t = ffi.new("uint16_t[]", max(1, self.mem.ram_size >> abi.PAGE_BITS))
        self._gperm[hart.id] = (t, memoryview(ffi.buffer(t)).cast("H"))
        hart.s.gperm = t
        self._learn(hart)

    # Translation
    def translate(self, hart: Hart, vaddr: int, access: str, mmu: int, size: int = 1) -> int:
        """Virtual to physical for one access of `size` bytes (within a page); raises Trap on a fault."""
        self.leaf_size = 0
        if mmu == abi.MMU_M:
            paddr = vaddr
            priv = C.PRV_M
        else:
            priv = C.PRV_U if mmu == abi.MMU_U else C.PRV_S
            io = self._io.get(hart.id)
            key = (mmu, vaddr >> abi.PAGE_BITS, access)
            ppage = io.get(key) if io is not None else None
            if ppage is not None:
                paddr = ppage[0] | (vaddr & (abi.PAGE_SIZE - 1))
            else:
                try:
                    paddr = self.walk(hart, vaddr, access, priv, mmu == abi.MMU_S_SUM)
                except Trap as t:
                    if self.trace is not None:
                        self.trace.mmu(f"fault {access} va={vaddr:#x} cause={t.cause} satp={hart.satp:#x}")
                    raise
                if self.trace is not None:
                    if hart.satp >> 60:
                        self.trace.mmu(f"walk {access} va={vaddr:#x} -> pa={paddr:#x}")
                elif hart.satp >> 60 and not self.mem.is_ram(paddr, 1):
                    # A device page: no native TLB entry holds it, so its translation is kept
                    # here, as a TLB would keep it, until the same flushes.
                    if io is None or len(io) >= IO_TLB_SIZE:
                        self._io_clear(hart)
                        io = self._io[hart.id] = {}
                    span = (self.leaf_size - 1) >> abi.PAGE_BITS
                    io[key] = (paddr & PAGE_MASK, span)
                    self._io_count(hart, key[1], span, 1)
        if self.pmp_check is not None and not self.pmp_check(hart, paddr, size, access, priv):
            raise Trap(ACCESS_FAULT[access], vaddr)
        return paddr

    def fetch_translate(self, hart: Hart, vaddr: int) -> int:
        if hart.priv == C.PRV_M:
            return self.translate(hart, vaddr, "x", abi.MMU_M)
        return self.translate(hart, vaddr, "x", abi.MMU_U if hart.priv == C.PRV_U else abi.MMU_S)

    def walk(self, hart: Hart, vaddr: int, access: str, priv: int, sum_: bool, probe: bool = False) -> int:
        """The Sv39 translation of vaddr by `hart`'s satp; raises Trap on a fault. `probe`: a
        debugger's look, without side effects (no guard check, no permission check, no A/D
        update, nothing recorded), as QEMU's debug accesses."""
        satp = hart.satp
        mode = satp >> 60
        if mode == 0:
            return vaddr & MASK64
        # Sv39 (privileged spec 4.4): bits 63:39 must equal bit 38.
        if not probe:
            self.stats_walks += 1
        top = vaddr >> 38
        if top != 0 and top != (MASK64 >> 38):
            raise Trap(PAGE_FAULT[access], vaddr)
        a = (satp & ((1 << 44) - 1)) << 12
        mxr = bool(hart.s.mstatus & C.MSTATUS_MXR)
        for level in (2, 1, 0):
            vpn = (vaddr >> (12 + 9 * level)) & 0x1FF
            pte_addr = a + vpn * 8
            pte = self.mem.read(pte_addr, 8) if self.mem.is_ram(pte_addr, 8) else None
            # PMP checks the walk's implicit accesses as S-mode; a violation raises the access fault
            # of the original access (privileged spec 3.7.2 and 4.3.2 step 2).
            if pte is None or (self.pmp_check is not None and not probe
                               and not self.pmp_check(hart, pte_addr, 8, "r", C.PRV_S)):
                raise Trap(ACCESS_FAULT[access], vaddr)
            if not pte & PTE_V or (not pte & PTE_R and pte & PTE_W) or pte >> 54:
                raise Trap(PAGE_FAULT[access], vaddr)
            if pte & (PTE_R | PTE_X):
                if not probe:
                    self._check_leaf(pte, access, priv, sum_, mxr, vaddr)
                ppn = (pte >> 10) & ((1 << 44) - 1)
                if level and ppn & ((1 << (9 * level)) - 1):
                    raise Trap(PAGE_FAULT[access], vaddr)  # Misaligned superpage
                offset_mask = (1 << (12 + 9 * level)) - 1
                if probe:
                    return ((ppn << 12) & ~offset_mask) | (vaddr & offset_mask)
                want = PTE_A | (PTE_D if access == "w" else 0)
                if pte & want != want:
                    # Hardware A/D update, as QEMU does (privileged spec 4.3.1 permits either).
                    self.mem.write(pte_addr, 8, pte | want)
                self.leaf_size = offset_mask + 1
                return ((ppn << 12) & ~offset_mask) | (vaddr & offset_mask)
            a = ((pte >> 10) & ((1 << 44) - 1)) << 12
        raise Trap(PAGE_FAULT[access], vaddr)

    @staticmethod
    def _check_leaf(pte: int, access: str, priv: int, sum_: bool, mxr: bool, vaddr: int) -> None:
        if pte & PTE_U:
            if priv == C.PRV_S and (access == "x" or not sum_):
                raise Trap(PAGE_FAULT[access], vaddr)
        elif priv == C.PRV_U:
            raise Trap(PAGE_FAULT[access], vaddr)
        ok = {"r": pte & PTE_R or (mxr and pte & PTE_X), "w": pte & PTE_W, "x": pte & PTE_X}[access]
        if not ok:
            raise Trap(PAGE_FAULT[access], vaddr)

    # TLB
    def _fillable(self, hart: Hart, mmu: int, paddr: int) -> bool:
        """Whether the page of paddr may get a fast-path entry: RAM, and one guard decision for
        all of it. Counts the fill."""
        if not self.mem.is_ram(paddr & PAGE_MASK, abi.PAGE_SIZE):
            return False
        if self.pmp_page is not None and not self.pmp_page(hart, MMU_PRIV[mmu], paddr):
            return False
        self.stats_fills += 1
        return True

    def fill(self, hart: Hart, mmu: int, vaddr: int, paddr: int, write: bool) -> None:
        """Installs a fast-path entry for a RAM page after a successful access."""
        if not self._fillable(hart, mmu, paddr):
            return
        ppage, vpage = paddr & PAGE_MASK, vaddr & PAGE_MASK
        idx = (vaddr >> abi.PAGE_BITS) & (abi.TLB_SIZE - 1)
        e = hart.s.tlb[mmu][idx]
        addend = (ppage - self.mem.ram_base - vpage) & MASK64
        if e.addend != addend or e.read != vpage:
            e.write = INVALID
        e.read = vpage
        e.addend = addend
        self._note_leaf(hart, e)
        if write:
            e.write = vpage if ppage >> abi.PAGE_BITS not in self.write_watch else vpage | abi.TLB_NOTDIRTY

    def fill_code(self, hart: Hart, mmu: int, vaddr: int, paddr: int) -> None:
        """Installs a code TLB entry for a RAM page after a successful fetch (the interpreter's
        fast fetch)."""
        if not self._fillable(hart, mmu, paddr):
            return
        vpage = vaddr & PAGE_MASK
        idx = (vaddr >> abi.PAGE_BITS) & (abi.CTLB_SIZE - 1)
        e = hart.s.ctlb[mmu][idx]
        e.tag = vpage
        e.addend = ((paddr & PAGE_MASK) - self.mem.ram_base - vpage) & MASK64
        self._note_leaf(hart, e)

    def _note_leaf(self, hart: Hart, e) -> None:
        """Records in a TLB entry the leaf of the last translation (superpages: see flush_page)."""
        e.leaf = max(self.leaf_size, abi.PAGE_SIZE)
        if self.leaf_size > abi.PAGE_SIZE:
            hart.s.nsuper += 1

    def _learn(self, hart: Hart) -> None:
        """Fills `hart`'s gperm table (abi.GPERM_*) from one `os_rights` query over all of RAM:
        every access kind through every MMU index on every page, and whether a page may get fast
        write entries (or TLB_NOTDIRTY ones: it holds code or watched words)."""
        _t, mv = self._gperm[hart.id]
        base, n = self.mem.ram_base, len(mv)
        end = base + (n << abi.PAGE_BITS)
        runs = [(base, end, OS_RIGHTS_ALL)] if self.os_rights is None else self.os_rights(hart, base, end)
        mv[:] = array("H", [abi.GPERM_WFAST]) * n
        for a, b, r in runs:
            i, j = (a - base) >> abi.PAGE_BITS, (b - base) >> abi.PAGE_BITS
            if r and 0 <= i < j <= n:
                mv[i:j] = array("H", [self._gperm_bits(r) | abi.GPERM_WFAST]) * (j - i)
        for ppn in self.write_watch:
            i = ppn - (base >> abi.PAGE_BITS)
            if 0 <= i < n:
                mv[i] = mv[i] & ~abi.GPERM_WFAST | abi.GPERM_CODE

    @staticmethod
    def _gperm_bits(rights: int) -> int:
        """The gperm bits (abi.GPERM_*) of a page the guard gives `rights` (OS_RIGHTS_*) on."""
        u = rights & ((1 << OS_RIGHTS_S_SHIFT) - 1)
        s = rights >> OS_RIGHTS_S_SHIFT
        # The PMP decides by privilege (3.7.1), the MMU index adds only the page tables' SUM.
        return u << 3 * abi.MMU_U | s << 3 * abi.MMU_S | s << 3 * abi.MMU_S_SUM

    def _watch_bits(self, ppn: int) -> int:
        """GPERM_CODE for a page with code or watched words, else GPERM_WFAST."""
        return abi.GPERM_CODE if ppn in self.write_watch else abi.GPERM_WFAST

    def watch_page(self, ppn: int, harts: list[Hart]) -> None:
        """Physical page `ppn` now holds code or a watched word (mark_code says which bytes):
        removes the fast write entries that map it in every hart's TLBs and tells the native
        refill to make TLB_NOTDIRTY ones from then on."""
        if ppn in self.write_watch:
            return
        self.write_watch.add(ppn)
        pkey = ((ppn << abi.PAGE_BITS) - self.mem.ram_base) & MASK64
        self._set_watch_bits(ppn)
        for h in harts:
            if self.unwrite is not None:
                self.unwrite(h.s, pkey)

    def _set_watch_bits(self, ppn: int) -> None:
        """Brings GPERM_WFAST and GPERM_CODE of page ppn in every hart's gperm table up to date."""
        i = ((ppn << abi.PAGE_BITS) - self.mem.ram_base) >> abi.PAGE_BITS
        bits = self._watch_bits(ppn)
        for _t, mv in self._gperm.values():
            if 0 <= i < len(mv):
                mv[i] = mv[i] & ~(abi.GPERM_WFAST | abi.GPERM_CODE) | bits

    def mark_code(self, lo: int, hi: int) -> None:
        """Physical bytes [lo, hi) hold translated code or a watched word (within RAM, on watched
        pages): stores over them must reach Python (the 64-byte chunks of the code map)."""
        base = self.mem.ram_base
        for ppn in range(lo >> abi.PAGE_BITS, ((hi - 1) >> abi.PAGE_BITS) + 1):
            page = ppn << abi.PAGE_BITS
            first = max(lo, page) - page >> abi.CODE_CHUNK_BITS
            last = min(hi, page + abi.PAGE_SIZE) - 1 - page >> abi.CODE_CHUNK_BITS
            i = (page - base) >> abi.PAGE_BITS
            if 0 <= i < len(self.code_map):
                self.code_map[i] |= ((1 << (last + 1)) - 1) & ~((1 << first) - 1)

    def unwatch_page(self, ppn: int) -> None:
        """Page `ppn` holds no code and no watched word any more."""
        self.write_watch.discard(ppn)
        self._set_watch_bits(ppn)
        i = ((ppn << abi.PAGE_BITS) - self.mem.ram_base) >> abi.PAGE_BITS
        if 0 <= i < len(self.code_map):
            self.code_map[i] = 0

    @staticmethod
    def _io_count(hart: Hart, vpn: int, span: int, n: int) -> None:
        """Adds n to the count of kept device-page translations that an sfence.vma of page vpn
        must drop (abi.SFENCE_PAGES): those cut from a superpage (span: pages in the leaf - 1)
        are counted together, whatever page they hold."""
        if span:
            hart.s.io_super += n
        else:
            hart.s.io_pages[vpn & (abi.SFENCE_PAGES - 1)] += n

    def _io_clear(self, hart: Hart) -> None:
        """Drops `hart`'s kept device-page translations and their counts."""
        if self._io.pop(hart.id, None):
            ctypes.memset(hart.ptr + abi.OFF_IO_PAGES, 0, 4 * abi.SFENCE_PAGES)
            hart.s.io_super = 0

    def flush(self, hart: Hart, mmus: tuple[int, ...] = (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM, abi.MMU_M)) -> None:
        """Invalidates whole TLBs (satp writes, sfence.vma, permission changes)."""
        self._io_clear(hart)
        for mmu in mmus:
            base = hart.ptr + abi.OFF_TLB + mmu * abi.TLB_SIZE * abi.TLB_ENTRY
            ctypes.memset(base, 0xFF, abi.TLB_SIZE * abi.TLB_ENTRY)
            base = hart.ptr + abi.OFF_CTLB + mmu * abi.CTLB_SIZE * abi.CTLB_ENTRY
            ctypes.memset(base, 0xFF, abi.CTLB_SIZE * abi.CTLB_ENTRY)
        if {abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM} <= set(mmus):
            hart.s.nsuper = 0  # Only the OS world's TLBs hold entries cut from superpages

    def guard_changed(self, hart: Hart) -> None:
        """The access guard's decisions changed for `hart` (a new guard, a PMP write): flush its
        TLBs and learn anew what the native refill may do."""
        self.flush(hart)
        self._learn(hart)

    def flush_page(self, hart: Hart, vaddr: int, mmus: tuple[int, ...]) -> None:
        """sfence.vma with an address (privileged spec 4.2.1: "orders only reads and writes to
        leaf page table entries for the virtual address in rs1"): the entry of that page, and
        every entry cut from a superpage that contains it (a native scan: translator/softmmu.py)."""
        io = self._io.get(hart.id)
        if io:
            # Kept device pages by virtual page: (physical page, pages in its leaf - 1); those of
            # the leaf that holds vaddr go.
            vpn = (vaddr & MASK64) >> abi.PAGE_BITS
            for key in [k for k, (_, span) in io.items() if (k[1] ^ vpn) & ~span == 0]:
                self._io_count(hart, key[1], io.pop(key)[1], -1)
        mask = sum(1 << m for m in mmus)
        self.flush_page_native(hart.s, vaddr & MASK64, mask)

    # Reads for the page walker and instruction fetch
    def read_phys(self, paddr: int, size: int) -> int | None:
        return self.mem.read(paddr, size)

