"""The native interpreter (translator/interp.py): its decoder's inputs, that cold code runs in it
without translation, the hand-over to translated code, fetch faults, and self-modifying code."""

from __future__ import annotations

import ctypes
import dataclasses
import random
import struct

from runtime.frontends.snippet import run_code
from translator import abi, isa
from translator import csrs as C
from translator.interp import heads_index

EBREAK = 0x00100073


def words(*ws: int) -> bytes:
    return b"".join(struct.pack("<I", w) for w in ws)


def test_rvc_expansion_table_matches_the_compressed_decoder() -> None:
    """Every 16-bit word expands to the 32-bit encoding of the instruction decode16 gives (or 0,
    an illegal instruction, for reserved encodings): the interpreter's one decoder serves both."""
    table = isa.rvc_expansions()
    for w in range(0x10000):
        expected = isa.decode16(w) if w & 3 != 3 else None
        if expected is None:
            assert table[w] == 0, hex(w)
            continue
        got = isa.decode32(table[w])
        assert got is not None, hex(w)
        assert dataclasses.replace(got, length=2, raw=w) == expected, hex(w)


def test_encode_inverts_decode_for_every_row() -> None:
    rng = random.Random(5)
    for enc in isa.ENCODINGS:
        seen = 0
        for _ in range(200):
            w = (rng.getrandbits(32) & ~enc.mask) | enc.match
            insn = isa.decode32(w)
            if insn is None or insn.name != enc.name:
                continue
            seen += 1
            assert isa.decode32(isa.encode(insn)) == dataclasses.replace(insn, raw=isa.encode(insn)), enc.name
        assert seen, enc.name


def test_cold_code_runs_in_the_interpreter_without_translation() -> None:
    # addi a0, a0, 1 (x3), c.addi a0, 1 + c.nop, ebreak
    code = words(0x00150513, 0x00150513, 0x00150513, 0x00010505, EBREAK)
    r = run_code(code, x=[0] * 10 + [5], warm_threshold=1 << 30)
    assert r.cause == C.BREAKPOINT and r.x[10] == 9
    hart = r.machine.harts[0]
    assert hart.s.stat_interp == 6  # Five instructions and the ebreak
    assert r.machine.tcache.translated_blocks == 0


def test_writes_to_x0_are_discarded() -> None:
    # addi x0, x0, 5; add a0, x0, x0; lui x0, 1; ebreak
    r = run_code(words(0x00500013, 0x00000533, 0x00001037, EBREAK), x=[0] * 10 + [77], warm_threshold=1 << 30)
    assert r.x[0] == 0 and r.x[10] == 0


def test_warm_heads_are_translated_and_take_over() -> None:
    """A loop of 5,000 iterations: its head warms up after 64 executions, is translated, and the
    rest runs as translated code entered from the interpreter through the jump cache."""
    code = words(
        0x00000513,  # li a0, 0
        0x000015B7,  # lui a1, 1
        0x3885859B,  # addiw a1, a1, 904  (a1 = 5000)
        0x00350513,  # loop: addi a0, a0, 3
        0xFFF5859B,  # addiw a1, a1, -1
        0xFE059CE3,  # bnez a1, loop
        EBREAK,
    )
    r = run_code(code, warm_threshold=64, hot_threshold=1 << 30)
    assert r.cause == C.BREAKPOINT and r.x[10] == 15000
    m = r.machine
    interp = m.harts[0].s.stat_interp
    assert m.tcache.translated_blocks >= 1
    assert 64 * 3 <= interp < 1000, interp
    assert r.retired == 3 + 3 * 5000  # The ebreak traps: it does not retire


def test_fetch_fault_in_the_interpreter() -> None:
    # jalr to an address outside RAM: the fetch there raises an instruction access fault
    code = words(0x000500E7, EBREAK)  # jalr ra, 0(a0)
    r = run_code(code, x=[0] * 10 + [0x1000], warm_threshold=1 << 30)
    assert (r.cause, r.tval, r.pc) == (C.INSN_ACCESS, 0x1000, 0x1000)


