"""Shared fixtures: building guest programs and running Mirage on them."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def toolchain() -> None:
    if not guest_build.have_toolchain():
        pytest.fail("riscv64-linux-gnu-gcc is missing: run `just setup`")


@pytest.fixture
def asm(toolchain):
    """asm(source) -> ELF path of an HTIF test program (PASS / FAIL n macros available)."""
    return guest_build.build
