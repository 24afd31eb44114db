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
    m.devices = {}
    plic = None
    for name, (base, size, kind, _irq) in platform.DEVICES.items():
        dev = None
        if kind == "sifive-test":
            dev = SifiveTest()
        elif kind == "ns16550a":
            dev = Uart16550(out=out)
        elif kind == "clint":
            dev = Clint(m)
            m.timer_sources.append(dev)
            m.pollers.append(dev.poll)
        elif kind == "plic":
            dev = plic = Plic(m, num_sources=platform.PLIC_SOURCES)
            m.pollers.append(dev.poll)
        if dev is not None:
            m.mem.add_device(base, size, dev, name)
            m.devices[name] = dev
    # Interrupt wiring: each device's line goes to its PLIC source.
    for name, (_base, _size, _kind, irq) in platform.DEVICES.items():
        dev = m.devices.get(name)
        if irq is not None and plic is not None and hasattr(dev, "irq_line"):
            dev.irq_line = _line(plic, irq)
    return m


def _line(plic: Plic, source: int):
    def irq_line(level: bool) -> None:
        plic.set_irq(source, level)
    return irq_line
