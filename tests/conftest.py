"""Shared fixtures: building guest programs and running Mirage on them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runtime.boot.images import build as images_build
from tests.guest import build as guest_build

ROOT = Path(__file__).resolve().parent.parent
# Every module Mirage compiles under test goes through LLVM's verifier (translator/jit.py).
os.environ["MIRAGE_VERIFY_IR"] = "1"
# A cache directory per test session ($MIRAGE_CACHE_DIR): runs under test compile their code afresh
# (LLVM and the verifier see every module, none is linked from an earlier run) and leave the user's
# statistics alone. The Linux images stay the user's, built once ($MIRAGE_IMAGES_DIR);
# tests/test_cache_stats.py checks the default persistent cache path on its own.
os.environ.setdefault("MIRAGE_IMAGES_DIR", str(images_build.images_root()))
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="mirage-test-cache-"))
os.environ["MIRAGE_CACHE_DIR"] = str(SESSION_CACHE)
os.environ.pop("MIRAGE_TCACHE_DIR", None)
os.environ.pop("MIRAGE_NO_PCACHE", None)


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def mirage(*args: str, input: bytes | None = None, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the mirage CLI of this checkout as a user would (`env`: variables to add)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
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


def require(tool: str, package: str) -> str:
    """The path of a host tool that `just setup` installs. A missing one fails the test instead of
    skipping it: the checks against QEMU, dtc, gdb and cpio are the independent references."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing (Debian package {package}): run `just setup`")
    return path


@pytest.fixture(scope="session")
def qemu() -> str:
    return require("qemu-system-riscv64", "qemu-system-misc")


@pytest.fixture(scope="session")
def dtc() -> str:
    return require("dtc", "device-tree-compiler")


@pytest.fixture(scope="session")
def gdb_multiarch() -> str:
    return require("gdb-multiarch", "gdb-multiarch")


@pytest.fixture(scope="session")
def cpio() -> str:
    return require("cpio", "cpio")


@pytest.fixture
def asm(toolchain):
    """asm(source) -> ELF path of an HTIF test program (PASS / FAIL n macros available)."""
    return guest_build.build
