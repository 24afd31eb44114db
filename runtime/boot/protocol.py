"""The boot protocol: what is in the guest's RAM when the firmware starts, and where.

As QEMU's virt board does it (hw/riscv/boot.c): the firmware at the RAM base, a kernel at the
payload address, the initrd above the kernel, the device tree near the top of RAM, and OpenSBI's
fw_dynamic info block (include/sbi/fw_dynamic.h), which QEMU keeps in its reset ROM, just below
the device tree. Every hart starts at the firmware's entry with a0 = its hart id, a1 = the device
tree and a2 = the info block. The monitor's own memory sits above the guest's RAM, outside the
device tree. The board's addresses are data in the platform module (platforms/qemu_virt.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from platforms import qemu_virt
from runtime.boot import fdt
from runtime.boot.loader import Image, Layout, LoadError, load, read_capped
from runtime.devices.htif import Htif

# fw_dynamic's info block, version 2 (OpenSBI include/sbi/fw_dynamic.h, struct fw_dynamic_info):
# six unsigned longs, in this order.
FW_DYNAMIC_MAGIC = 0x4942534F  # "OSBI"
FW_DYNAMIC_VERSION = 2
FW_DYNAMIC_FIELDS = ("magic", "version", "next_addr", "next_mode", "options", "boot_hart")
NEXT_MODE_S = 1  # FW_DYNAMIC_INFO_NEXT_MODE_S
INFO_SIZE = 8 * len(FW_DYNAMIC_FIELDS)
# The info block goes this far below the device tree (a page of its own).
INFO_GAP = 0x1000


@dataclass(frozen=True)
class Guest:
    """What to boot: the firmware (PROGRAM), an optional kernel, initrd and device tree file, the
    kernel command line, the guest's RAM size and the monitor's RAM above it."""

    program: Path
    ram_size: int
    kernel: Path | None = None
    initrd: Path | None = None
    dtb: Path | None = None
    bootargs: str | None = None
    monitor_ram: int = 0


@dataclass(frozen=True)
class Booted:
    """The guest as placed: the firmware's image (entry, symbols for --signature), where the
    device tree, the info block and the initrd went, the guest's RAM [base, end) and the parts of
    memory the monitor owns (base, size) and the OS owns [start, end)."""

    image: Image
    dtb_addr: int
    info_addr: int
    initrd: tuple[int, int] | None
    ram: tuple[int, int]
    monitor_ram: tuple[int, int]
    os_memory: tuple[int, int]

    @property
    def entry(self) -> int:
        return self.image.entry

    def reset_args(self, hart_id: int) -> tuple[int, int, int]:
        """a0, a1, a2 of a hart at the firmware's entry, as QEMU's virt reset vector sets them."""
        return hart_id, self.dtb_addr, self.info_addr


def dtb_address(ram_base: int, ram_end: int, size: int, platform: ModuleType = qemu_virt) -> int:
    """Where the device tree goes, as QEMU 7.2 places it (hw/riscv/boot.c, riscv_load_fdt): as far
    up as possible but below FDT_TOP (3 GiB), FDT_ALIGN aligned, at least FDT_SIZE (the size of
    QEMU's own tree) below the top."""
    top = min(ram_end, platform.FDT_TOP) if ram_base < platform.FDT_TOP else ram_end
    return (top - max(size, platform.FDT_SIZE)) & ~(platform.FDT_ALIGN - 1)


def info_address(dtb_addr: int) -> int:
    """Where the fw_dynamic info block goes: the page below the device tree."""
    return dtb_addr - INFO_GAP


def fw_dynamic_info(next_addr: int, next_mode: int = NEXT_MODE_S, options: int = 0,
                    boot_hart: int = 0) -> bytes:
    """The fw_dynamic info block (version 2) as the firmware reads it: fw_jump ignores it."""
    fields = (FW_DYNAMIC_MAGIC, FW_DYNAMIC_VERSION, next_addr, next_mode, options, boot_hart)
    return b"".join(v.to_bytes(8, "little") for v in fields)


def initrd_range(ram_size: int, size: int, platform: ModuleType = qemu_virt) -> tuple[int, int]:
    """(start, end) of an initrd of `size` bytes with `ram_size` bytes of RAM. QEMU's rule
    (hw/riscv/boot.c, riscv_load_initrd): half of RAM above the kernel, at most INITRD_MAX_OFFSET
    up, so the kernel's own memory does not reach it; never below INITRD_MIN, above where fw_jump
    copies the DTB. It has to end below the device tree and the boot info block."""
    start = max(platform.PAYLOAD_ADDR + min(ram_size // 2, platform.INITRD_MAX_OFFSET), platform.INITRD_MIN)
    end = start + size
    # Where the info block below a device tree of up to FDT_SIZE bytes begins.
    ram_base = platform.RAM_BASE
    limit = info_address(dtb_address(ram_base, ram_base + ram_size, 0, platform))
    if end > limit:
        raise LoadError(f"an initrd of {size} bytes does not fit at {start:#x} below {limit:#x} "
                        f"with {ram_size >> 20} MiB of RAM: give the guest more memory (-m)")
    return start, end


def device_tree_blob(ram_size: int, harts: int, bootargs: str | None, initrd: tuple[int, int] | None,
                     platform: ModuleType = qemu_virt) -> bytes:
    """The board's generated device tree; raises fdt.FdtError."""
    start, end = initrd or (None, None)
    return fdt.encode(platform.device_tree(ram_size=ram_size, harts=harts, bootargs=bootargs,
                                           initrd_start=start, initrd_end=end))


def patch_chosen(blob: bytes, bootargs: str | None, initrd: tuple[int, int] | None) -> bytes:
    """A DTB given with --dtb, with /chosen's bootargs and initrd range replaced as QEMU does for
    -append and -initrd (the memory reservation block is not kept)."""
    tree = fdt.decode(blob)
    chosen = tree.setdefault("chosen", {})
    if bootargs is not None:
        chosen["bootargs"] = bootargs
    if initrd is not None:
        chosen["linux,initrd-start"] = fdt.U64(initrd[0])
        chosen["linux,initrd-end"] = fdt.U64(initrd[1])
    return fdt.encode(tree)


def boot(m, guest: Guest, platform: ModuleType = qemu_virt) -> Booted:
    """Puts `guest` in machine `m` (whose RAM holds the guest's and the monitor's): loads the firmware
    and the kernel, places the initrd, the device tree and the info block, and wires HTIF to the
    firmware's tohost symbol. Raises LoadError, whose message is the user's one-line error."""
    ram = guest.ram_size
    ram_base = platform.RAM_BASE
    ram_end = ram_base + ram
    # Every object placed in the guest's RAM is checked against it and against the others; the
    # monitor's RAM above it is no place for any.
    layout = Layout(ram_base, ram_end)
    img = load(m.mem, Path(guest.program), ram_base, layout)
    if "tohost" in img.symbols:
        Htif(m, img.symbols["tohost"], img.symbols.get("fromhost"), ram=(ram_base, ram_end))
    if guest.kernel:
        load(m.mem, Path(guest.kernel), platform.PAYLOAD_ADDR, layout)
    initrd = None
    if guest.initrd:
        data = read_capped(Path(guest.initrd), ram)
        initrd = initrd_range(ram, len(data), platform)
        layout.place(f"initrd {guest.initrd}", initrd[0], len(data))
        m.mem.load_bytes(initrd[0], data)
    if guest.dtb:
        blob = read_capped(Path(guest.dtb), ram)
        try:
            fdt.decode(blob)  # As QEMU, which refuses a -dtb that libfdt cannot open
            if initrd or guest.bootargs is not None:
                blob = patch_chosen(blob, guest.bootargs, initrd)
        except Exception as e:  # noqa: BLE001 (any decoding failure of a user's file)
            raise LoadError(f"{guest.dtb}: not a valid device tree blob ({e})") from None
    else:
        try:
            blob = device_tree_blob(ram, len(m.harts), guest.bootargs, initrd, platform)
        except fdt.FdtError as e:
            raise LoadError(f"device tree: {e}") from None
    dtb_addr = dtb_address(ram_base, ram_end, len(blob), platform)
    info_addr = info_address(dtb_addr)
    try:
        layout.place("the device tree", dtb_addr, len(blob))
        layout.place("the boot info block", info_addr, INFO_SIZE)
    except LoadError as e:
        raise LoadError(f"{e} (with {ram >> 20} MiB of RAM; -m gives more)") from None
    m.mem.load_bytes(dtb_addr, blob)
    # The firmware hands over to the payload address in S-mode; the boot hart is 0, as QEMU's.
    m.mem.load_bytes(info_addr, fw_dynamic_info(platform.PAYLOAD_ADDR))
    return Booted(image=img, dtb_addr=dtb_addr, info_addr=info_addr, initrd=initrd, ram=(ram_base, ram_end),
                  monitor_ram=(ram_end, guest.monitor_ram), os_memory=(platform.PAYLOAD_ADDR, ram_end))
