"""Builds small guest programs for the tests with Debian's riscv64 cross toolchain (cached)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
LINK_LD = HERE / "link.ld"
CC = "riscv64-linux-gnu-gcc"
CFLAGS = ["-march=rv64gc", "-mabi=lp64d", "-nostdlib", "-nostartfiles", "-static", "-mcmodel=medany",
          "-fno-pie", "-no-pie", "-Wl,--build-id=none",
          "-ffreestanding", "-fno-builtin"]

# Prologue/epilogue macros for assembly tests: HTIF pass/fail and a trap vector that fails.
PRELUDE = r"""
  .macro PASS
  li t6, 1
  la t5, tohost
  sd t6, 0(t5)
99: j 99b
  .endm
  .macro FAIL n
  li t6, (\n << 1) | 1
  la t5, tohost
  sd t6, 0(t5)
98: j 98b
  .endm
  .section .text.init, "ax"
  .globl _start
_start:
"""
TOHOST = r"""
  .section .tohost, "aw"
  .align 6
  .globl tohost
tohost: .dword 0
  .align 6
  .globl fromhost
fromhost: .dword 0
"""


def to_s_mode(trap: str = "trap") -> str:
    """Guest assembly: mtvec = `trap`, PMP open to S-mode (pmpaddr0 all ones, NAPOT RWX), then
    mret to the label `s_entry` in S-mode (privileged spec 3.1.6.1: MPP = 01)."""
    return f"""
  la t0, {trap}
  csrw mtvec, t0
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  li t0, 3 << 11
  csrc mstatus, t0
  li t0, 1 << 11
  csrs mstatus, t0
  la t0, s_entry
  csrw mepc, t0
  mret
s_entry:"""


# Guest assembly for S-mode: Sv39 on, rooted at the label `pt`.
SV39_ON = r"""
  la t0, pt
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma"""


def cache_dir() -> Path:
    root = Path(os.environ.get("MIRAGE_CACHE_DIR", Path.home() / ".cache" / "mirage"))
    d = root / "test-guests"
    d.mkdir(parents=True, exist_ok=True)
    return d


def have_toolchain() -> bool:
    return shutil.which(CC) is not None


PAYLOAD_LD = HERE / "payload.ld"


def build(source: str, suffix: str = ".S", extra: list[str] | None = None, prelude: bool = True,
          ld: Path = LINK_LD) -> Path:
    """Compiles and links `source` (assembly by default) at 0x80000000 (or as `ld` says); returns
    the ELF path."""
    text = (PRELUDE + source + TOHOST) if prelude and suffix == ".S" else source
    flags = CFLAGS + (extra or [])
    key = hashlib.sha256((text + suffix + " ".join(flags) + ld.read_text()).encode()).hexdigest()[:20]
    out = cache_dir() / f"{key}.elf"
    if out.exists():
        return out
    src = cache_dir() / f"{key}{suffix}"
    src.write_text(text)
    tmp = out.with_suffix(".tmp")
    res = subprocess.run([CC, *flags, "-T", str(ld), "-o", str(tmp), str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cross compile failed:\n{res.stderr}\n--- source ---\n{text}")
    tmp.rename(out)
    return out
