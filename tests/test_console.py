"""stdin feeding the guest UART when it is not a terminal."""

from __future__ import annotations

import os
from collections import deque

from runtime.devices.uart import Uart16550
from runtime.frontends.console import StdinFeed


def test_input_waits_for_the_guest_and_arrives_in_fifo_chunks():
    r, w = os.pipe()
    uart = Uart16550(out=open(os.devnull, "wb"))
    feed = StdinFeed(uart, r)
    os.write(w, b"x" * 20 + b"\n")
    feed.poll()
    assert not uart.rx  # Receive interrupt not enabled yet: nothing is handed over (or lost)
    uart.write(1, 1, 1)  # IER.RDI
    feed.poll()
    assert bytes(uart.rx) == b"x" * 16
    feed.poll()
    assert len(uart.rx) == 16  # Not drained: no more yet
    got = bytes([uart.read(0, 1) for _ in range(16)])
    assert got == b"x" * 16
    feed.poll()
    assert bytes(uart.rx) == b"xxxx\n"
    os.close(w)
    uart.rx = deque()
    feed.poll()
    feed.poll()
    assert feed.eof and not uart.rx
    os.close(r)
