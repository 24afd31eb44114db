"""sfence.vma with an address (privileged spec 4.2.1) and what it must drop besides the TLBs: the
runtime's device-page translations (Mmu._io) and the jump-cache blocks that cross into the page
(TranslationCache.jc_cross), which hart_t summarizes per page for native code (abi.SFENCE_PAGES).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime.core.machine import Machine
from translator import abi
from translator import csrs as C
from translator.abi import ffi

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
        second: int | None  # The frame of a block crossing pages

    def block(vpc: int, pages: int) -> Blk:
        return Blk(vpc, 1, 0x1000 + vpc, RAM if pages > 1 else None)

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


# S-mode remaps pages and fences each with sfence.vma of an address in it (K times each): a data
# page (loads and stores must use the new frame), a code page (calls must run the new frame's
# code: its jump-cache slots go), the second page of a block that crosses pages (a block in the
# jump cache holds the old second page: Python drops it, TranslationCache.jc_cross), and a 4 KiB
# device page remapped to RAM (the runtime's kept device translation goes, Mmu._io). Then
# sfence.vma is illegal with mstatus.TVM=1 in S-mode and always in U-mode (privileged spec 3.1.6.5).
K = 40
SFENCE_RAW = 0x12000073 | 9 << 15  # sfence.vma s1, zero
REMAPS = rf"""
  VM_ON
  la a0, sf_frame
  li a1, 0x1111
  sd a1, 0(a0)
  li a1, 0x2222
  li s4, 0x1000
  add s5, a0, s4
  sd a1, 0(s5)
  li s1, TEST_VA + 0x14000
  la t2, sf_frame
  PTE pt_l0, 20, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma s1
  ld a1, 0(s1)
  CHECK a1, 0x1111
  li s3, {K}
10: la t2, sf_frame + 0x1000
  PTE pt_l0, 20, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  addi a2, s1, 0x7f8
  sfence.vma a2
  ld a1, 0(s1)
  CHECK a1, 0x2222
  sd s3, 8(s1)
  ld a1, 8(s5)
  CHECK_EQ a1, s3
  la t2, sf_frame
  PTE pt_l0, 20, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma s1
  ld a1, 0(s1)
  CHECK a1, 0x1111
  addi s3, s3, -1
  bnez s3, 10b
  # A code page.
  li s2, TEST_VA + 0x10000
  la t2, code_page_1
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma s2
  li s3, {K}
11: jalr s2
  CHECK a0, 123
  la t2, code_page_2
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma s2
  jalr s2
  CHECK a0, 321
  la t2, code_page_1
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma s2
  addi s3, s3, -1
  bnez s3, 11b
  # An instruction across the end of one page into the next, whose frame changes: a block of its
  # own that crosses pages (blocks cross only with their first instruction, translator/block.py).
  li s2, TEST_VA + 0x30ffe
  li a2, TEST_VA + 0x31000
  la t2, cross_a
  PTE pt_l0, 48, t2, PTE_V | PTE_X | PTE_A
  la t2, cross_b1
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  li s3, {K}
12: jalr s2
  CHECK a0, 5
  la t2, cross_b2
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  sfence.vma a2
  jalr s2
  CHECK a0, 7
  la t2, cross_b1
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  sfence.vma a2
  addi s3, s3, -1
  bnez s3, 12b
  # A 4 KiB page of the UART, stored to, then remapped to RAM.
  li s2, TEST_VA + 0x40000
  li t2, 0x10000000
  PTE pt_l0, 64, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma s2
  li a1, 'A'
  sb a1, 0(s2)
  la t2, dev_frame
  PTE pt_l0, 64, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma s2
  li a1, 'B'
  sb a1, 0(s2)
  la a0, dev_frame
  lbu a1, 0(a0)
  CHECK a1, 'B'
  # Illegal with TVM=1 in S-mode (delegated: S takes it), legal again with TVM=0; illegal in U.
  li a0, MSTATUS_TVM
  SBI SBI_MSTATUS_SET
  TRY_S sfence.vma s1, zero
  CHECK s8, 2
  CHECK_EQ s9, s5
  CHECK s10, {SFENCE_RAW}
  li a0, MSTATUS_TVM
  SBI SBI_MSTATUS_CLEAR
  sfence.vma s1
  TRY_U u_sfence
  CHECK s8, 2
  CHECK s10, {SFENCE_RAW}
  j 90f

  .align 2
