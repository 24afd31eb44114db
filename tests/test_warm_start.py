"""Warm start: a run installs the translations of the last run of the same program from the
persistent cache's warm set (runtime/core/pcache.py, runtime/core/tcache.py `load_warm_set`),
checked against the guest bytes in memory first; a damaged warm set is rejected and the run starts
cold."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from runtime.core import pcache
from tests.conftest import ROOT

# 2000 iterations of `addi a0, a0, 3`, checked against the word at `expected`; the loop's first
# instruction is 4 bytes, so its immediate can be patched in the ELF.
SUM = r"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li a1, 2000
  j loop
  .option push
  .option norvc
loop:
patchme:
  addi a0, a0, 3
  addi a1, a1, -1
  bnez a1, loop
  .option pop
  la t2, expected
  ld t1, 0(t2)
  bne a0, t1, bad
  PASS
bad: FAIL 2
trap: FAIL 7
  .data
  .align 3
expected: .dword 6000
"""


def run(elf: Path, tmp: Path, name: str, *opts: str, tcache: Path,
        thread: bool = False) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp / name
    env = dict(os.environ, PYTHONPATH=str(ROOT), MIRAGE_TCACHE_DIR=str(tcache))
    # Translations in the run loop unless `thread`: a head found warm is translated before the
    # program ends.
    thread_opt = [] if thread else ["--no-jit-thread"]
    r = subprocess.run([sys.executable, "-m", "runtime", "jit-run", *thread_opt, "--stats", str(out), *opts,
                        str(elf)],
                       capture_output=True, env=env, cwd=ROOT, timeout=120)
    return r, (json.loads(out.read_text()) if out.exists() else {})


def compiled(doc: dict) -> int:
    return sum(t["compiled"] for t in doc["jit"]["tiers"].values())


def offset(elf: Path, name: str) -> int:
    """The file offset of a symbol's bytes."""
    with open(elf, "rb") as f:
        e = ELFFile(f)
        addr = e.get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]
        for seg in e.iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr < seg["p_vaddr"] + seg["p_filesz"]:
                return seg["p_offset"] + addr - seg["p_vaddr"]
    raise AssertionError(name)


@pytest.fixture
def program(asm, tmp_path) -> Path:
    elf = tmp_path / "sum.elf"
    shutil.copy(asm(SUM), elf)
    return elf


def warm_set(tcache: Path) -> Path:
    runs = list((tcache / "runs").glob("*.ws"))
    assert len(runs) == 1, runs
    return runs[0]


