"""The translations' memory bound (`--tb-size`, runtime/core/tcache.py TB_SIZE): with a bound far
smaller than a program's code, the cache is flushed (every translation dropped, the JIT replaced)
whenever the bound is reached; the program still computes the right result, the bound holds at
every translation, and the statistics count the flushes and every execution of freed code."""

from __future__ import annotations

import json

from runtime.core.tcache import MODULE_COST
from runtime.frontends import stats
from tests.test_hardening import assert_bad_input, run_env, smc_rewrites
from tests.test_tcache import run_machine

MASK64 = (1 << 64) - 1


def many_functions(k: int, rounds: int) -> tuple[str, int]:
    """A program calling k distinct functions (each `addi; xori; ret`) `rounds` times over,
    about 2k blocks; it checks a0 against the value computed here, and that value."""
    consts = [((i * 37) % 4000 - 2000, (i * 11) % 2048) for i in range(k)]
    a0 = 0
    for _ in range(rounds):
        for c, d in consts:
            a0 = ((a0 + c) & MASK64) ^ d
    calls = "\n".join(f"  call f{i}" for i in range(k))
    funcs = "\n".join(f"f{i}:\n  addi a0, a0, {c}\n  xori a0, a0, {d}\n  ret" for i, (c, d) in enumerate(consts))
    src = f"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li s0, {rounds}
loop:
{calls}
  addi s0, s0, -1
  bnez s0, loop
  li t0, {a0 if a0 < 1 << 63 else a0 - (1 << 64)}
  bne a0, t0, bad
  PASS
