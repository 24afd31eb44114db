"""sfence.vma with an address (privileged spec 4.2.1) and what it must drop besides the TLBs: the
runtime's device-page translations (Mmu._io) and the jump-cache blocks that cross into the page
(TranslationCache.jc_cross), which hart_t summarizes per page for native code (abi.SFENCE_PAGES).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.core.machine import Machine
from translator import abi
from translator import csrs as C

RAM = 0x8000_0000
RAM_SIZE = 4 << 20
V, R, W, X, U, G, A, D = (1 << i for i in range(8))


def summaries_agree(m: Machine) -> None:
    """Every hart's per-page counts (abi.SFENCE_PAGES) are those of the structures they summarize."""
    mask = abi.SFENCE_PAGES - 1
    for h in m.harts:
        io_pages, io_super = [0] * abi.SFENCE_PAGES, 0
        for (_mmu, vpn, _acc), (_ppage, span) in m.mmu._io.get(h.id, {}).items():
            if span:
                io_super += 1
            else:
                io_pages[vpn & mask] += 1
        cross = [0] * abi.SFENCE_PAGES
        for ptr, page in m.tcache.jc_cross:
            if ptr == h.ptr:
                cross[(page >> abi.PAGE_BITS) & mask] += 1
        assert h.s.io_super == io_super
        assert list(h.s.io_pages) == io_pages
        assert list(h.s.cross_pages) == cross


def _sv39(m: Machine, leaves: dict[int, tuple[int, int]]) -> None:
    """Sv39 on for hart 0 with leaves {va: (level, pa)} (level 0: 4 KiB, 1: 2 MiB, 2: 1 GiB),
    page tables from RAM + 1 MiB."""
    h = m.harts[0]
    nxt = [RAM + (1 << 20)]

    def alloc() -> int:
        p = nxt[0]
        nxt[0] += 4096
        return p

    root = alloc()
    for va, (level, pa) in leaves.items():
        table = root
        for lvl in range(2, level, -1):
            slot = table + 8 * ((va >> (12 + 9 * lvl)) & 511)
            pte = m.mem.read(slot, 8)
            if not pte:
                child = alloc()
                m.mem.write(slot, 8, (child >> 12) << 10 | V)
                table = child
            else:
                table = (pte >> 10) << 12
        m.mem.write(table + 8 * ((va >> (12 + 9 * level)) & 511), 8, (pa >> 12) << 10 | V | R | W | A | D)
    h.satp = 8 << 60 | root >> 12


def test_device_page_translations_are_counted_by_page():
    m = Machine(ram_base=RAM, ram_size=RAM_SIZE)
    h = m.harts[0]
    h.priv = C.PRV_S
    h.update_flags()
    _sv39(m, {0xC000_1000: (0, 0x1000_0000), 0xC000_2000: (0, 0x1000_1000), 0x4000_0000: (2, 0)})
    m.mmu.translate(h, 0xC000_1004, "r", abi.MMU_S)
    m.mmu.translate(h, 0xC000_1004, "w", abi.MMU_S)
    m.mmu.translate(h, 0xC000_2000, "r", abi.MMU_S_SUM)
    m.mmu.translate(h, 0x4000_3000, "r", abi.MMU_S)  # A gigapage leaf
    assert h.s.io_pages[0xC0001 & (abi.SFENCE_PAGES - 1)] == 2 and h.s.io_super == 1
    summaries_agree(m)
    m.mmu.flush_page(h, 0xC000_1FFF, (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM))
    assert h.s.io_pages[0xC0001 & (abi.SFENCE_PAGES - 1)] == 0
    summaries_agree(m)
    m.mmu.flush_page(h, 0x4012_3000, (abi.MMU_S,))  # Any page of the gigapage drops its entry
    assert h.s.io_super == 0 and h.s.io_pages[0xC0002 & (abi.SFENCE_PAGES - 1)] == 1
    summaries_agree(m)
    # A full set of kept translations starts over.
    for i in range(70):
        m.mmu.translate(h, 0x4000_0000 + (i << 12), "r", abi.MMU_S)
        summaries_agree(m)
    m.mmu.flush(h)
    assert h.s.io_super == 0 and not any(h.s.io_pages)
    summaries_agree(m)


def test_cross_page_jump_cache_blocks_are_counted_by_page():
    m = Machine(ram_base=RAM, ram_size=RAM_SIZE)
    h = m.harts[0]
    tc = m.tcache

    @dataclass(eq=False)
    class Blk:  # What the jump cache uses of a Block
        vpc: int
        flags: int
        fn: int
        pages: tuple[int, ...]

    def block(vpc: int, pages: int) -> Blk:
        return Blk(vpc, 1, 0x1000 + vpc, (0,) * pages)

    a, b, c = block(0x1FF8, 2), block(0x1FFC, 2), block(0x5FFC, 2)
    for blk in (a, b, c, block(0x3000, 1)):
        tc.jc_insert(h, blk)
    assert h.s.cross_pages[2] == 1 and h.s.cross_pages[6] == 1
    summaries_agree(m)
    tc.jc_flush_page(h, 0x2800, "sfence.vma")
    assert h.s.cross_pages[2] == 0 and h.s.cross_pages[6] == 1
    assert h.s.jc[(0x1FF8 >> 1) & (abi.JC_SIZE - 1)].vpc == abi.TLB_INVALID  # Crossing into it: gone
    summaries_agree(m)
    tc.jc_insert(h, a)
    tc.jc_flush(h, "sfence.vma")
    summaries_agree(m)
    assert not any(h.s.cross_pages)
    tc.jc_insert(h, c)
    tc.flush()
    summaries_agree(m)
    assert not any(h.s.cross_pages)
