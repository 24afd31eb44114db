"""The qemu-virt board as data: memory map, devices and interrupt wiring (QEMU hw/riscv/virt.c)."""

from __future__ import annotations

NAME = "qemu-virt"
RAM_BASE = 0x8000_0000
DEFAULT_RAM = 256 << 20
# Where fw_jump jumps and where the payload is loaded (OpenSBI FW_JUMP_ADDR for virt).
PAYLOAD_ADDR = 0x8020_0000
TIMEBASE_HZ = 10_000_000
ISA = "rv64imafdc"
MMU_TYPE = "riscv,sv39"

# name -> (base, size, kind, PLIC source or None)
DEVICES: dict[str, tuple[int, int, str, int | None]] = {
    "test": (0x0010_0000, 0x1000, "sifive-test", None),
    "clint": (0x0200_0000, 0x1_0000, "clint", None),
    "plic": (0x0C00_0000, 0x60_0000, "plic", None),
    "uart0": (0x1000_0000, 0x100, "ns16550a", 10),
}
PLIC_SOURCES = 96