bad: FAIL 2
trap: FAIL 7
{funcs}
"""
    return src, a0


def run_bounded(elf, tb_size: int, max_insns: int = 5_000_000):
    """Runs an HTIF program in this process, every block translated on its first execution, with
    the translations' bound `tb_size`; checks before every module goes in that the cache was under
    the bound. Returns the machine and the estimates seen before each install."""
    before: list[int] = []

    def setup(m) -> None:
        tc = m.tcache
        tc.tb_size = tb_size
        install = tc._install

        def checked(job, keep=None):
            before.append(tc.jit_bytes)
            return install(job, keep)

        tc._install = checked

    return run_machine(elf, max_insns, setup), before


def test_a_small_bound_flushes_and_the_result_stays_right(asm):
    src, _ = many_functions(300, 3)
    bound = 6 * MODULE_COST
    m, before = run_bounded(asm(src), bound)
    tc = m.tcache
    # The program's ~600 blocks need many modules: the bound was reached over and over.
    assert tc.translated_blocks > 600
    assert tc.flushes >= 3
    assert m.engine.stats.recycles == tc.flushes
    assert tc.invalidations["eviction"] > 0
    # Below the bound whenever a module went in (so at most one module over it), and the live
    # modules are those of the current JIT only: nothing of a replaced JIT is held.
    assert before and max(before) < bound
    assert len(tc.modules) <= bound // MODULE_COST + 1
    assert len(m.engine._libs) == len(tc.modules)
    assert set(m.engine._libs) == {mod.lib for mod in tc.modules}
    # After the last flush, only code translated since is in the cache.
    assert all(b.valid and b.module in tc.modules for b in tc.blocks.values())


def test_no_bound_no_flush(asm):
    src, _ = many_functions(300, 3)
    m, before = run_bounded(asm(src), 0)
    assert m.tcache.flushes == 0 and m.engine.stats.recycles == 0
    assert m.tcache.invalidations["eviction"] == 0
    assert max(before) >= 6 * MODULE_COST  # The bound above was indeed smaller than the program


def test_rewritten_code_under_a_small_bound(asm):
    """Self-modifying code: each rewrite unloads a module, which leaves LLVM's bookkeeping of it
    behind until the JIT is replaced: that counts towards the bound, so flushes come even though
    few modules are ever live; every version still runs, and is counted, exactly once."""
    n = 300
    m, before = run_bounded(asm(smc_rewrites(n)), 8 * MODULE_COST)
    tc = m.tcache
    assert tc.invalidations["code-write"] == n - 1
    assert tc.flushes >= 2
    assert max(before) < 8 * MODULE_COST
    blocks, _ = stats.block_counts(tc)
    patch = max(blocks, key=lambda b: b["translations"])
    assert patch["translations"] == n and patch["executions"] == n


def test_tb_size_option_and_statistics(asm, tmp_path):
    """Through the command line with the interpreter (warm heads translated in the run loop, so
    that every one is in before the program ends): the flushes and the live cache are in --stats,
    and the document passes its schema."""
    src, _ = many_functions(300, 10)
    out = tmp_path / "s.json"
    r = run_env("jit-run", "--tb-size", "256K", "--stats", str(out), str(asm(src)),
                env={"MIRAGE_WARM_THRESHOLD": "4", "MIRAGE_JIT_THREAD": "0", "MIRAGE_NO_PCACHE": "1"})
    assert r.returncode == 0, r.stderr
    doc = stats.load(out)
    mem = doc["jit"]["memory"]
    assert mem["limit"] == 256 << 10
    assert mem["flushes"] >= 1
    assert doc["invalidations"]["eviction"] > 0
    assert mem["live_modules"] <= (256 << 10) // MODULE_COST + 1
    assert 0 < mem["estimated"] <= mem["peak"]
    r = run_env("cache", "stats", str(out))
    assert r.returncode == 0, r.stderr
    assert b"flushes" in r.stdout
    # The default bound is far above what this program needs: no flush.
    r = run_env("jit-run", "--stats", str(out), str(asm(src)), env={"MIRAGE_NO_PCACHE": "1"})
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["jit"]["memory"]["flushes"] == 0


def test_bad_tb_size(asm):
    for bad in ("lots", "-5M"):
        assert_bad_input(run_env("jit-run", "--tb-size", bad, str(asm("  PASS\n"))), "--tb-size")


def test_event_time_line_is_bounded_over_a_long_run():
    """The statistics' time line of a long run (here one event every 60 ms of a pretended 10
    minutes, two kinds) is kept in wider buckets once it reaches MAX_EVENTS; no count is lost."""
    from runtime.core.tcache import MAX_EVENTS, TranslationCache

    tc = TranslationCache(None, 0)
    for _ in range(10_000):
        tc.t0 -= 0.06
        tc._event("sfence.vma", 1)
        tc._event("satp", 3)
    assert len(tc.events) <= MAX_EVENTS
    assert tc.event_bucket > 0.06
    assert sum(n for _, k, n in tc.events if k == "sfence.vma") == 10_000
    assert sum(n for _, k, n in tc.events if k == "satp") == 30_000
    times = [t for t, _, _ in tc.events]
    assert times == sorted(times) and times[-1] > 590


def _callable(addr: int):
    import ctypes

    return ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(addr)


def test_engine_recycle_keeps_permanent_code_and_imports():
    """Engine.recycle drops every translation library and the JIT that held them; a permanent
    library (the runtime's) still runs, and modules linked afterwards reach every import, also
    one registered after the first link (the imports library is made again)."""
    import ctypes

    from translator.jit import Engine

    eng = Engine(opt=0)
    seen = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)
    twice = cb_type(lambda x: seen.append(x) or 2 * x)
    eng.add_import("host_twice", ctypes.cast(twice, ctypes.c_void_p).value)

    def module(name: str, body: str, decls: str = "declare i64 @host_twice(i64)\n") -> bytes:
        return eng.emit_object(f"{decls}define i64 @{name}(i64 %x) {{\n{body}\n}}\n")

    base = eng.link(module("rt_plus1", "  %y = add i64 %x, 1\n  ret i64 %y"), ["rt_plus1"], permanent=True)
    first = eng.link(module("t_a", "  %y = call i64 @host_twice(i64 %x)\n  ret i64 %y"), ["t_a"])
    assert _callable(first["t_a"])(21) == 42 and seen == [21]
    assert len(eng._libs) == 1
    eng.recycle()
    assert eng._libs == set() and eng.stats.recycles == 1
    assert _callable(base["rt_plus1"])(41) == 42
    plus3 = cb_type(lambda x: x + 3)
    eng.add_import("host_plus3", ctypes.cast(plus3, ctypes.c_void_p).value)
    both = module("t_b", "  %y = call i64 @host_twice(i64 %x)\n  %z = call i64 @host_plus3(i64 %y)\n  ret i64 %z",
                  "declare i64 @host_twice(i64)\ndeclare i64 @host_plus3(i64)\n")
    again = eng.link(both, ["t_b"])
    assert _callable(again["t_b"])(5) == 13 and seen == [21, 5]
    eng.release(eng.last_library)
    assert eng._libs == set()
