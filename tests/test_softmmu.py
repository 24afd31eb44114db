"""The native TLB refill (translator/softmmu.py) against the Python page walk (runtime/core/mmu.py).

The refill is the fast path of the same Sv39 walk: on random page tables, for every access it
either declines (Python then walks) or fills exactly what Python's walk computes, with the same
A/D updates; it declines wherever Python faults or must decide (guard not learned, watched page).
The TLB scans (write revocation, sfence.vma of superpages) are checked against their rules.
"""

from __future__ import annotations

import random

import pytest

from runtime.core.hart import Trap
from runtime.core.machine import Machine
from runtime.core.mmu import OS_RIGHTS_S_SHIFT
from translator import abi
from translator import csrs as C
from translator.abi import ffi

RAM = 0x8000_0000
RAM_SIZE = 4 << 20
V, R, W, X, U, G, A, D = (1 << i for i in range(8))
MMUS = (abi.MMU_U, abi.MMU_S, abi.MMU_S_SUM)
ACCESS = "rwx"


def _machine() -> Machine:
    m = Machine(ram_base=RAM, ram_size=RAM_SIZE)
    h = m.harts[0]
    h.priv = C.PRV_S
    h.update_flags()
    h.s.walk = 1
    return m


def _allow_all(m: Machine, wfast: bool = True) -> None:
    """What the runtime would learn if the guard allowed everything on every RAM page."""
    h = m.harts[0]
    for i in range(RAM_SIZE >> 12):
        h.s.gperm[i] = (1 << 9) - 1 | (abi.GPERM_WFAST if wfast else 0)


class Grants:
    """A guard that gives the OS world `rights` (OS_RIGHTS_*) on every page; counts the
    runtime's questions."""

    def __init__(self, rights: int) -> None:
        self.rights = rights
        self.asked = 0

    def check(self, hart, paddr, size, access, priv):
        shift = OS_RIGHTS_S_SHIFT if priv == C.PRV_S else 0
        return priv == C.PRV_M or bool(self.rights >> (shift + "rwx".index(access)) & 1)

    def page_uniform(self, hart, priv, paddr):
        return True

    def os_rights(self, hart, lo, hi):
        self.asked += 1
        return [(lo, hi, self.rights)] if self.rights else []


def _refill(m: Machine):
    return ffi.cast("bool(*)(hart_t *, uint64_t, uint64_t, uint64_t)", m.runtime_symbols["mirage_refill"])


class Tables:
    """Random Sv39 page tables in RAM: three levels, leaves at every level (aligned or not),
    every PTE bit pattern, some pointers outside RAM."""

    def __init__(self, m: Machine, rng: random.Random) -> None:
        self.m, self.rng = m, rng
        self.next_page = RAM + (1 << 20)  # Page-table pages from 1 MiB up; data below
        self.vaddrs: list[int] = []
        self.root = self._table(2, 0)

    def _alloc(self) -> int:
        p = self.next_page
        self.next_page += 4096
        assert self.next_page <= RAM + RAM_SIZE
        return p

    def _pte(self, ppn: int, bits: int) -> int:
        return ppn << 10 | bits

    def _table(self, level: int, vbase: int) -> int:
        rng = self.rng
        page = self._alloc()
        for vpn in rng.sample(range(512), 6 if level else 10):
            va = vbase | vpn << (12 + 9 * level)
            if level == 2 and vpn >= 256:
                va |= ~((1 << 39) - 1) & ((1 << 64) - 1)  # Sign-extended upper half
            kind = rng.random()
            if level and kind < 0.45 and self.next_page < RAM + RAM_SIZE - 64 * 4096:
                pte = self._pte(self._table(level - 1, va) >> 12, V)
            else:
                bits = rng.getrandbits(8) | V
                if rng.random() < 0.15:
                    bits &= ~V
                if rng.random() < 0.6:
                    bits |= R  # Mostly readable leaves
                if level == 0 or rng.random() < 0.5:
                    # A data page in RAM (superpages: the base of RAM, aligned or not)
                    ppn = (RAM >> 12) + (rng.randrange(200) if level == 0 else rng.choice([0, 0, 3]))
                else:
                    ppn = rng.getrandbits(30)  # Anywhere, mostly outside RAM
                if rng.random() < 0.05:
                    bits |= 1 << (54 + rng.randrange(10))  # Reserved bits
                pte = self._pte(ppn, bits)
                self.vaddrs.append(va)
            self.m.mem.write(page + 8 * vpn, 8, pte)
        return page


