"""`mirage dtb`: writes a board's flattened device tree (registered in runtime/frontends/cli.py)."""

from __future__ import annotations

from pathlib import Path

import click

PLATFORMS = ("qemu-virt",)


class _Address(click.ParamType):
    """An integer in any base Python accepts (0x84000000, 2214592512)."""

    name = "address"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        try:
            v = int(str(value).replace("_", ""), 0)
        except ValueError:
            self.fail(f"{value!r} is not an address", param, ctx)
        if not 0 <= v < 1 << 64:
            self.fail(f"{value!r} does not fit in 64 bits", param, ctx)
        return v


@click.command("dtb")
@click.option("--platform", type=click.Choice(PLATFORMS), default="qemu-virt", show_default=True)
@click.option("-o", "output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Write the DTB here.")
@click.option("-m", "memory", default="256M", show_default=True, help="Guest RAM size.")
@click.option("--harts", type=click.IntRange(1, 512), default=1, show_default=True, help="Number of harts.")
@click.option("--append", "bootargs", help="Kernel command line (/chosen/bootargs).")
@click.option("--initrd-start", type=_Address(), help="Physical address of the initrd.")
@click.option("--initrd-end", type=_Address(), help="Physical address just past the initrd.")
def dtb(platform: str, output: Path, memory: str, harts: int, bootargs: str | None,
        initrd_start: int | None, initrd_end: int | None) -> None:
    """Write the device tree blob of a board (what firmware receives in a1)."""
    from platforms import qemu_virt
    from runtime.boot import fdt
    from runtime.frontends.cli_args import fail, ram_size

    try:
        ram = ram_size(memory)
    except ValueError as e:
        fail(str(e))
    if (initrd_start is None) != (initrd_end is None):
        fail("--initrd-start and --initrd-end go together")
    if initrd_start is not None and initrd_end < initrd_start:
        fail("--initrd-end is below --initrd-start")
    plat = {"qemu-virt": qemu_virt}[platform]
    tree = plat.device_tree(ram_size=ram, harts=harts, bootargs=bootargs, initrd_start=initrd_start,
                            initrd_end=initrd_end)
    try:
        output.write_bytes(fdt.encode(tree))
    except OSError as e:
        fail(f"{output}: {e.strerror}")
