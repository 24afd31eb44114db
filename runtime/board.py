"""Builds a machine from a platform description (platforms/ holds only data)."""

from __future__ import annotations

from runtime.devices.sifive_test import SifiveTest
from runtime.devices.uart import Uart16550
from runtime.machine import Machine


def build(platform, ram_size: int | None = None, opt: int = 2, icount: bool = False, harts: int = 1,
          out=None) -> Machine:
    m = Machine(ram_base=platform.RAM_BASE, ram_size=ram_size or platform.DEFAULT_RAM, harts=harts, opt=opt,
                icount=icount, timebase_hz=platform.TIMEBASE_HZ)
    m.devices = {}
    for name, (base, size, kind, _irq) in platform.DEVICES.items():
        dev = None
        if kind == "sifive-test":
            dev = SifiveTest()
        elif kind == "ns16550a":
            dev = Uart16550(out=out)
        if dev is not None:
            m.mem.add_device(base, size, dev, name)
            m.devices[name] = dev
    return m
