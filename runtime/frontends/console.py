"""The host side of the guest console: stdin feeds the UART's receiver.

When stdin is not a terminal (a pipe or a file), its bytes are fed to the guest as they become
readable, so scripts work: `printf 'uname -a\\npoweroff -f\\n' | mirage jit-run linux-shell`.
When it is a terminal, `TtyConsole` puts it in raw mode for the run and reads QEMU's Ctrl-A
escapes (-nographic): Ctrl-A x quits, Ctrl-A h helps, Ctrl-A Ctrl-A sends a Ctrl-A.
Reading never blocks the machine: the run loop polls, and wfi waits on stdin too.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import termios
import time

from runtime.core.hart import GuestExit

ESCAPE = 0x01  # Ctrl-A, QEMU's default escape character
HELP = """\
C-a h    print this help
C-a x    exit Mirage
C-a C-a  send C-a to the guest
"""


class StdinFeed:
    """Moves bytes from a file descriptor into a device with `push_input(bytes)`."""

    FIFO = 16  # Bytes handed over at a time, as a 16550's receive FIFO holds
    POLL_READS = 16  # Line status reads in a row that show a guest polling for input (Linux: 2)
    read_ahead = False  # Read the fd even while earlier input is held back from the guest
    stop: GuestExit | None = None  # Set when input asks to stop the machine

    def __init__(self, device, fd: int = 0) -> None:
        self.device = device
        self.fd = fd
        self.eof = False
        self.pending = b""
        self.polled = False  # The guest polls the line status for input

    def _feed(self) -> bool:
        """Hands the guest the next chunk if it can take it; True if it did."""
        # Input waits until the guest listens and has drained what it was given, so nothing
        # typed ahead is lost while the OS boots. Listening: the receive interrupt is enabled, or
        # the guest has been seen polling the line status for data (OpenSBI's getchar,
        # bootloader prompts, bare-metal programs): many line status reads in a row, which a
        # driver that only transmits or initializes the UART never does.
        if self.device.lsr_streak >= self.POLL_READS:
            self.polled = True
        if self.pending and (self.device.ier & 1 or self.polled) and not self.device.rx:
            self.device.push_input(self.pending[:self.FIFO])
            self.pending = self.pending[self.FIFO:]
            return True
        return False

    def _read(self, seconds: float) -> None:
        """Waits up to `seconds` for the fd to be readable and queues what it holds."""
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
        self.pending += self.received(data)

    def received(self, data: bytes) -> bytes:
        """What of `data`, just read, goes to the guest."""
        return data

    def poll(self, machine=None) -> None:
        self._feed()
        if not self.eof and (self.read_ahead or not self.pending):
            self._read(0.0)
            self._feed()

    def wait(self, seconds: float) -> None:
        """Waits up to `seconds` for input and feeds what is there (used by wfi)."""
        if self._feed():
            return  # The receive interrupt is up: the poll after the waiters wakes the hart
        if self.eof or (self.pending and not self.read_ahead):
            time.sleep(seconds)  # Nothing to read: wfi still sleeps instead of spinning
            return
        self._read(seconds)
        self._feed()

    def attach(self, machine) -> None:
        machine.pollers.append(self.poll)
        machine.waiters.append(self.wait)
        self._poll_on_line_status()

    def _poll_on_line_status(self) -> None:
        """A guest reading the line status register is waiting for the UART: stdin is polled then
        too (at most every millisecond). The run loop polls every slice of guest instructions,
        which a loop of MMIO reads takes seconds to retire."""
        next_poll = 0.0

        def on_status_read() -> None:
            nonlocal next_poll
            if self.pending:
                self._feed()  # What was read already goes at once (no system call)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + 0.001
                self.poll()
            if self.stop is not None:
                raise self.stop  # From a callout: the block returns and the run loop stops

        self.device.on_status_read = on_status_read


class TtyConsole(StdinFeed):
    """stdin is a terminal: raw mode for the run (a context manager) and Ctrl-A escapes.

    As QEMU's stdio chardev: no echo, no line editing, no signals (Ctrl-C, Ctrl-Z and Ctrl-\\
    go to the guest), 8-bit input, CR not turned into NL. Output processing is left as it was
    (OPOST, normally with ONLCR): the terminal turns a bare-metal program's "\\n" into "\\r\\n",
    and Linux's "\\r\\n" arrives as "\\r\\r\\n", which looks the same; QEMU keeps OPOST too, and
    the UART device writes bytes untranslated. `signals=True` keeps Ctrl-C interrupting Mirage,
    for runs with a gdb stub: while gdb holds the guest stopped, nothing reads the console.
    """

    read_ahead = True  # Escapes must be seen while the guest takes no input (busy, booting)

    def __init__(self, device, fd: int = 0, signals: bool = False, out=None) -> None:
        super().__init__(device, fd)
        self.signals = signals
        self.out = out or sys.stderr  # Where the escapes' messages go
        self.machine = None
        self.escaped = False
        self.quit = False  # Ctrl-A x was typed
        self.saved: list | None = None
        self._old_handlers: dict[int, object] = {}

    # The terminal
    def __enter__(self) -> TtyConsole:
        self.raw()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def raw(self) -> None:
        """Saves the terminal's settings and switches it to raw mode until `restore`."""
        self.saved = termios.tcgetattr(self.fd)
        # Every way out restores the terminal: finally (__exit__), interpreter exit, and the
        # signals that end the process by default (restored, then re-raised).
        atexit.register(self.restore)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) != signal.SIG_IGN:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        # Back in the foreground after a stop, the shell may have reset the terminal.
        self._old_handlers[signal.SIGCONT] = signal.signal(signal.SIGCONT, lambda *_: self._apply_raw())
        self._apply_raw()

    def _apply_raw(self) -> None:
        if self.saved is None:
            return
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = self.saved
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                   | termios.IGNCR | termios.ICRNL | termios.IXON)
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
        if not self.signals:
            lflag &= ~termios.ISIG
        cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        cc = list(cc)
        cc[termios.VMIN], cc[termios.VTIME] = 1, 0
        try:
            # TCSANOW: input typed before the run is kept for the guest.
            termios.tcsetattr(self.fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])
        except termios.error:
            pass

    def restore(self) -> None:
        """Puts the terminal's settings back (idempotent)."""
        if self.saved is None:
            return
        saved, self.saved = self.saved, None
        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # The terminal is gone (hung up)
        atexit.unregister(self.restore)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame) -> None:
        old = self._old_handlers.get(signum, signal.SIG_DFL)
        self.restore()
        if callable(old):
            old(signum, frame)
        elif old == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # The default action (termination), now that it is restored

    # Input
    def attach(self, machine) -> None:
        self.machine = machine
        super().attach(machine)

    def received(self, data: bytes) -> bytes:
        """Takes Ctrl-A escapes out of `data`. As QEMU's char-mux.c: Ctrl-A Ctrl-A is one Ctrl-A,
        and Ctrl-A before a key with no meaning drops both."""
        out = bytearray()
        for b in data:
            if self.quit:
                break
            if not self.escaped:
                if b == ESCAPE:
                    self.escaped = True
                else:
                    out.append(b)
                continue
            self.escaped = False
            if b == ESCAPE:
                out.append(b)
            elif b == ord("x"):
                self._quit()
            elif b in (ord("h"), ord("?")):
                self.out.write("\n" + HELP)
                self.out.flush()
        return bytes(out)

    def _quit(self) -> None:
        # The run loop's own exit path (as --max-insns and gdb's kill): statistics are written
        # and the status is 0, as QEMU's quit.
        self.quit = True
        self.stop = GuestExit(0, "terminated by Ctrl-A x")
        if self.machine is not None and self.machine.halted is None:
            self.machine.halted = self.stop
