"""The device interface of the machine: what a device declares (`Device`) for the machine to wire
it by (`Machine.add_device`), and the platform timer's and the console's interfaces (`Timer`, `Console`). Devices themselves are
in runtime/devices/."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol


class Device:
    """A device of the machine, as `Machine.add_device` wires it:
    - `read`/`write`: its memory-mapped registers (offsets from its base, sizes 1, 2, 4 or 8);
    - `role`: what others find it by (`Machine.device(role)`): "timer" (see `Timer`),
      "interrupt-controller", "console", "finisher";
    - `poll(machine)`: run between slices of guest instructions (a device whose state moves with
      time, or that re-asserts an interrupt line); only devices that define it are polled;
    - `deadline()`: the `machine.time()` at which its state changes next (a slice ends there and
      wfi sleeps until it), or None; only devices that define it are asked;
    - `irq_outputs`: how many interrupt lines it drives; the board connects each to an input of
      the interrupt controller with `connect_irq`, after which the device calls `irq_line(level)`.
    """

    role: ClassVar[str] = ""
    irq_outputs: ClassVar[int] = 0
    irq_line: Callable[[bool], None] | None = None

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        pass

    def poll(self, machine: object) -> None:
        pass

    def deadline(self) -> int | None:
        return None

    def connect_irq(self, line: Callable[[bool], None]) -> None:
        if not self.irq_outputs:
            raise ValueError(f"{type(self).__name__} drives no interrupt line")
        self.irq_line = line

    # What the machine asks of a device (the defaults above mean "not polled", "no deadline")
    def polled(self) -> bool:
        return type(self).poll is not Device.poll

    def timed(self) -> bool:
        return type(self).deadline is not Device.deadline


class Timer(Protocol):
    """The platform timer (role "timer"): mtime and one mtimecmp per hart (privileged spec 3.2.1:
    the machine timer interrupt of a hart is pending while mtime >= its mtimecmp)."""

    def mtime(self) -> int:
        """mtime, in timebase ticks."""
        ...

    def timecmp(self, hart: int) -> int:
        """mtimecmp of hart `hart`."""
        ...

    def set_timecmp(self, hart: int, value: int) -> None:
        """Writes mtimecmp of hart `hart` (MTIP follows at once)."""
        ...


class Console(Protocol):
    """The console (role "console"): what its transmitter sends to the host."""

    def transmit(self, data: bytes) -> None:
        """Sends `data` as the guest writing it to the transmitter would (output, interrupts)."""
        ...