def _snapshot(m: Machine, lo: int, hi: int) -> bytes:
    return bytes(m.mem.read_bytes(lo, hi - lo))


@pytest.mark.parametrize("seed", range(4))
def test_refill_agrees_with_the_python_walk(seed):
    rng = random.Random(seed)
    m = _machine()
    h = m.harts[0]
    refill = _refill(m)
    t = Tables(m, rng)
    h.satp = 8 << 60 | t.root >> 12
    _allow_all(m)
    filled = declined = 0
    for _ in range(3000):
        va = rng.choice(t.vaddrs) + rng.randrange(1 << 12) * rng.choice([1, 1, 8, 512])
        va &= (1 << 64) - 1
        mmu = rng.choice(MMUS)
        acc = rng.randrange(3)
        if acc == 2 and mmu == abi.MMU_S_SUM:
            mmu = abi.MMU_S  # Fetches go through MMU_U or MMU_S
        h.s.mstatus = C.MSTATUS_MXR if rng.random() < 0.3 else 0
        m.mmu.flush(h)
        before = _snapshot(m, RAM + (1 << 20), t.next_page)
        walks = h.s.stat_walks
        ok = refill(h.s, va, mmu, acc)
        after_native = _snapshot(m, RAM + (1 << 20), t.next_page)
        m.mem.load_bytes(RAM + (1 << 20), before)
        try:
            pa = m.mmu.walk(h, va, ACCESS[acc], C.PRV_U if mmu == abi.MMU_U else C.PRV_S,
                            mmu == abi.MMU_S_SUM)
            leaf = m.mmu.leaf_size
        except Trap:
            pa = None
        after_python = _snapshot(m, RAM + (1 << 20), t.next_page)
        in_ram = pa is not None and RAM <= pa < RAM + RAM_SIZE
        assert bool(ok) == in_ram, (hex(va), mmu, acc, pa)
        if not ok:
            declined += 1
            assert after_native == before and h.s.stat_walks == walks
            continue
        filled += 1
        assert after_native == after_python  # The same A/D updates
        assert h.s.stat_walks == walks + 1
        vpage = va & ~0xFFF
        if acc == 2:
            e = h.s.ctlb[mmu][(va >> 12) & (abi.CTLB_SIZE - 1)]
            assert e.tag == vpage
        else:
            e = h.s.tlb[mmu][(va >> 12) & (abi.TLB_SIZE - 1)]
            assert e.read == vpage and e.write == (vpage if acc == 1 else abi.TLB_INVALID)
        assert (e.addend + vpage + RAM) & ((1 << 64) - 1) == pa & ~0xFFF
        assert e.leaf == leaf
    assert filled > 300 and declined > 300  # Both outcomes are well covered


def test_refill_declines_what_the_guard_has_not_allowed():
    m = _machine()
    h = m.harts[0]
    refill = _refill(m)
    # One 4 KiB mapping: va 0x1000 -> RAM + 0x5000, readable and writable, A and D set.
    l2, l1, l0 = RAM + 0x10_0000, RAM + 0x10_1000, RAM + 0x10_2000
    m.mem.write(l2, 8, (l1 >> 12) << 10 | V)
    m.mem.write(l1, 8, (l0 >> 12) << 10 | V)
    m.mem.write(l0 + 8, 8, ((RAM + 0x5000) >> 12) << 10 | V | R | W | A | D)
    h.satp = 8 << 60 | l2 >> 12
    m.set_access_guard(Grants(0))
    assert not refill(h.s, 0x1000, abi.MMU_S, 0)  # The guard allows the OS nothing
    _allow_all(m, wfast=False)
    assert refill(h.s, 0x1000, abi.MMU_S, 0)
    assert not refill(h.s, 0x1000, abi.MMU_S, 1)  # A store, but the page is watched
    _allow_all(m)
    assert refill(h.s, 0x1000, abi.MMU_S, 1)
    # The page-table pages must be readable too.
    m.mmu.guard_changed(h)
    h.s.gperm[5] = (1 << 9) - 1
    assert not refill(h.s, 0x1000, abi.MMU_S, 0)
    # The firmware world and bare mode are Python's.
    _allow_all(m)
    assert refill(h.s, 0x1000, abi.MMU_S, 0)
    h.priv = C.PRV_M
    h.update_flags()
    assert not refill(h.s, 0x1000, abi.MMU_S, 0)
    h.priv = C.PRV_S
    h.update_flags()
    h.s.walk = 0
    assert not refill(h.s, 0x1000, abi.MMU_S, 0)


