"""Guest physical memory: one native RAM buffer plus MMIO regions."""

from __future__ import annotations

import mmap
import struct

from runtime.core.device import Device
from translator.abi import ffi


class Region:
    __slots__ = ("base", "size", "device", "name")

    def __init__(self, base: int, size: int, device: Device, name: str) -> None:
        self.base, self.size, self.device, self.name = base, size, device, name


_FMT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class PhysicalMemory:
    """RAM at `ram_base` (anonymous mmap, lazily backed) and a list of MMIO regions."""

    def __init__(self, ram_base: int, ram_size: int) -> None:
        self.ram_base = ram_base
        self.ram_size = ram_size
        self.ram_end = ram_base + ram_size
        self.buf = mmap.mmap(-1, ram_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.cbuf = ffi.from_buffer(self.buf)
        self.host_base = int(ffi.cast("uintptr_t", self.cbuf))
        self.regions: list[Region] = []

    def add_device(self, base: int, size: int, device: Device, name: str) -> None:
        for r in self.regions:
            if base < r.base + r.size and r.base < base + size:
                raise ValueError(f"device {name} overlaps {r.name}")
        self.regions.append(Region(base, size, device, name))

    def is_ram(self, paddr: int, size: int = 1) -> bool:
        return self.ram_base <= paddr and paddr + size <= self.ram_end

    def region(self, paddr: int) -> Region | None:
        for r in self.regions:
            if r.base <= paddr < r.base + r.size:
                return r
        return None

    # Access by physical address; None means nothing is there (access fault).
    def read(self, paddr: int, size: int) -> int | None:
        if self.is_ram(paddr, size):
            off = paddr - self.ram_base
            return struct.unpack_from(_FMT[size], self.buf, off)[0]
        r = self.region(paddr)
        if r is None or paddr + size > r.base + r.size:
            return None
        return r.device.read(paddr - r.base, size) & ((1 << (8 * size)) - 1)

    def write(self, paddr: int, size: int, value: int) -> bool:
        if self.is_ram(paddr, size):
            struct.pack_into(_FMT[size], self.buf, paddr - self.ram_base, value & ((1 << (8 * size)) - 1))
            return True
        r = self.region(paddr)
        if r is None or paddr + size > r.base + r.size:
            return False
        r.device.write(paddr - r.base, size, value & ((1 << (8 * size)) - 1))
        return True

    def load_bytes(self, paddr: int, data: bytes) -> None:
        if not self.is_ram(paddr, max(len(data), 1)):
            raise ValueError(f"{len(data)} bytes at {paddr:#x} fall outside RAM "
                             f"[{self.ram_base:#x}, {self.ram_end:#x})")
        off = paddr - self.ram_base
        self.buf[off:off + len(data)] = data

    def read_bytes(self, paddr: int, n: int) -> bytes:
        if not self.is_ram(paddr, max(n, 1)):
            raise ValueError(f"{n} bytes at {paddr:#x} fall outside RAM")
        off = paddr - self.ram_base
        return bytes(self.buf[off:off + n])