def test_instruction_across_a_page_boundary() -> None:
    """A 32-bit instruction whose second half is on the next page (the fetch slow path), run
    interpreted: c.nop up to 0xffe, then addi a0, a0, 7 split over the two pages."""
    code = bytes.fromhex("0100") * (0xFFE // 2) + words(0x00750513, EBREAK)
    r = run_code(code, warm_threshold=1 << 30)
    assert r.cause == C.BREAKPOINT and r.x[10] == 7
    assert r.retired == 0xFFE // 2 + 1  # The ebreak traps: it does not retire


def test_self_modifying_code_runs_the_new_instruction() -> None:
    """A loop stores a new instruction over its own body and runs it (fence.i between): every
    iteration sees the bytes it wrote, interpreted, and after the head has warmed up and been
    translated (the store drops the translation)."""
    for warm in (1 << 30, 4):
        # a4 = addi a0, a0, 1 (0x00150513); the loop writes it over `slot`, then runs it.
        code = words(
            0x00000513,  # 0x00: li a0, 0
            0x06400593,  # 0x04: li a1, 100
            0x00000617,  # 0x08: auipc a2, 0
            0x00150737,  # 0x0c: lui a4, 0x150
            0x5137071B,  # 0x10: addiw a4, a4, 0x513  (a4 = 0x00150513)
            0x00E62C23,  # 0x14: loop: sw a4, 24(a2)  (slot at 0x20)
            0x0000100F,  # 0x18: fence.i
            0x00000013,  # 0x1c: nop
            0x00000013,  # 0x20: slot: nop (becomes addi a0, a0, 1)
            0xFFF58593,  # 0x24: addi a1, a1, -1
            0xFE0596E3,  # 0x28: bnez a1, loop (0x14)
            EBREAK,      # 0x2c
        )
        r = run_code(code, warm_threshold=warm, hot_threshold=1 << 30)
        assert r.cause == C.BREAKPOINT and r.x[10] == 100, warm


def test_heads_index_matches_the_ir() -> None:
    """The Python twin of the head-counter slot function (for tools that read the counters)."""
    r = run_code(words(EBREAK), warm_threshold=1 << 30)
    m = r.machine
    flags = m.harts[0].s.flags
    slot = ctypes.c_uint32.from_address(m.heads_addr + 4 * heads_index(0x8000_0000, flags))
    assert slot.value == 1  # The entry head was counted once
    assert abi.EXIT_WARM not in (abi.EXIT_NEXT, abi.EXIT_MISS, abi.EXIT_POLL, abi.EXIT_CALLOUT, abi.EXIT_HOT)


def test_code_rewritten_over_and_over_stays_interpreted() -> None:
    """A loop that rewrites an instruction of its own page on every iteration: once the page has
    been written over translated code VOLATILE_WRITES times, its heads stay in the interpreter
    instead of being translated again after every rewrite; every iteration still runs the new
    instruction."""
    from runtime.core.tcache import VOLATILE_WRITES

    code = words(
        0x00000513,  # 0x00: li a0, 0
        0x3E800593,  # 0x04: li a1, 1000
        0x00000617,  # 0x08: auipc a2, 0
        0x00150737,  # 0x0c: lui a4, 0x150
        0x5137071B,  # 0x10: addiw a4, a4, 0x513  (a4 = addi a0, a0, 1)
        0x00E62C23,  # 0x14: loop: sw a4, 24(a2)  (slot at 0x20)
        0x0000100F,  # 0x18: fence.i
        0x00000013,  # 0x1c: nop
        0x00000013,  # 0x20: slot
        0xFFF58593,  # 0x24: addi a1, a1, -1
        0xFE0596E3,  # 0x28: bnez a1, loop
        EBREAK,
    )
    r = run_code(code, warm_threshold=4, hot_threshold=1 << 30)
    assert r.cause == C.BREAKPOINT and r.x[10] == 1000
    tc = r.machine.tcache
    assert tc.invalidations["code-write"] >= VOLATILE_WRITES
    # Without the rule: a translation every 4 iterations, about 250.
    assert tc.translated_blocks <= 3 * VOLATILE_WRITES, tc.translated_blocks


def test_rvc_table_is_kept_and_a_corrupt_copy_is_rebuilt(tmp_path) -> None:
    """The expansion table is made once per build and kept beside the runtime object; a copy
    that fails its checksum is made anew, and the interpreter runs compressed code either way."""
    import os
    import subprocess
    import sys

    from runtime.core.pcache import translator_version
    from tests.conftest import ROOT

    env = dict(os.environ, MIRAGE_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    prog = ("from runtime.frontends.snippet import run_code; import struct; "
            "r = run_code(bytes.fromhex('0505') + struct.pack('<I', 0x00100073), warm_threshold=1 << 30); "
            "print(r.x[10])")  # c.addi a0, 1; ebreak
    path = tmp_path / "runtime" / f"rvc-{translator_version()}.bin"
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, cwd=ROOT)
        assert out.stdout.strip() == "1", out.stderr
        assert path.stat().st_size == 32 + 4 * 65536
        good = path.read_bytes()
        path.write_bytes(good[:40] + bytes(16) + good[56:])  # Corrupt: the next run rebuilds it
    out = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "1" and path.read_bytes() == good


def test_event_time_line_is_bounded_by_time_not_count() -> None:
    """A shell loop makes thousands of sfence.vma a second: the statistics' time line sums them
    per bucket instead of keeping one entry each, and loses no count."""
    from runtime.core.tcache import EVENT_BUCKET

    m = run_code(words(EBREAK)).machine
    tc = m.tcache
    before = len(tc.events)
    t0 = tc.events[-1][0] if tc.events else 0.0
    for _ in range(10_000):
        tc._event("sfence.vma", 1)
        tc._event("satp", 2)
    added = tc.events[before:]
    # One entry per kind and bucket of the time the loop took (however slow the host).
    buckets = (added[-1][0] - t0) / EVENT_BUCKET + 2
    assert len(added) <= 2 * buckets < 20_000, (len(added), buckets)
    assert sum(n for _, k, n in added if k == "sfence.vma") == 10_000
    assert sum(n for _, k, n in added if k == "satp") == 20_000
