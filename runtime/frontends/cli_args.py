"""What every command of the command line shares: one-line errors and argument checks."""

from __future__ import annotations

import sys

import click

SIZE_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """QEMU-style sizes: 256M, 2G, 65536 (a bare number means MiB as in QEMU's -m)."""
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in SIZE_SUFFIX:
        return int(float(t[:-1]) * SIZE_SUFFIX[t[-1]])
    return int(t) << 20


MIN_RAM = 8 << 20  # Room for a program, the DTB (2 MiB aligned, 2 MiB below the top) and boot info


def ram_size(text: str) -> int:
    """-m's value in bytes, for every command that takes it; raises ValueError saying what is
    wrong with it."""
    try:
        size = parse_size(text)
    except (ValueError, OverflowError):
        raise ValueError(f"bad memory size {text!r} (give e.g. 256M or 1G)") from None
    if size <= 0:
        raise ValueError(f"bad memory size {text!r}: it must be positive")
    if size < MIN_RAM:
        raise ValueError(f"bad memory size {text!r}: at least {MIN_RAM >> 20} MiB are needed")
    if size % 4096:
        raise ValueError(f"bad memory size {text!r}: not a whole number of 4 KiB pages")
    return size


def fail(message: str, status: int = 2) -> None:
    click.echo(f"mirage: error: {message}", err=True)
    sys.exit(status)
