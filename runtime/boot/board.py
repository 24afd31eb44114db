"""Builds a machine from a platform description (platforms/ holds only data)."""

from __future__ import annotations

from runtime.core.machine import Machine
from runtime.devices.clint import Clint
from runtime.devices.plic import Plic
from runtime.devices.sifive_test import SifiveTest
from runtime.devices.uart import Uart16550


def build(platform, ram_size: int | None = None, opt: int = 2, icount: bool = False, harts: int = 1,
          out=None) -> Machine:
    m = Machine(ram_base=platform.RAM_BASE, ram_size=ram_size or platform.DEFAULT_RAM, harts=harts, opt=opt,
                icount=icount, timebase_hz=platform.TIMEBASE_HZ)
    plic = None
    for name, (base, size, kind, _irq) in platform.DEVICES.items():
        dev = None
        if kind == "sifive-test":
            dev = SifiveTest()
        elif kind == "ns16550a":
            dev = Uart16550(out=out)
        elif kind == "clint":
            dev = Clint(m)
        elif kind == "plic":
            dev = plic = Plic(m, num_sources=platform.PLIC_SOURCES)
        if dev is not None:
            m.add_device(name, base, size, dev)
    # Interrupt wiring: each device's line goes to its PLIC source.
    for name, (_base, _size, _kind, irq) in platform.DEVICES.items():
        dev = m.devices.get(name)
        if irq is not None and plic is not None and dev is not None:
            dev.connect_irq(_line(plic, irq))
    return m


def _line(plic: Plic, source: int):
    def irq_line(level: bool) -> None:
        plic.set_irq(source, level)
    return irq_line
