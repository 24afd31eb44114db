"""The host side of the guest console: stdin feeds the UART's receiver.

When stdin is not a terminal (a pipe or a file), its bytes are fed to the guest as they become
readable, so scripts work: `printf 'uname -a\\npoweroff -f\\n' | mirage jit-run linux-shell`.
Reading never blocks the machine: the run loop polls, and wfi waits on stdin too.
"""

from __future__ import annotations

import os
import select


class StdinFeed:
    """Moves bytes from a file descriptor into a device with `push_input(bytes)`."""

    FIFO = 16  # Bytes handed over at a time, as a 16550's receive FIFO holds

    def __init__(self, device, fd: int = 0) -> None:
        self.device = device
        self.fd = fd
        self.eof = False
        self.pending = b""

    def _feed(self) -> None:
        # Input waits until the guest listens (receive interrupt enabled) and has drained what
        # it was given, so nothing typed ahead is lost while the OS boots.
        if self.pending and self.device.ier & 1 and not self.device.rx:
            self.device.push_input(self.pending[:self.FIFO])
            self.pending = self.pending[self.FIFO:]

    def poll(self, machine=None) -> None:
        self._feed()
        if not self.pending:
            self.wait(0.0)

    def wait(self, seconds: float) -> None:
        """Waits up to `seconds` for input and feeds what is there (used by wfi)."""
        if self.eof or self.pending:
            self._feed()
            return
        try:
            ready, _, _ = select.select([self.fd], [], [], seconds)
        except (OSError, ValueError):
            self.eof = True
            return
        if not ready:
            return
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return
        self.pending += data
        self._feed()

    def attach(self, machine) -> None:
        machine.pollers.append(self.poll)
        machine.waiters.append(self.wait)
