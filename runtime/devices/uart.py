"""NS16550A UART (qemu-virt: 0x10000000, PLIC source 10): the console."""

from __future__ import annotations

import sys
from collections import deque

from runtime.core.device import Device
from runtime.devices import write_out

# Register offsets (DLAB = 0)
RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40
IER_RDI, IER_THRI = 0x01, 0x02


class Uart16550(Device):
    role = "console"
    irq_outputs = 1  # Its interrupt line (a PLIC source on qemu-virt)

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout.buffer
        self.rx: deque[int] = deque()
        self.ier = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.dll = 0
        self.dlm = 0
        self.thr_empty_pending = False
        # fn(), called when the guest reads the line status: it is waiting on the UART, so the
        # console checks its input then (runtime/frontends/console.py); may raise to stop the machine.
        self.on_status_read = None
        # Line status reads in a row with no other register accessed between them: a driver
        # polling for received data (a transmitter waits for THRE, which is always set here, so
        # its reads are one at a time, each followed by a THR write).
        self.lsr_streak = 0

    def transmit(self, data: bytes) -> None:
        """`data` written to THR byte by byte: out to the host, and the transmitter empty again
        (its interrupt, if enabled) at once."""
        write_out(self.out, data)
        self.thr_empty_pending = True
        self._update_irq()

    def push_input(self, data: bytes) -> None:
        self.rx.extend(data)
        self._update_irq()

    def _pending(self) -> int:
        """IIR identification of the highest-priority pending interrupt (0x1 = none)."""
        if self.ier & IER_RDI and self.rx:
            return 0x4
        if self.ier & IER_THRI and self.thr_empty_pending:
            return 0x2
        return 0x1

    def _update_irq(self) -> None:
        if self.irq_line is not None:
            self.irq_line(self._pending() != 0x1)

    def read(self, offset: int, size: int) -> int:
        dlab = self.lcr & 0x80
        if offset != LSR:
            self.lsr_streak = 0
        if offset == RBR_THR:
            if dlab:
                return self.dll
            v = self.rx.popleft() if self.rx else 0
            self._update_irq()
            return v
        if offset == IER:
            return self.dlm if dlab else self.ier
        if offset == IIR_FCR:
            iid = self._pending()
            if iid == 0x2:
                self.thr_empty_pending = False
                self._update_irq()
            return 0xC0 | iid
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            self.lsr_streak += 1
            if self.on_status_read is not None:
                self.on_status_read()
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        if offset == MSR:
            return 0xB0
        if offset == SCR:
            return self.scr
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        dlab = self.lcr & 0x80
        self.lsr_streak = 0
        value &= 0xFF
        if offset == RBR_THR:
            if dlab:
                self.dll = value
                return
            self.transmit(bytes([value]))
        elif offset == IER:
            if dlab:
                self.dlm = value
            else:
                self.ier = value & 0x0F
                if self.ier & IER_THRI:
                    self.thr_empty_pending = True
                self._update_irq()
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self.mcr = value
        elif offset == SCR:
            self.scr = value
