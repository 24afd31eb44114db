"""The JIT engine (translator/jit.py): background compilation in the worker thread, which runs
LLVM outside llvmlite's global lock in a context of its own, concurrently with the main thread."""

from __future__ import annotations

import ctypes
import threading
import time
from pathlib import Path

import pytest

from translator.jit import Engine


def module(name: str, k: int) -> str:
    # Enough arithmetic that code generation takes a while, so the two threads overlap.
    body = "\n".join(f"  %v{i + 1} = mul i64 %v{i}, {k + i}" for i in range(200))
    return f"define i64 @{name}(i64 %v0) {{\n{body}\n  ret i64 %v200\n}}\n"


def expected(x: int, k: int) -> int:
    for i in range(200):
        x = x * (k + i) & (1 << 64) - 1
    return x


def call(addr: int, x: int) -> int:
    return ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(addr)(x)


def heavy(name: str, n: int) -> str:
    """n loads all live at once, folded pairwise: register allocation grows faster than n (about
    2 s of code generation at the engine's level for n = 3000, 50 times the small modules)."""
    lines = [f"define i64 @{name}(ptr %p) {{"]
    for i in range(n):
        lines += [f"  %a{i}p = getelementptr i64, ptr %p, i64 {i}", f"  %a{i} = load i64, ptr %a{i}p"]
    acc = "%a0"
    for i in range(1, n):
        lines += [f"  %s{i} = mul i64 {acc}, %a{n - i}", f"  %t{i} = xor i64 %s{i}, %a{i}"]
        acc = f"%t{i}"
    return "\n".join([*lines, f"  ret i64 {acc}", "}", ""])


def heavy_expected(values: list[int]) -> int:
    n, acc = len(values), values[0]
    for i in range(1, n):
        acc = (acc * values[n - i] & (1 << 64) - 1) ^ values[i]
    return acc


def cpu_ticks(native_id: int) -> int:
    """CPU time a thread of this process has used (utime + stime, in clock ticks)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_worker_and_main_thread_compile_side_by_side():
    # Many modules on both threads at once come out right (overlap itself: the next test).
    eng = Engine()
    jobs = [eng.start(module(f"w{i}", i), [f"w{i}"], opt=o) for i, o in enumerate((0, None) * 10)]
    # Meanwhile the main thread compiles through llvmlite's locked API.
    main = [eng.compile(module(f"m{i}", 100 + i), [f"m{i}"], opt=0)[0][f"m{i}"] for i in range(10)]
    for i, j in enumerate(jobs):
        addrs, obj = j.finish()
        assert obj[:4] == b"\x7fELF"
        assert call(addrs[f"w{i}"], 3) == expected(3, i)
    for i, addr in enumerate(main):
        assert call(addr, 5) == expected(5, 100 + i)
    assert eng.stats.emitted == 30 and eng.stats.background_seconds > 0
    assert {t.name for t in threading.enumerate() if t.name.startswith("mirage-jit")}
    eng.shutdown()
    assert not [t for t in threading.enumerate() if t.name.startswith("mirage-jit")]


def test_main_thread_compiles_while_the_worker_generates_code():
    """Not serialized: while the worker is inside one long code generation (its thread is using
    CPU time and the module is not ready), the main thread compiles and links modules of its own;
    with a shared lock, or the GIL held, they would wait until the worker's module was done."""
    eng = Engine()
    n = 3000
    big = eng.start(heavy("big", n), ["big"])
    worker = next(t for t in threading.enumerate() if t.name.startswith("mirage-jit"))
    seen = cpu_ticks(worker.native_id)
    while cpu_ticks(worker.native_id) < seen + 5:
        assert not big.ready(), "the worker finished before it could be observed at work"
        time.sleep(0.005)
    main = [eng.compile(module(f"m{i}", 100 + i), [f"m{i}"], opt=0)[0][f"m{i}"] for i in range(5)]
    assert not big.ready(), "the main thread's compiles waited for the worker's"
    for i, addr in enumerate(main):
        assert call(addr, 5) == expected(5, 100 + i)
    addrs, _ = big.finish()
    values = [(i * 0x9E3779B97F4A7C15 + 1) & (1 << 64) - 1 for i in range(n)]
    buf = (ctypes.c_uint64 * n)(*values)
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(addrs["big"])
    assert fn(ctypes.addressof(buf)) == heavy_expected(values)
    eng.shutdown()


@pytest.mark.parametrize("text, message", [
    ("define i64 @f(ptr %h) {\n  ret i32 0\n}\n", "LLVM IR parsing error"),
    ("define i64 @f() {\nentry:\n  br label %x\nx:\n  %a = add i64 %b, 1\n  %b = add i64 %a, 1\n  ret i64 %a\n}\n",
     "LLVM IR verification failed"),
])
def test_worker_reports_bad_modules(text, message):
    # The tests run with MIRAGE_VERIFY_IR=1 (tests/conftest.py), so the worker verifies too.
    eng = Engine()
    job = eng.start(text, ["f"])
    with pytest.raises(RuntimeError, match=message):
        job.finish()
    # The worker survives and compiles the next module.
    addrs, _ = eng.start(module("g", 7), ["g"]).finish()
    assert call(addrs["g"], 2) == expected(2, 7)
    eng.shutdown()
