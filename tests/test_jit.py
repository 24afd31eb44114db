"""The JIT engine (translator/jit.py): background compilation in the worker thread, which runs
LLVM outside llvmlite's global lock in a context of its own, concurrently with the main thread."""

from __future__ import annotations

import ctypes
import threading

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


def test_worker_and_main_thread_compile_at_the_same_time():
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
