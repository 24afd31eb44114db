"""Named guest images (`mirage jit-run NAME`), built from source on first use and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.core.pcache import cache_root


class ImageError(Exception):
    """A named image cannot be built; the message says what to do."""


@dataclass(frozen=True)
class Boot:
    """What a named image boots: firmware, and optionally an S-mode kernel (raw or ELF, loaded at
    the payload address), an initrd and a kernel command line."""

    firmware: Path
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None


def images_root() -> Path:
    """Where named images are built and kept: $MIRAGE_IMAGES_DIR, else <cache root>/images (so the
    tests, with a cache directory per session, still boot the images built once)."""
    env = os.environ.get("MIRAGE_IMAGES_DIR")
    return Path(env) if env else cache_root() / "images"