def test_one_question_per_guard_change_tells_the_refill_every_right():
    m = _machine()
    h = m.harts[0]
    refill = _refill(m)
    l2, l1, l0 = RAM + 0x10_0000, RAM + 0x10_1000, RAM + 0x10_2000
    m.mem.write(l2, 8, (l1 >> 12) << 10 | V)
    m.mem.write(l1, 8, (l0 >> 12) << 10 | V)
    m.mem.write(l0 + 8, 8, ((RAM + 0x5000) >> 12) << 10 | V | R | W | X | A | D)
    h.satp = 8 << 60 | l2 >> 12
    guard = Grants(0b011 << OS_RIGHTS_S_SHIFT)  # S reads and writes, U nothing
    m.set_access_guard(guard)
    assert guard.asked == 1
    rw_s = 0b011 << 3 * abi.MMU_S | 0b011 << 3 * abi.MMU_S_SUM
    assert [h.s.gperm[i] for i in (0, 5, 0x102)] == [rw_s | abi.GPERM_WFAST] * 3
    # The refill does loads and stores through either S view from the start, not fetches.
    for mmu, acc in ((abi.MMU_S, 0), (abi.MMU_S, 1), (abi.MMU_S_SUM, 1)):
        m.mmu.flush(h)
        assert refill(h.s, 0x1000, mmu, acc)
    assert not refill(h.s, 0x1000, abi.MMU_S, 2)
    m.mmu.fill(h, abi.MMU_S, 0x1000, RAM + 0x5000, True)
    assert guard.asked == 1
    # A watched page keeps its TLB_NOTDIRTY bit through a guard change.
    m.mmu.watch_page((RAM + 0x5000) >> 12, m.harts)
    assert h.s.gperm[5] == rw_s | abi.GPERM_CODE
    guard.rights = 0b001 << OS_RIGHTS_S_SHIFT
    m.mmu.guard_changed(h)
    assert guard.asked == 2 and h.s.gperm[5] == 0b001 << 3 * abi.MMU_S | 0b001 << 3 * abi.MMU_S_SUM | abi.GPERM_CODE
    m.mmu.unwatch_page((RAM + 0x5000) >> 12)
    assert h.s.gperm[5] & (abi.GPERM_CODE | abi.GPERM_WFAST) == abi.GPERM_WFAST
    m.mmu.flush(h)
    assert not refill(h.s, 0x1000, abi.MMU_S, 1)


def test_watching_a_page_revokes_fast_writes_in_every_tlb():
    m = _machine()
    h = m.harts[0]
    ppage = RAM + 0x7000
    for mmu, va in ((abi.MMU_S, 0x4000_0000), (abi.MMU_U, 0x1234_5000), (abi.MMU_M, ppage)):
        m.mmu.fill(h, mmu, va, ppage, True)
        assert h.s.tlb[mmu][(va >> 12) & (abi.TLB_SIZE - 1)].write == va
    m.mmu.fill(h, abi.MMU_S, 0x9000, RAM + 0x8000, True)  # Another page keeps its entry
    m.mmu.watch_page(ppage >> 12, m.harts)
    for mmu, va in ((abi.MMU_S, 0x4000_0000), (abi.MMU_U, 0x1234_5000), (abi.MMU_M, ppage)):
        e = h.s.tlb[mmu][(va >> 12) & (abi.TLB_SIZE - 1)]
        assert e.write == abi.TLB_INVALID and e.read == va  # Reads stay fast
    assert h.s.tlb[abi.MMU_S][9].write == 0x9000
    bits = h.s.gperm[(ppage - RAM) >> 12]
    assert bits & abi.GPERM_CODE and not bits & abi.GPERM_WFAST