u_sfence:
  sfence.vma s1, zero
  ecall
  .data
  .align 12
sf_frame:
  .fill 1024, 8, 0
  .fill 512, 8, 0
  .align 12
dev_frame:
  .fill 512, 8, 0
  .align 12
code_page_1:
  li a0, 123
  ret
  .align 12
code_page_2:
  li a0, 321
  ret
  .align 12
cross_a:
  .fill 1023, 4, 0x00000013
  .2byte 0x0001                 # c.nop
  .2byte 0x0513                 # addi a0, zero, ... (its low half)
  .fill 1024, 4, 0              # (Without GAP, the frame after cross_a's is cross_b1)
cross_b1:
  .2byte 0x0050                 # ... 5
  .4byte 0x00008067             # ret
  .align 12
cross_b2:
  .2byte 0x0070                 # ... 7
  .4byte 0x00008067
  .align 12
  .text
90:
"""
# A frame between cross_a's and cross_b1's: the crossing block's second page never maps to the
# frame after its first's. Without it, it maps to that frame, then to another, then to it again:
# each time the block must run the bytes of the frame mapped then (Block.second).
GAP = "  .fill 1024, 4, 0              # (Without GAP, the frame after cross_a's is cross_b1)\n"
# sfence.vma with an address the program runs: data 1 + 2K, code 1 + 2K, cross page 2K, device 2,
# TVM 1 (the two that trap are not performed).
ADDRESSED = 4 * K + 2 + 2 * K + 2 + 1
TIERS = {"interp": (1 << 30, None), "cold": (0, None), "optimized": (0, 0)}


def _run_remaps(asm, tier: str, native: bool, gap: bool = True) -> Machine:
    from tests.test_smode import program
    from tests.test_tcache import run_machine

    warm, hot = TIERS[tier]

    def setup(m: Machine) -> None:
        m.native_sfence = native
        m.warm_threshold = warm
        if hot is not None:
            m.tcache.set_hot_threshold(hot)

    text, _ = program(REMAPS if gap else REMAPS.replace(GAP, ""))
    return run_machine(asm(text), max_insns=20_000_000, setup=setup)


@pytest.mark.parametrize("gap", [True, False], ids=["gap", "no-gap"])
@pytest.mark.parametrize("tier", TIERS)
def test_remapped_pages_are_seen_after_sfence_vma_of_an_address(asm, tier, gap):
    """The program passes with the native sfence.vma and without it (Machine.native_sfence); the
    statistics count every sfence.vma either way, and the native one did all it may: every one
    but those of the page a block in the jump cache crosses into, and of the device page. With
    or without a frame between the crossing block's first frame and its second page's (GAP)."""
    from runtime.frontends.stats import collect

    on = _run_remaps(asm, tier, True, gap)
    off = _run_remaps(asm, tier, False, gap)
    native = on.native_invalidations()["sfence.vma"]
    assert off.native_invalidations()["sfence.vma"] == 0
    # Each sfence.vma of the crossed page follows a call through the crossing block, which is then
    # in the jump cache (the interpreter puts no translation there).
    crossing = 2 * K if tier != "interp" else 0
    assert native == ADDRESSED - crossing - 1, (native, ADDRESSED)
    assert on.stats_callouts["sys"] == off.stats_callouts["sys"] - native
    sfences = [collect(m, 0, 0, 1)["invalidations"]["sfence.vma"] for m in (on, off)]
    assert sfences[0] == sfences[1] == off.tcache.invalidations["sfence.vma"]
    assert sum(n for _t, kind, n in on.tcache.events if kind == "sfence.vma") == sfences[0]
    for m in (on, off):
        summaries_agree(m)


def test_the_native_entry_declines_what_python_must_do():
    """The system callout's native entry (translator/softmmu.py mirage_sys_c) called directly: an
    S-mode sfence.vma with an address completes there (pc advanced, the page's TLB and jump-cache
    entries gone, counted in hart_t); each condition that leaves it to Python does (the callout
    counted instead, the entries kept)."""
    from runtime.core.hart import Trap

    m = Machine(ram_base=RAM, ram_size=RAM_SIZE)
    h = m.harts[0]
    sys_c = ffi.cast("int64_t(*)(hart_t *, uint64_t, uint64_t, uint64_t)", m.runtime_symbols["mirage_sys_c"])
    va, pc = 0x4000_5000, 0x8000_0100
    jc = h.s.jc[(va >> 1) & (abi.JC_SIZE - 1)]
    failures: list[BaseException] = []
    m.take_trap = lambda hart, cause, tval, epc: failures.append(Trap(cause, tval))

    def fence(raw: int = 0x12000073 | 10 << 15, desc: int = abi.SYS_INSN) -> bool:
        """Fills a TLB entry and a jump-cache slot of the page, runs `raw` (sfence.vma a0); True:
        done natively."""
        m.mmu.leaf_size = abi.PAGE_SIZE
        m.mmu.fill(h, abi.MMU_S, va, RAM + 0x3000, False)
        jc.vpc, jc.flags = va, h.s.flags
        h.s.x[10] = va + 0x123
        h.pc = pc
        native, calls = h.s.stat_sfence, m.stats_callouts["sys"]
        assert sys_c(h.s, raw, pc, desc) == 0
        done = h.s.stat_sfence == native + 1
        assert m.stats_callouts["sys"] == calls + (not done)
        if done:
            assert h.pc == pc + 4
            assert h.s.tlb[abi.MMU_S][(va >> 12) & (abi.TLB_SIZE - 1)].read == abi.TLB_INVALID
            assert jc.vpc == abi.TLB_INVALID
        return done

    def s_mode(priv: int = C.PRV_S) -> None:
        h.priv = priv
        h.update_flags()

    s_mode()
    h.s.sfence = 1
    assert fence()
    assert not fence(raw=0x12000073)  # rs1 = x0: all pages, Python's
    assert not fence(desc=abi.SYS_DEBUG)
    h.tvm = True
    assert not fence() and failures.pop().cause == C.ILLEGAL_INSN
    h.tvm = False
    s_mode(C.PRV_U)
    assert not fence() and failures.pop().cause == C.ILLEGAL_INSN
    s_mode(C.PRV_M)  # The firmware world: the monitor's (none here, so Python's trap)
    assert not fence() and failures.pop().cause == C.ILLEGAL_INSN
    s_mode()
    h.want_exit = True
    assert not fence() and h.s.exit_now
    h.want_exit, h.s.exit_now = False, 0
    h.s.sfence = 0
    assert not fence()
    h.s.sfence = 1
    bucket = (va >> 12) & (abi.SFENCE_PAGES - 1)
    for field in ("io_pages", "cross_pages", "io_super"):
        if field == "io_super":
            h.s.io_super = 1
        else:
            getattr(h.s, field)[bucket] = 1
        assert not fence(), field
        h.s.io_super = h.s.io_pages[bucket] = h.s.cross_pages[bucket] = 0
    h.s.cross_pages[bucket + 1] = 1  # Another page's count does not matter
    assert fence()
    assert not failures and m.callout_error is None


# A block crossing pages whose second page maps to a frame B other than the one after its first
# (A + 1): it runs B's bytes, a store into B (through another mapping) drops it, and once the
# page maps to A + 1 it runs A + 1's bytes (Block.second). Its crossing instruction is
# addi a0, zero, imm with imm in its upper half: 5 from A + 1, 7 (then 9) from B.
CROSS = rf"""
  VM_ON
  li s2, TEST_VA + 0x30ffe
  li a2, TEST_VA + 0x31000
  li a3, TEST_VA + 0x32000
  la t2, cross_a
  PTE pt_l0, 48, t2, PTE_V | PTE_X | PTE_A
  la t2, cross_b
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  PTE pt_l0, 50, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li s3, {K}
1: jalr s2
  CHECK a0, 7
  addi s3, s3, -1
  bnez s3, 1b
  # Code written through the data mapping of B: the block reading it goes.
  li t0, 0x0090
  sh t0, 0(a3)
  fence.i
  li s3, {K}
