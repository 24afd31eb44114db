"""SiFive test finisher / syscon at 0x100000: 0x5555 pass, (code << 16) | 0x3333 fail, 0x7777 reset."""

from __future__ import annotations

from runtime.core.device import Device
from runtime.core.hart import GuestExit


class SifiveTest(Device):
    role = "finisher"

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset != 0:
            return
        status = value & 0xFFFF
        code = (value >> 16) & 0xFFFF
        if status == 0x5555:
            raise GuestExit(0)
        if status == 0x3333:
            raise GuestExit(code or 1, f"FAIL: test finisher reported failure code {code}")
        if status == 0x7777:
            raise GuestExit(0, "reset requested")
