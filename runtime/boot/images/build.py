"""Builds named images from the sources beside this file (cached under ~/.cache/mirage/images, or
$MIRAGE_IMAGES_DIR)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from runtime.boot.images import Boot, ImageError, images_root

HERE = Path(__file__).parent
CC = "riscv64-linux-gnu-gcc"


def demo() -> Path:
    """The bundled demo program (C, cross-compiled)."""
    if shutil.which(CC) is None:
        raise ImageError(f"{CC} not found: install it with `apt-get install gcc-riscv64-linux-gnu` "
                         "(or run `just setup`)")
    src, ld = HERE / "demo.c", HERE / "demo.ld"
    flags = ["-march=rv64gc", "-mabi=lp64d", "-O2", "-nostdlib", "-nostartfiles", "-static",
             "-mcmodel=medany", "-ffreestanding", "-fno-builtin"]
    key = hashlib.sha256(src.read_bytes() + ld.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    out = images_root() / f"demo-{key}.elf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    import subprocess  # Here: only a build needs it (start-up time)

    r = subprocess.run([CC, *flags, "-T", str(ld), "-o", str(tmp), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageError(f"building the demo failed: {r.stderr.strip()}")
    tmp.rename(out)
    return out


def linux_shell() -> Boot:
    """OpenSBI fw_jump, Linux 6.1 and a busybox initramfs, built from Debian's packages."""
    from runtime.boot.images import linux

    return linux.linux_shell()


NAMED = {"demo": demo, "linux-shell": linux_shell}


def resolve(name: str) -> Boot:
    """The named image `name` (a key of NAMED), built first if needed."""
    image = NAMED[name]()
    return image if isinstance(image, Boot) else Boot(firmware=image)