def test_sfence_vma_of_an_address_drops_entries_cut_from_its_superpage():
    m = _machine()
    h = m.harts[0]
    # Entries as if cut from a 2 MiB superpage at va 0x4000_0000 and from 4 KiB pages elsewhere.
    m.mmu.leaf_size = 2 << 20
    for off in (0x1000, 0x5000, 0x1F_F000):
        m.mmu.fill(h, abi.MMU_S, 0x4000_0000 + off, RAM + off, False)
        m.mmu.fill_code(h, abi.MMU_S, 0x4000_0000 + off, RAM + off)
    m.mmu.leaf_size = 4096
    m.mmu.fill(h, abi.MMU_S, 0x4020_3000, RAM + 0x30_0000, False)
    m.mmu.fill(h, abi.MMU_U, 0x4000_2000, RAM + 0x2000, False)
    assert h.s.nsuper == 6
    m.mmu.flush_page(h, 0x4000_8000, (abi.MMU_S,))
    for off in (0x1000, 0x5000, 0x1F_F000):
        i = ((0x4000_0000 + off) >> 12) & (abi.TLB_SIZE - 1)
        assert h.s.tlb[abi.MMU_S][i].read == abi.TLB_INVALID
        assert h.s.ctlb[abi.MMU_S][i].tag == abi.TLB_INVALID
    assert h.s.tlb[abi.MMU_S][0x203].read == 0x4020_3000  # Another page: kept
    assert h.s.tlb[abi.MMU_U][2].read == 0x4000_2000  # Another MMU index: kept
    # Without superpage entries only the named page goes.
    m.mmu.flush(h)
    assert h.s.nsuper == 0
    m.mmu.fill(h, abi.MMU_S, 0x4000_1000, RAM + 0x1000, False)
    m.mmu.fill(h, abi.MMU_S, 0x4000_2000, RAM + 0x2000, False)
    m.mmu.flush_page(h, 0x4000_1ABC, (abi.MMU_S,))
    assert h.s.tlb[abi.MMU_S][1].read == abi.TLB_INVALID
    assert h.s.tlb[abi.MMU_S][2].read == 0x4000_2000


def _words(*ws: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in ws)


@pytest.mark.parametrize("warm", [4, 1 << 30])
def test_stores_next_to_code_stay_native(warm):
    """A loop stores to data in its own code page, in a 64-byte chunk with no code: once the page
    holds translated code (warm 4) or not (interpreted), the stores stay in native code; the
    firmware world's TLB gets a TLB_NOTDIRTY entry from Python once (issue 14)."""
    from runtime.frontends.snippet import run_code

    code = _words(
        0x00000513,  # 0x00: li a0, 0
        0x7D000593,  # 0x04: li a1, 2000
        0x00000617,  # 0x08: auipc a2, 0
        0x04A63023,  # 0x0c: loop: sd a0, 64(a2)  (0x48)
        0x00150513,  # 0x10: addi a0, a0, 1
        0xFFF58593,  # 0x14: addi a1, a1, -1
        0xFE059AE3,  # 0x18: bnez a1, loop
        0x00100073,  # 0x1c: ebreak
    ) + bytes(48)  # 0x20..0x47: padding; 0x48: the data word, in the page's second 64-byte chunk
    r = run_code(code, warm_threshold=warm, hot_threshold=1 << 30)
    m = r.machine
    assert r.cause == C.BREAKPOINT and r.x[10] == 2000
    assert m.mem.read(RAM + 0x48, 8) == 1999
    assert m.stats_callouts["mem"] <= 3, m.stats_callouts
    if warm == 4:
        assert m.tcache.translated_blocks >= 1
        assert m.harts[0].s.stat_notdirty >= 1990


def test_mark_code_sets_the_chunks_of_the_bytes():
    m = _machine()
    m.mmu.mark_code(RAM + 0x1030, RAM + 0x1082)  # Chunks 0, 1 and 2 of the second page
    m.mmu.mark_code(RAM + 0x2FFE, RAM + 0x3002)  # The last chunk of one page, the first of the next
    assert m.mmu.code_map[1] == 0b111
    assert m.mmu.code_map[2] == 1 << 63 and m.mmu.code_map[3] == 1
    m.mmu.unwatch_page((RAM >> 12) + 1)
    assert m.mmu.code_map[1] == 0