# Interpreter first (heads warm at 1024), and every block translated at its first execution.
@pytest.mark.parametrize("warm", ["1024", "0"])
def test_second_run_installs_the_first_runs_translations(program, tmp_path, warm):
    tc = tmp_path / "tc"
    r, cold = run(program, tmp_path, "cold.json", "--warm-threshold", warm, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert cold["warm_start"]["loaded"] == 0 and cold["pcache"]["run_saved"]
    assert compiled(cold) > 0
    r, again = run(program, tmp_path, "warm.json", "--warm-threshold", warm, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    ws = again["warm_start"]
    blocks = sum(t["blocks"] for t in cold["jit"]["tiers"].values())
    assert ws["loaded"] == ws["restored"] == blocks > 0 and ws["changed"] == ws["failed"] == 0
    # Nothing compiled, nothing scanned: the same blocks ran, from their first execution on (the
    # first run interpreted the loop until its head was warm).
    assert compiled(again) == 0 and again["jit"]["blocks"] == 0
    assert [(b["pc"], b["code"]) for b in again["hot_blocks"]] == [(b["pc"], b["code"]) for b in cold["hot_blocks"]]
    loop = [b["executions"] for b in again["hot_blocks"] if b["insns"] == 3]
    if warm == "0":
        assert again["hot_blocks"] == cold["hot_blocks"]
    else:
        assert loop == [2000] and again["interpreter"]["insns"] < cold["interpreter"]["insns"] - 3 * 1000
    # Other options make other translations: no warm set for them.
    r, other = run(program, tmp_path, "other.json", "--warm-threshold", warm, "--hot-threshold", "0", tcache=tc)
    assert r.returncode == 0 and other["warm_start"]["loaded"] == 0


@pytest.mark.parametrize("warm", ["1024", "0"])
def test_changed_guest_bytes_are_not_run_from_the_warm_set(program, tmp_path, warm):
    """The program file changes but keeps its size and time (so the warm set's key): the loop's
    translation no longer matches the bytes in memory and is made anew; a stale one would sum 3s."""
    tc = tmp_path / "tc"
    r, _ = run(program, tmp_path, "cold.json", "--warm-threshold", warm, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    st = program.stat()
    data = bytearray(program.read_bytes())
    at = offset(program, "patchme")
    insn = int.from_bytes(data[at:at + 4], "little")
    assert insn == (3 << 20) | (10 << 15) | (10 << 7) | 0x13  # addi a0, a0, 3
    data[at:at + 4] = ((5 << 20) | (insn & 0xFFFFF)).to_bytes(4, "little")
    at = offset(program, "expected")
    data[at:at + 8] = (10000).to_bytes(8, "little")
    program.write_bytes(bytes(data))
    os.utime(program, ns=(st.st_atime_ns, st.st_mtime_ns))
    r, doc = run(program, tmp_path, "patched.json", "--warm-threshold", warm, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    ws = doc["warm_start"]
    assert ws["loaded"] > 0 and ws["changed"] >= 1 and compiled(doc) >= 1
    # The blocks before the loop did not change: they are installed (all blocks are translated,
    # not only warm ones, when every block is translated at its first execution).
    assert ws["restored"] >= (1 if warm == "0" else 0)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    head = len(pcache.RUN_MAGIC) + 32
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "magic":
        path.write_bytes(b"MIRWS\x00\x00\n" + data[8:])
    elif how == "checksum":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        doc = json.loads(zlib.decompress(data[head:]))
        if how == "foreign":
            doc["key"] = "0" * 64  # Another run's warm set under this name
        elif how == "symbol":
            doc["blocks"][0][6] = "b0_nosuch_0"  # Not a symbol of its module
        elif how == "types":
            doc["blocks"][0][0] = "pc"
        payload = zlib.compress(json.dumps(doc).encode())
        path.write_bytes(pcache.RUN_MAGIC + hashlib.sha256(payload).digest() + payload)


@pytest.mark.parametrize("how", ["truncated", "magic", "checksum", "foreign", "symbol", "types"])
def test_a_damaged_warm_set_is_rejected_and_rebuilt(program, tmp_path, how):
    tc = tmp_path / "tc"
    r, _ = run(program, tmp_path, "cold.json", tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    _damage(warm_set(tc), how)
    r, doc = run(program, tmp_path, "damaged.json", tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert doc["pcache"]["runs_rejected"] == 1 and not doc["pcache"]["run_loaded"]
    assert doc["warm_start"]["loaded"] == 0 and doc["jit"]["blocks"] > 0
    # Written anew at the end of that run: the next one starts warm.
    r, doc = run(program, tmp_path, "rebuilt.json", tcache=tc)
    assert r.returncode == 0 and doc["pcache"]["runs_rejected"] == 0 and doc["warm_start"]["restored"] > 0


def test_two_runs_at_once_share_one_cache(program, tmp_path):
    tc = tmp_path / "tc"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MIRAGE_TCACHE_DIR=str(tc))
    procs = [subprocess.Popen([sys.executable, "-m", "runtime", "jit-run", "--warm-threshold", "0", str(program)],
                              env=env, cwd=ROOT, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    r, doc = run(program, tmp_path, "after.json", "--warm-threshold", "0", tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert doc["pcache"]["rejected"] == doc["pcache"]["runs_rejected"] == 0
    assert doc["warm_start"]["restored"] > 0 and compiled(doc) == 0


def test_icount_runs_do_not_warm_start(program, tmp_path):
    """Under --icount translations go in at the same instruction in every run: none is taken from
    an earlier run, whose code would change where the interpreter gives way."""
    tc = tmp_path / "tc"
    docs = []
    for name in ("a.json", "b.json"):
        r, doc = run(program, tmp_path, name, "--icount", tcache=tc)
        assert r.returncode == 0, r.stderr.decode()
        docs.append(doc)
    assert docs[1]["warm_start"]["loaded"] == 0 and not docs[1]["pcache"]["run_saved"]
    assert docs[0]["interpreter"]["insns"] == docs[1]["interpreter"]["insns"]


def test_warm_sets_are_bounded(tmp_path):
    pc = pcache.PersistentCache(tmp_path)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(pcache.MAX_RUNS + 6)]
    for i, key in enumerate(keys):
        assert pc.save_run(key, [], [])
        os.utime(pc.run_path(key), (1000 + i, 1000 + i))
    pc.save_run(keys[-1], [], [])
    left = {e.path.name[:-3] for e in pc.runs()}
    assert len(left) == pcache.MAX_RUNS and keys[-1] in left and keys[0] not in left
    assert pc.load_run(keys[-1]) == {"version": pcache.RUN_VERSION, "key": keys[-1], "modules": [], "blocks": []}
    assert pc.clear() == 0 and pc.runs_cleared == pcache.MAX_RUNS and not pc.runs()


def test_heads_found_warm_at_the_end_are_in_the_warm_set(asm, tmp_path):
    """A loop whose head warms just before the program ends (its translation still in the worker
    thread): the run waits for it before saving its warm set, so the next run starts with it."""
    elf = tmp_path / "late.elf"
    shutil.copy(asm(SUM.replace("li a1, 2000", "li a1, 1100").replace(".dword 6000", ".dword 3300")), elf)
    tc = tmp_path / "tc"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MIRAGE_TCACHE_DIR=str(tc))
    docs = []
    for name in ("a.json", "b.json"):
        r = subprocess.run([sys.executable, "-m", "runtime", "jit-run", "--stats", str(tmp_path / name), str(elf)],
                           capture_output=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        docs.append(json.loads((tmp_path / name).read_text()))
    first, second = docs
    assert first["interpreter"]["heads_warmed"] >= 1 and first["interpreter"]["blocks_translated"] >= 1
    assert second["warm_start"]["restored"] >= 1
    loop = [b for b in second["hot_blocks"] if b["insns"] == 3]
    assert loop and loop[0]["executions"] == 1100


@pytest.mark.parametrize("thread", [False, True])
def test_blocks_hot_by_the_end_are_promoted_for_the_next_run(program, tmp_path, thread):
    """The loop runs 2,000 times: 1,024 in the interpreter (more if its translation is still in the
    worker), the rest at tier 0, short of the threshold of 1,500. A run with the loop at tier 0
    from the start would promote it: the run promotes it at its end instead, so the next one has
    it at tier 1 from its first iteration and compiles nothing."""
    tc = tmp_path / "tc"
    hot = ("--hot-threshold", "1500")
    r, first = run(program, tmp_path, "a.json", *hot, tcache=tc, thread=thread)
    assert r.returncode == 0, r.stderr.decode()
    assert first["warm_start"]["finish_promoted"] == 1 and first["jit"]["promotions"] == 1
    r, second = run(program, tmp_path, "b.json", *hot, tcache=tc, thread=thread)
    assert r.returncode == 0, r.stderr.decode()
    assert second["jit"]["promotions"] == 0 and compiled(second) == 0 and second["warm_start"]["finish_promoted"] == 0
    loop = [b for b in second["hot_blocks"] if b["insns"] == 3]
    assert [(b["tier"], b["executions"]) for b in loop] == [(1, 2000)]


def _kernel(n: int, acc: int, odd) -> int:
    for i in range(n):
        acc = odd(acc, i) if i & 1 else acc + 3
    return acc & ((1 << 64) - 1)


# tests/test_regions.py's kernel, whose loop spans three blocks (a region once hot), run 3,000
# times and checked; then, if the word at `again` is not 0, its member `odd` becomes
# `add a1, a1, s0` and it runs 20 times more (too few to be promoted again), checked against that.
def _region_program(xor: int, added: int) -> str:
    from tests.test_regions import KERNEL

    return f"""
  .option norvc
  la t0, trap
  csrw mtvec, t0
  li a0, 3000
  li a1, 7
  jal ra, kernel
  la t2, e1
  ld t1, 0(t2)
  bne a1, t1, bad
  la t2, again
  ld t1, 0(t2)
  beqz t1, done
  li t0, 0x008585b3
  la t1, odd
  sw t0, 0(t1)
  fence.i
  li a0, 20
  li a1, 5
  jal ra, kernel
  la t2, e2
  ld t1, 0(t2)
  bne a1, t1, bad
done:
  PASS
bad: FAIL 2
trap: FAIL 3
{KERNEL}
  .data
  .align 3
e1: .dword {xor}
e2: .dword {added}
again: .dword 0
"""


def _patch(elf: Path, symbol: str, size: int, old: int, new: int) -> None:
    """Rewrites a word of the program file, keeping its size and time (so the warm set's key)."""
    st = elf.stat()
    data = bytearray(elf.read_bytes())
    at = offset(elf, symbol)
    assert int.from_bytes(data[at:at + size], "little") == old
    data[at:at + size] = new.to_bytes(size, "little")
    elf.write_bytes(bytes(data))
    os.utime(elf, ns=(st.st_atime_ns, st.st_mtime_ns))


XOR = _kernel(3000, 7, lambda a, i: a ^ i)
# Every block translated at its first execution and promoted after 50 (as in test_regions.py).
REGION_OPTS = ("--warm-threshold", "0", "--hot-threshold", "50")
ADD = _kernel(20, 5, lambda a, i: a + i)


def test_a_region_is_in_the_warm_set(asm, tmp_path):
    elf = tmp_path / "region.elf"
    shutil.copy(asm(_region_program(XOR, ADD)), elf)
    tc = tmp_path / "tc"
    r, first = run(elf, tmp_path, "a.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert first["regions"]["formed"] == 1
    r, second = run(elf, tmp_path, "b.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    # Installed at start with its members' own blocks: nothing translated, the loop iterating in it.
    assert compiled(second) == 0 and second["jit"]["promotions"] == 0
    assert second["regions"]["formed"] == first["regions"]["formed"] == 1
    assert second["regions"]["blocks"] == first["regions"]["blocks"] == 3
    assert second["regions"]["iterations"] > first["regions"]["iterations"] > 2000


def test_a_region_whose_member_changed_is_not_run(asm, tmp_path):
    """The program file changes behind the same size and time: the region's member `odd` (not its
    first block) adds instead of xoring. The region is not installed; a stale one would fail the
    check."""
    elf = tmp_path / "region.elf"
    shutil.copy(asm(_region_program(XOR, ADD)), elf)
    tc = tmp_path / "tc"
    r, first = run(elf, tmp_path, "a.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0 and first["regions"]["formed"] == 1, r.stderr.decode()
    _patch(elf, "odd", 4, 0x0085C5B3, 0x008585B3)  # xor a1, a1, s0 -> add a1, a1, s0
    _patch(elf, "e1", 8, XOR, _kernel(3000, 7, lambda a, i: a + i))
    r, second = run(elf, tmp_path, "b.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert second["warm_start"]["loaded"] > 0 and second["warm_start"]["changed"] >= 1 and compiled(second) >= 1


def test_a_restored_region_is_dropped_when_the_program_rewrites_a_member(asm, tmp_path):
    """The first run leaves a region in the warm set; the second, told to (`again`), rewrites its
    member `odd` after running it: the store must drop the region installed at start."""
    elf = tmp_path / "smc.elf"
    shutil.copy(asm(_region_program(XOR, ADD)), elf)
    tc = tmp_path / "tc"
    r, first = run(elf, tmp_path, "a.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0 and first["regions"]["formed"] == 1, r.stderr.decode()
    _patch(elf, "again", 8, 0, 1)
    r, second = run(elf, tmp_path, "b.json", *REGION_OPTS, tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert second["warm_start"]["at_start"] == second["warm_start"]["loaded"] > 0
    assert second["regions"]["iterations"] > 2000 and second["invalidations"]["code-write"] >= 1


# Loop `b` runs 2,000 times (warm in every run); loop `a` runs as many times as the word at `count`.
TWO_LOOPS = r"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li a1, 2000
b:
  addi a0, a0, 3
  addi a1, a1, -1
  bnez a1, b
  la t2, count
  ld a1, 0(t2)
a:
  addi a0, a0, 5
  addi a1, a1, -1
  bnez a1, a
  PASS
trap: FAIL 7
  .data
  .align 3
count: .dword 500
"""


def test_a_head_new_to_a_warm_started_run_warms_later(asm, tmp_path):
    """A run that installed a warm set translates a head it does not have only after
    tcache.WARM_START_FACTOR times the warm threshold (1,024)."""
    from runtime.core.tcache import WARM_START_FACTOR

    elf = tmp_path / "two.elf"
    shutil.copy(asm(TWO_LOOPS), elf)
    tc = tmp_path / "tc"
    r, first = run(elf, tmp_path, "a.json", tcache=tc)
    assert r.returncode == 0 and first["interpreter"]["heads_warmed"] == 1, r.stderr.decode()
    assert WARM_START_FACTOR > 1 and first["interpreter"]["warm_threshold"] == 1024
    below = 1024 * WARM_START_FACTOR - 100
    for n, warmed in ((below, 0), (1024 * WARM_START_FACTOR + 100, 1)):
        _patch(elf, "count", 8, 500 if n == below else below, n)
        r, doc = run(elf, tmp_path, f"{n}.json", tcache=tc)
        assert r.returncode == 0, r.stderr.decode()
        assert doc["warm_start"]["restored"] >= 1 and doc["interpreter"]["heads_warmed"] == warmed
        assert doc["interpreter"]["warm_threshold"] == 1024 * WARM_START_FACTOR


@pytest.mark.parametrize("thread", [False, True])
def test_a_cached_object_that_does_not_link_is_rejected(program, tmp_path, thread):
    """A warm set's module whose cache entry is intact (checksum and all) but is no object LLVM
    can link: it is rejected and counted, its blocks are translated anew."""
    tc = tmp_path / "tc"
    r, _ = run(program, tmp_path, "a.json", tcache=tc, thread=thread)
    assert r.returncode == 0, r.stderr.decode()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIRAGE_TCACHE_DIR", str(tc))
        pc = pcache.PersistentCache()
        doc = pc.load_run(warm_set(tc).name[:-3])
        for key, _ in doc["modules"]:
            assert pc.put(key, b"\x7fELF" + bytes(60), 0, 0.0)
    r, second = run(program, tmp_path, "b.json", tcache=tc, thread=thread)
    assert r.returncode == 0, r.stderr.decode()
    assert second["pcache"]["rejected"] == len(doc["modules"]) and second["warm_start"]["restored"] == 0
    assert second["warm_start"]["failed"] == second["warm_start"]["loaded"] > 0 and compiled(second) >= 1


# A call 2000 times to a function whose 32-bit `addi a0, a0, 3` crosses a page boundary: a block
# of its own crossing pages (translator/block.py `scan`).
CROSSING = r"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li s1, 2000
1: call cross
  addi s1, s1, -1
  bnez s1, 1b
  li t1, 6000
  bne a0, t1, bad
  PASS
bad: FAIL 2
trap: FAIL 7
  .align 12
  .fill 1023, 4, 0x00000013
  .2byte 0x0001
cross:
  .4byte 0x00350513             # addi a0, a0, 3 (across the page boundary)
  ret
"""


def test_a_block_crossing_pages_is_not_in_the_warm_set(asm, tmp_path):
    """A warm set keeps a block's bytes as contiguous from its physical pc, which those of a block
    crossing pages need not be (tcache.Block.second): it is left out and translated in each run.
    One in an older run's warm set is skipped, the rest of the set used."""
    elf = tmp_path / "cross.elf"
    shutil.copy(asm(CROSSING), elf)
    with open(elf, "rb") as f:
        pc = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name("cross")[0]["st_value"]
    assert pc & 0xFFF == 0xFFE
    tc = tmp_path / "tc"
    r, _ = run(elf, tmp_path, "a.json", "--warm-threshold", "0", tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    path = warm_set(tc)
    head = len(pcache.RUN_MAGIC) + 32
    doc = json.loads(zlib.decompress(path.read_bytes()[head:]))
    assert doc["blocks"] and pc not in [b[0] for b in doc["blocks"]]
    # An entry at the crossing pc with its bytes but another block's code: run, it would fail.
    other = doc["blocks"][0]
    doc["blocks"].append([pc, pc, *other[2:4], "13053500", *other[5:]])
    payload = zlib.compress(json.dumps(doc).encode())
    path.write_bytes(pcache.RUN_MAGIC + hashlib.sha256(payload).digest() + payload)
    r, second = run(elf, tmp_path, "b.json", "--warm-threshold", "0", "--max-insns", "1000000", tcache=tc)
    assert r.returncode == 0, r.stderr.decode()
    assert second["pcache"]["runs_rejected"] == 0 and second["warm_start"]["restored"] > 0
    assert second["warm_start"]["loaded"] == len(doc["blocks"]) - 1
    assert second["jit"]["blocks"] >= 1  # The crossing block, translated anew
