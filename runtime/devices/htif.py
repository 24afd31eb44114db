"""HTIF tohost/fromhost (Spike's host-target interface), found by ELF symbol.

tohost = 1: pass (exit 0); (n << 1) | 1: test n failed; device 1 command 1: putchar.
Stores to tohost reach it through the store slow path (its page is watched).
"""

from __future__ import annotations

import sys

from runtime.core.hart import GuestExit
from runtime.devices import write_out

EFAULT = 14


class Htif:
    def __init__(self, machine, tohost: int, fromhost: int | None, out=None,
                 ram: tuple[int, int] | None = None) -> None:
        self.m = machine
        # What the guest may name in a request: its own RAM, [start, end) (not the monitor's
        # memory above it, not devices).
        self.ram = ram or (machine.mem.ram_base, machine.mem.ram_end)
        self.tohost = tohost
        self.fromhost = fromhost
        self.out = out or sys.stdout.buffer
        machine.watch_store(tohost, self._on_store)

    def _on_store(self, hart, paddr: int, size: int) -> None:
        if not (paddr <= self.tohost < paddr + size or self.tohost <= paddr < self.tohost + 8):
            return
        val = self.m.mem.read(self.tohost, 8)
        if not val:
            return
        device, cmd, payload = val >> 56, (val >> 48) & 0xFF, val & ((1 << 48) - 1)
        if device == 0 and cmd == 0 and payload & 1:
            code = payload >> 1
            raise GuestExit(0 if code == 0 else 1,
                            "" if code == 0 else f"FAIL: test {code} failed (HTIF tohost={val:#x})")
        if device == 1 and cmd == 1:
            write_out(self.out, bytes([payload & 0xFF]))
            self.m.mem.write(self.tohost, 8, 0)
            if self.fromhost is not None:
                self.m.mem.write(self.fromhost, 8, (1 << 56) | (1 << 48) | 0x100 | (payload & 0xFF))
            return
        if device == 0 and cmd == 0:
            # Syscall block (proxy kernel): only SYS_write to stdout, as QEMU does. Its addresses
            # are guest input: a block or buffer outside the guest's RAM is not touched, and a
            # bad buffer is answered -EFAULT (the proxy kernel's convention: -errno in a0).
            if self._guest_ram(payload, 32):
                args = [self.m.mem.read(payload + 8 * i, 8) for i in range(4)]
                if args[0] == 64:
                    if self._guest_ram(args[2], args[3]):
                        write_out(self.out, self.m.mem.read_bytes(args[2], args[3]))
                        result = args[3]
                    else:
                        result = -EFAULT
                    self.m.mem.write(payload, 8, result & ((1 << 64) - 1))
            self.m.mem.write(self.tohost, 8, 0)
            if self.fromhost is not None:
                self.m.mem.write(self.fromhost, 8, 1)

    def _guest_ram(self, addr: int, size: int) -> bool:
        return self.ram[0] <= addr and addr + size <= self.ram[1]