# Stores to the page of the HTIF tohost word: those to other words stay native, the one to
# tohost still reaches the device (PASS ends the run).
STORES_BESIDE_TOHOST = r"""
  la t0, tohost
  li t1, 0
  li t2, 3000
1: sd t1, 128(t0)
  addi t1, t1, 1
  bne t1, t2, 1b
  ld t3, 128(t0)
  li t4, 2999
  bne t3, t4, 2f
  PASS
2: FAIL 2
"""


def test_stores_beside_a_watched_word_stay_native(asm, tmp_path):
    import json

    from tests.conftest import mirage

    stats = tmp_path / "s.json"
    r = mirage("jit-run", "--max-insns", "1000000", "--stats", str(stats), str(asm(STORES_BESIDE_TOHOST)))
    assert r.returncode == 0, r.stderr
    doc = json.loads(stats.read_text())
    assert doc["callouts"]["mem"] <= 3, doc["callouts"]


def test_a_probe_walk_has_no_side_effects():
    """The debugger's walk (probe) translates what the hart's page tables map, whatever the
    permissions and the guard, and changes nothing: no A/D update, no walk counted. The access
    walk of the same address faults (a U page from S without SUM; privileged spec 4.3.1)."""
    m = _machine()
    h = m.harts[0]
    root = RAM + (1 << 20)
    pte_addr = root + 3 * 8  # VA 0xC000_0000: vpn[2] = 3, a 1 GiB leaf
    m.mem.write(pte_addr, 8, ((RAM >> 12) << 10) | V | R | U)
    h.satp = (8 << 60) | (root >> 12)
    walks = m.mmu.stats_walks
    assert m.mmu.walk(h, 0xC000_1234, "r", C.PRV_S, False, probe=True) == RAM + 0x1234
    assert m.mem.read(pte_addr, 8) & (A | D) == 0
    assert m.mmu.stats_walks == walks
    with pytest.raises(Trap) as t:
        m.mmu.walk(h, 0xC000_1234, "r", C.PRV_S, False)
    assert t.value.cause == C.LOAD_PAGE_FAULT

    m.set_access_guard(Grants(0))
    assert m.mmu.walk(h, 0xC000_1234, "r", C.PRV_S, False, probe=True) == RAM + 0x1234
    with pytest.raises(Trap) as t:
        m.mmu.walk(h, 0xC000_1234, "r", C.PRV_S, True)
    assert t.value.cause == C.LOAD_ACCESS  # The guard denies reading the page table
    with pytest.raises(Trap):
        m.mmu.walk(h, 0x1_0000_0000, "r", C.PRV_S, False, probe=True)  # vpn[2] = 4: not mapped


# S-mode stores to the UART through a gigapage (VA 0x50000000 -> PA 0x10000000), then the page is
# mapped to RAM (PA 0x90000000) and the same address stored to again after `FENCE`: the second
# store must reach RAM, not the device (a device page's translation is kept like a TLB entry, so
# it must go with the same flushes).
REMAP_DEVICE = """
  li t0, 0x50000000
  li t1, 'A'
  sb t1, 0(t0)
  la t2, pt
  li t3, 0x200000CF
  sd t3, 8(t2)
  FENCE
  li t1, 'B'
  sb t1, 0(t0)
  li t0, 0x90000000
  lbu t4, 0(t0)
  li t1, 'B'
  bne t4, t1, 2f
  PASS
2: FAIL 2
trap: FAIL 7
  .data
  .align 12
pt:
  .dword 0, 0xCF, 0x200000CF
  .fill 509, 8, 0
"""


# sfence.vma of all, of the address, of another address of the same gigapage (privileged spec
# 4.2.1: an address "orders only reads and writes to leaf page table entries for" it, and the leaf
# here maps the whole gigapage).
@pytest.mark.parametrize("fence", ["sfence.vma", "sfence.vma t0", "li t5, 0x5abc1000; sfence.vma t5"])
def test_a_remapped_device_page_is_not_reached_after_sfence(asm, fence):
    from tests.conftest import mirage
    from tests.guest import build

    src = build.to_s_mode() + build.SV39_ON + REMAP_DEVICE.replace("FENCE", fence)
    r = mirage("jit-run", "-m", "512M", "--max-insns", "100000", str(asm(src)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"A"
