"""The qemu-virt board as data: memory map, devices and interrupt wiring (QEMU hw/riscv/virt.c)."""

from __future__ import annotations

NAME = "qemu-virt"
RAM_BASE = 0x8000_0000
DEFAULT_RAM = 256 << 20
# Where fw_jump jumps and where the payload is loaded (OpenSBI FW_JUMP_ADDR for virt).
PAYLOAD_ADDR = 0x8020_0000
# Boot placement (QEMU 7.2 hw/riscv/boot.c): the device tree near the top of RAM but below
# FDT_TOP, aligned to FDT_ALIGN, at least FDT_SIZE (QEMU's tree, create_device_tree's buffer)
# below the top; the initrd half of RAM above the payload, at most INITRD_MAX_OFFSET up, and never
# below INITRD_MIN: above the 2 MiB from where OpenSBI's fw_jump copies the DTB for virt
# (FW_JUMP_FDT_ADDR 0x82200000).
FDT_ALIGN = 2 << 20
FDT_TOP = 3 << 30
FDT_SIZE = 1 << 20
INITRD_MAX_OFFSET = 128 << 20
INITRD_MIN = 0x8240_0000
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
PLIC_NDEV = 0x60  # "riscv,ndev" exactly as QEMU 7.2's virt tree has it (96)
UART_CLOCK_HZ = 3_686_400
STDOUT_PATH = "/soc/serial@10000000"
# Local interrupt numbers on each hart's riscv,cpu-intc (the mip bits).
IRQ_M_SOFT, IRQ_M_TIMER, IRQ_S_EXT, IRQ_M_EXT = 3, 7, 9, 11
# sifive,test finisher values used by the syscon-poweroff and syscon-reboot nodes.
FINISHER_PASS, FINISHER_RESET = 0x5555, 0x7777


def _u64(v: int) -> list[int]:
    """A 64-bit value as two u32 cells, high first."""
    return [v >> 32 & 0xFFFF_FFFF, v & 0xFFFF_FFFF]


def _reg(base: int, size: int) -> list[int]:
    """A reg entry with #address-cells = #size-cells = 2."""
    return _u64(base) + _u64(size)


def device_tree(ram_size: int = DEFAULT_RAM, harts: int = 1, bootargs: str | None = None,
                initrd_start: int | None = None, initrd_end: int | None = None,
                stdout_path: str = STDOUT_PATH) -> dict:
    """The board's device tree as plain data for runtime.boot.fdt.encode: QEMU 7.2's virt tree (its
    hw/riscv/virt.c create_fdt) reduced to the devices Mirage has. Ints and lists of ints are u32
    cells; 64-bit values (reg, the initrd bounds) are written as (high, low) cell pairs."""
    # Phandles: cpu@N = 2N + 1, its interrupt controller 2N + 2, then the PLIC and the test device
    # (for one hart the same numbers as QEMU's tree).
    def cpu_ph(n: int) -> int:
        return 2 * n + 1

    def intc_ph(n: int) -> int:
        return 2 * n + 2

    plic_ph = 2 * harts + 1
    test_ph = 2 * harts + 2

    chosen: dict = {}
    if bootargs is not None:
        chosen["bootargs"] = bootargs
    chosen["stdout-path"] = stdout_path
    if initrd_start is not None and initrd_end is not None:
        # QEMU 7.2 writes one cell; two cells (a u64) also hold addresses above 4 GiB, and Linux
        # reads either (early_init_dt_check_for_initrd uses the property's length).
        chosen["linux,initrd-start"] = _u64(initrd_start)
        chosen["linux,initrd-end"] = _u64(initrd_end)

    cpus: dict = {"#address-cells": 1, "#size-cells": 0, "timebase-frequency": TIMEBASE_HZ}
    for n in range(harts):
        cpus[f"cpu@{n:x}"] = {
            "phandle": cpu_ph(n),
            "device_type": "cpu",
            "reg": n,
            "status": "okay",
            "compatible": "riscv",
            "riscv,isa": ISA,
            "mmu-type": MMU_TYPE,
            "interrupt-controller": {
                "#interrupt-cells": 1,
                "interrupt-controller": True,
                "compatible": "riscv,cpu-intc",
                "phandle": intc_ph(n),
            },
        }
    cpus["cpu-map"] = {"cluster0": {f"core{n}": {"cpu": cpu_ph(n)} for n in range(harts)}}

    def per_hart(*irqs: int) -> list[int]:
        return [c for n in range(harts) for irq in irqs for c in (intc_ph(n), irq)]

    def dev_reg(name: str) -> list[int]:
        base, size, _kind, _irq = DEVICES[name]
        return _reg(base, size)

    uart_base, _, _, uart_irq = DEVICES["uart0"]
    test_base = DEVICES["test"][0]
    clint_base = DEVICES["clint"][0]
    plic_base = DEVICES["plic"][0]
    soc = {
        "#address-cells": 2,
        "#size-cells": 2,
        "compatible": "simple-bus",
        "ranges": True,
        f"serial@{uart_base:x}": {
            "interrupts": uart_irq,
            "interrupt-parent": plic_ph,
            "clock-frequency": UART_CLOCK_HZ,
            "reg": dev_reg("uart0"),
            "compatible": "ns16550a",
        },
        f"test@{test_base:x}": {
            "phandle": test_ph,
            "reg": dev_reg("test"),
            "compatible": ["sifive,test1", "sifive,test0", "syscon"],
        },
        f"plic@{plic_base:x}": {
            "phandle": plic_ph,
            "riscv,ndev": PLIC_NDEV,
            "reg": dev_reg("plic"),
            "interrupts-extended": per_hart(IRQ_M_EXT, IRQ_S_EXT),
            "interrupt-controller": True,
            "compatible": ["sifive,plic-1.0.0", "riscv,plic0"],
            "#address-cells": 0,
            "#interrupt-cells": 1,
        },
        f"clint@{clint_base:x}": {
            "interrupts-extended": per_hart(IRQ_M_SOFT, IRQ_M_TIMER),
            "reg": dev_reg("clint"),
            "compatible": ["sifive,clint0", "riscv,clint0"],
        },
    }
    return {
        "#address-cells": 2,
        "#size-cells": 2,
        "compatible": "riscv-virtio",
        "model": "riscv-virtio,qemu",
        "chosen": chosen,
        "poweroff": {"value": FINISHER_PASS, "offset": 0, "regmap": test_ph, "compatible": "syscon-poweroff"},
        "reboot": {"value": FINISHER_RESET, "offset": 0, "regmap": test_ph, "compatible": "syscon-reboot"},
        f"memory@{RAM_BASE:x}": {"device_type": "memory", "reg": _reg(RAM_BASE, ram_size)},
        "cpus": cpus,
        "soc": soc,
    }