2: jalr s2
  CHECK a0, 9
  addi s3, s3, -1
  bnez s3, 2b
  li t0, 0x0070
  sh t0, 0(a3)
  fence.i
  # The second page remapped to A + 1, back to B, and so on.
  li s3, {K}
3: la t2, cross_a1
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  sfence.vma a2
  jalr s2
  CHECK a0, 5
  jalr s2
  CHECK a0, 5
  la t2, cross_b
  PTE pt_l0, 49, t2, PTE_V | PTE_X | PTE_A
  sfence.vma a2
  jalr s2
  CHECK a0, 7
  jalr s2
  CHECK a0, 7
  addi s3, s3, -1
  bnez s3, 3b
  j 90f

  .data
  .align 12
cross_a:
  .fill 1023, 4, 0x00000013
  .2byte 0x0001                 # c.nop
  .2byte 0x0513                 # addi a0, zero, ... (its low half)
cross_a1:                       # The frame after cross_a's
  .2byte 0x0050                 # ... 5
  .4byte 0x00008067             # ret
  .align 12
cross_b:
  .2byte 0x0070                 # ... 7
  .4byte 0x00008067
  .align 12
  .text
90:
"""
CROSS_TIERS = {"cold": (0, None), "optimized": (0, 0), "promoted": (0, 8), "interp": (1 << 30, None)}


@pytest.mark.parametrize("tier", CROSS_TIERS)
def test_a_block_crossing_pages_reads_the_frame_its_second_page_maps_to(asm, tier):
    """The program passes translated (at tier 0, 1, promoted from 0 to 1) and interpreted. The
    crossing block left in the cache records its frames, covers their bytes and no others, and a
    breakpoint on its second page's first byte drops it."""
    from tests.test_smode import program
    from tests.test_tcache import run_machine

    warm, hot = CROSS_TIERS[tier]

    def setup(m: Machine) -> None:
        m.warm_threshold = warm
        if hot is not None:
            m.tcache.set_hot_threshold(hot)

    text, _ = program(CROSS)
    m = run_machine(asm(text), max_insns=20_000_000, setup=setup)
    tc = m.tcache
    vpc = 0xC003_0FFE
    crossing = [b for b in tc.blocks.values() if b.vpc == vpc]
    if tier == "interp":
        assert not crossing
        return
    assert tc.invalidations["code-write"] >= 1
    h = m.harts[0]
    a = m.mmu.walk(h, vpc, "x", C.PRV_S, False, probe=True) & ~0xFFF
    b = m.mmu.walk(h, vpc + 2, "x", C.PRV_S, False, probe=True) & ~0xFFF
    assert b != a + 0x1000
    (blk,) = crossing
    assert (blk.ppc, blk.second) == (a + 0xFFE, b)
    assert blk.pages == tuple(sorted((a >> 12, b >> 12)))
    assert blk.tier == (0 if tier in ("cold", "promoted") else 1)
    # Promoted while it ran K times (read from its recorded frames)
    promoted = [r for r in tc.history if r.vpc == vpc and r.tier == 1]
    assert bool(promoted) == (tier != "cold")
    if tier == "promoted":
        assert {r.code for r in promoted} == {bytes.fromhex("13057000"), bytes.fromhex("13059000")}
    assert blk.covers(b, b + 1) and blk.covers(b + 1, b + 2) and not blk.covers(b + 2, b + 0x1000)
    assert blk.covers(a + 0xFFF, a + 0x1000) and not blk.covers(a + 0x1000, a + 0x2000)
    assert [v for v in range(vpc - 2, vpc + 6) if blk.covers_vpc(v)] == [vpc + i for i in range(4)]
    assert tc.set_breakpoint(vpc + 2, True, b, m.harts) >= 1
    assert not blk.valid and blk not in tc.by_page.get(b >> 12, ())
