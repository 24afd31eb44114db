"""Builds the bare-metal RV64GC benchmark programs in tests/bench/ and caches the ELFs.

ELFs are written to ``$MIRAGE_CACHE_DIR/bench/`` (default ``~/.cache/mirage/bench/``), named by
program, size and a hash of the sources, flags and compiler version, so a rebuild only happens when
something that affects the binary changed.

Command line (from the repo root)::

    python3 -m tests.bench.build [--size small|bench|all]   # build, print the ELF paths
    python3 -m tests.bench.build --host-checksums            # checksums from a host (x86-64) build
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

SRC_DIR = Path(__file__).resolve().parent

# The benchmark programs, in the order the runner reports them.
PROGRAMS: tuple[str, ...] = ("intkernel", "crc", "fpkernel", "codedata")
# A program that exits immediately; used to measure emulator start-up overhead.
EMPTY = "empty"

# Sizes map to the ITERS_SMALL / ITERS_BENCH macros each program defines with its expected checksums.
SIZES: dict[str, str] = {"small": "ITERS_SMALL", "bench": "ITERS_BENCH"}

CROSS_CC_ENV = "MIRAGE_RISCV_CC"
DEFAULT_CROSS_CC = "riscv64-linux-gnu-gcc"
INSTALL_HINT = "apt-get install gcc-riscv64-linux-gnu"

# Shared by the cross and the host build: FP must be evaluated exactly as written (no contraction
# of a*b+c into an FMA) so that both produce bit-identical results.
COMMON_CFLAGS: tuple[str, ...] = ("-O2", "-ffp-contract=off", "-fno-tree-loop-distribute-patterns")

CROSS_CFLAGS: tuple[str, ...] = (
    "-march=rv64gc",
    "-mabi=lp64d",
    *COMMON_CFLAGS,
    "-static",
    "-nostdlib",
    "-nostartfiles",
    "-mcmodel=medany",
    "-ffreestanding",
    "-fno-builtin",
    # Debian's cross gcc defaults to PIE; these programs are linked at a fixed address.
    "-fno-pie",
    "-no-pie",
    "-fno-asynchronous-unwind-tables",
    "-Wall",
    "-Wextra",
)
LDFLAGS: tuple[str, ...] = ("-Wl,--build-id=none", "-lgcc")

HOST_CFLAGS: tuple[str, ...] = ("-DHOST", *COMMON_CFLAGS, "-Wall", "-Wextra")


class BenchBuildError(RuntimeError):
    """The benchmark programs could not be built."""


def cache_dir() -> Path:
    """Returns the directory the benchmark ELFs are cached in (created on demand)."""
    root = os.environ.get("MIRAGE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "mirage"
    return base / "bench"


def cross_compiler() -> str:
    """Returns the path of the RISC-V cross compiler, or raises BenchBuildError with an install hint."""
    name = os.environ.get(CROSS_CC_ENV, DEFAULT_CROSS_CC)
    path = shutil.which(name)
    if path is None:
        raise BenchBuildError(
            f"RISC-V cross compiler {name!r} not found (needed to build tests/bench); "
            f"install it with: {INSTALL_HINT}  (or point ${CROSS_CC_ENV} at another riscv64 gcc)"
        )
    return path


@functools.cache
def _compiler_identity(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchBuildError(f"cannot run {cc} --version: {exc}") from exc
    return out.splitlines()[0] if out else cc


def _source_files(name: str) -> list[Path]:
    src = SRC_DIR / f"{name}.c"
    if not src.is_file():
        known = ", ".join((*PROGRAMS, EMPTY))
        raise BenchBuildError(f"unknown benchmark program {name!r} (known: {known})")
    return [SRC_DIR / "crt0.S", src]


def _dependency_files(name: str) -> list[Path]:
    return [*_source_files(name), SRC_DIR / "bench.h", SRC_DIR / "link.ld"]


def _define_flags(size: str, defines: Iterable[str]) -> list[str]:
    if size not in SIZES:
        raise BenchBuildError(f"unknown size {size!r} (known: {', '.join(SIZES)})")
    return [f"-DITERS={SIZES[size]}", *(f"-D{d}" for d in defines)]


def _cache_key(cc: str, flags: Sequence[str], files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    h.update(_compiler_identity(cc).encode())
    h.update(b"\0".join(f.encode() for f in flags))
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_program(name: str, size: str = "bench", defines: Sequence[str] = ()) -> Path:
    """Builds one program (``name`` without ``.c``) for ``size`` and returns the cached ELF path.

    ``defines`` are extra preprocessor macros, e.g. ``("FORCE_FAIL",)`` or ``("REPORT_INSTRET",)``.
    """
    cc = cross_compiler()
    flags = [*CROSS_CFLAGS, *_define_flags(size, defines), f"-T{SRC_DIR / 'link.ld'}"]
    key = _cache_key(cc, [*flags, *LDFLAGS], _dependency_files(name))
    variant = "".join(f"-{d.split('=')[0].lower().replace('_', '')}" for d in defines)
    out = cache_dir() / f"{name}-{size}{variant}-{key}.elf"
    if out.is_file():
        return out

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}-", suffix=".elf", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [cc, *flags, "-o", str(tmp), *map(str, _source_files(name)), *LDFLAGS]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=SRC_DIR)
        if proc.returncode != 0:
            raise BenchBuildError(
                f"building {name} ({size}) failed:\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
            )
        # Rename last so a concurrent or interrupted build never leaves a partial ELF in the cache.
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def build_all(size: str = "bench") -> dict[str, Path]:
    """Builds every benchmark program for ``size`` ("small" or "bench"); returns name -> ELF path."""
    return {name: build_program(name, size) for name in PROGRAMS}


def build_empty() -> Path:
    """Builds the program that exits immediately (for measuring emulator start-up time)."""
    return build_program(EMPTY, "small")


_CHECKSUM_RE = re.compile(r"checksum=0x([0-9a-f]{16})")


def host_checksum(name: str, size: str = "bench", host_cc: str = "gcc") -> int:
    """Compiles ``name`` for the build machine (-DHOST) and returns the checksum it computes.

    This is how the EXPECTED_SMALL / EXPECTED_BENCH values in the sources were derived.
    """
    if shutil.which(host_cc) is None:
        raise BenchBuildError(f"host compiler {host_cc!r} not found")
    src = _source_files(name)[1]
    with tempfile.TemporaryDirectory(prefix="mirage-bench-host-") as tmp:
        exe = Path(tmp) / name
        cmd = [host_cc, *HOST_CFLAGS, *_define_flags(size, ["EXPECTED=0"]), "-o", str(exe), str(src), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchBuildError(f"host build of {name} failed:\n{proc.stderr}")
        run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    match = _CHECKSUM_RE.search(run.stdout)
    if match is None:
        raise BenchBuildError(f"host run of {name} printed no checksum: {run.stdout!r}")
    return int(match.group(1), 16)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.bench.build", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument(
        "--host-checksums", action="store_true", help="print the checksums a host build computes"
    )
    args = parser.parse_args(argv)
    sizes = list(SIZES) if args.size == "all" else [args.size]
    try:
        if args.host_checksums:
            for name in PROGRAMS:
                for size in sizes:
                    print(f"{name:10} {size:6} 0x{host_checksum(name, size):016x}ULL")
            return 0
        for size in sizes:
            for name, path in build_all(size).items():
                print(f"{name:10} {size:6} {path}")
        print(f"{EMPTY:10} {'-':6} {build_empty()}")
    except BenchBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
