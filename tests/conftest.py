"""Shared fixtures: building guest programs and running Mirage on them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.guest import build as guest_build

ROOT = Path(__file__).resolve().parent.parent
# Every module Mirage compiles under test goes through LLVM's verifier (translator/jit.py).
os.environ["MIRAGE_VERIFY_IR"] = "1"


def mirage(*args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs the mirage CLI of this checkout as a user would."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, input=input,
                          timeout=timeout, env=env, cwd=ROOT)


def fail_checked_run(r: subprocess.CompletedProcess, where: dict[int, str]) -> None:
    """Fails the test for a guest run that did not pass: the numbered check that failed (`where`:
    number -> source line), an unexpected M-level trap (FAIL 1000000000 + mcause << 20 | mepc
    low bits), or the exit status."""
    err = r.stderr.decode(errors="replace")
    m = re.search(r"test (\d+) failed", err)
    if m and int(m.group(1)) >= 1000000000:
        code = int(m.group(1)) - 1000000000
        pytest.fail(f"unexpected trap: mcause {code >> 20}, mepc low bits {code & 0xFFFFF:#x}\n{err}")
    if m:
        pytest.fail(f"check {m.group(1)} failed ({where.get(int(m.group(1)), '?')})\n{err}")
    pytest.fail(f"mirage exited with {r.returncode}\n{err}")


@pytest.fixture(scope="session")
def toolchain() -> None:
    if not guest_build.have_toolchain():
        pytest.fail("riscv64-linux-gnu-gcc is missing: run `just setup`")


@pytest.fixture
def asm(toolchain):
    """asm(source) -> ELF path of an HTIF test program (PASS / FAIL n macros available)."""
    return guest_build.build
