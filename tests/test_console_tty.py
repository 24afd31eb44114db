"""The interactive console: `mirage jit-run` on a terminal (a pseudo-terminal here), raw mode and
QEMU's Ctrl-A escapes."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from tests.conftest import ROOT

# The guests print on the NS16550A at 0x10000000 and poll LSR; IER.RDI tells Mirage's console
# they take input (no interrupt reaches them: the PLIC and mie are left disabled).
UART_LIB = r"""
putc:                     # a0: the byte
  li t0, 0x10000000
1: lbu t1, 5(t0)
  andi t1, t1, 0x20       # LSR.THRE
  beqz t1, 1b
  sb a0, 0(t0)
  ret
puts:                     # a0: a NUL-terminated string
  mv s1, ra
  mv s2, a0
1: lbu a0, 0(s2)
  beqz a0, 2f
  call putc
  addi s2, s2, 1
  j 1b
2: mv ra, s1
  ret
ready:
  li t0, 0x10000000
  li t1, 1
  sb t1, 1(t0)            # IER.RDI
  la a0, msg_ready
  j puts
  .section .rodata
msg_ready: .string "ready\n"
msg_bye: .string "bye\n"
  .text
"""

# Echoes each received byte as [b] until it gets 'q', then says bye and passes.
ECHO = r"""
  call ready
loop:
  li t0, 0x10000000
1: lbu t1, 5(t0)
  andi t1, t1, 1          # LSR.DR
  beqz t1, 1b
  lbu s3, 0(t0)
  li t1, 'q'
  beq s3, t1, done
  li a0, '['
  call putc
  mv a0, s3
  call putc
  li a0, ']'
  call putc
  j loop
done:
  la a0, msg_bye
  call puts
  PASS
""" + UART_LIB

# Says it is ready, then sleeps in wfi with no interrupt enabled.
WFI = r"""
  call ready
1: wfi
  j 1b
""" + UART_LIB

# Counts the line-status reads until the first byte arrives (s4), then echoes as ECHO does. Input
# typed before the run must arrive within a few reads: Mirage polls stdin when the guest reads the
# line status (at most once a millisecond), not only once a slice (4M instructions, a million reads
# of this loop). Fails (status 3) past 10,000 reads.
ECHO_FIRST = r"""
  call ready
  li s4, 0
  li t0, 0x10000000
1: addi s4, s4, 1
  lbu t1, 5(t0)
  andi t1, t1, 1          # LSR.DR
  beqz t1, 1b
  li t1, 10000
  bgeu s4, t1, slow
  j loop
slow: FAIL 1
""" + ECHO.replace("  call ready\n", "", 1)

# Spins 100,000 times (well past the optimizing tier's threshold), says it is ready, then spins
# on; it never enables IER.RDI, so Mirage holds input back from it.
BUSY = r"""
  li s4, 100000
1: addi s4, s4, -1
  bnez s4, 1b
  la a0, msg_ready
  call puts
1: addi s4, s4, 1
  j 1b
""" + UART_LIB


class Tty:
    """`mirage jit-run` with stdin and stdout on a pseudo-terminal, stderr on a pipe."""

    def __init__(self, elf, *args: str, typed_ahead: bytes = b"") -> None:
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        # Typed before Mirage runs: the terminal echoes it (it is not raw yet) and holds it
        os.write(self.master, typed_ahead)
        self.cmd = [sys.executable, "-m", "runtime", "jit-run", str(elf), *args]
        self.proc = subprocess.Popen(self.cmd, stdin=self.slave, stdout=self.slave, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                     start_new_session=True, preexec_fn=self._controlling_terminal)
        self.out = b""

    @staticmethod
    def _controlling_terminal() -> None:
        # In the child's new session: the pty becomes its terminal, so Ctrl-C would signal it.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def expect(self, tail: bytes, timeout: float = 60) -> bytes:
        """Reads the terminal until its output ends with `tail`; returns all of it."""
        deadline = time.monotonic() + timeout
        while not self.out.endswith(tail):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                raise AssertionError(f"expected {tail!r}, got {self.out!r}; ran: {' '.join(self.cmd)}")
            if select.select([self.master], [], [], min(left, 0.1))[0]:
                self.out += os.read(self.master, 4096)
        return self.out

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Waits for Mirage to exit; returns its status and stderr."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while select.select([self.master], [], [], 0)[0]:
            self.out += os.read(self.master, 4096)
        return self.proc.returncode, err.decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def tty(asm):
    runs = []

    def start(source: str, *args: str, typed_ahead: bytes = b"") -> Tty:
        t = Tty(asm(source), *args, typed_ahead=typed_ahead)
        runs.append(t)
        return t

    yield start
    for t in runs:
        t.close()


def test_typed_bytes_reach_the_guest_and_its_output_comes_back(tty):
    # "h" waits in the terminal until Mirage reads it; the guest counts its line-status reads until
    # it arrives (ECHO_FIRST): polled at those reads, not only between slices.
    t = tty(ECHO_FIRST, typed_ahead=b"h")
    t.expect(b"ready\r\n[h]")  # The terminal turns the guest's "\n" into "\r\n" (OPOST kept)
    attrs = termios.tcgetattr(t.slave)
    assert not attrs[3] & (termios.ECHO | termios.ICANON | termios.ISIG)  # Raw for the run
    t.type(b"i\r")
    t.type(b"\x03q")  # Ctrl-C goes to the guest, as with QEMU's -nographic
    t.expect(b"bye\r\n")
    status, err = t.finish()
    # The first "h" is the terminal's echo before Mirage made it raw.
    assert (status, t.out) == (0, b"hready\r\n[h][i][\r][\x03]bye\r\n"), err
    assert termios.tcgetattr(t.slave) == t.before


def test_ctrl_a_x_quits_from_wfi_and_restores_the_terminal(tty, tmp_path):
    stats = tmp_path / "stats.json"
    t = tty(WFI, "--stats", str(stats))
    t.expect(b"ready\r\n")
    t.type(b"\x01x")
    status, err = t.finish()
    assert status == 0, err
    assert err == "mirage: terminated by Ctrl-A x\n"
    assert termios.tcgetattr(t.slave) == t.before
    assert stats.stat().st_size > 0  # Stopped through the run loop's exit path


def test_ctrl_a_ctrl_a_sends_one_ctrl_a_and_unknown_escapes_are_dropped(tty):
    t = tty(ECHO)
    t.expect(b"ready\r\n")
    t.type(b"\x01\x01")
    t.expect(b"[\x01]")
    t.type(b"\x01z")  # Dropped, both bytes, as QEMU does
    t.type(b"\x01h")  # Help, on stderr
    t.type(b"q")
    t.expect(b"bye\r\n")
    status, err = t.finish()
    assert (status, t.out) == (0, b"ready\r\n[\x01]bye\r\n"), err
    assert "C-a x    exit Mirage" in err


def test_ctrl_a_x_quits_a_busy_guest_that_reads_no_input(tty):
    t = tty(BUSY)
    t.expect(b"ready\r\n")
    t.type(b"abc")  # Held back: the guest does not listen
    t.type(b"\x01x")
    status, err = t.finish()
    assert (status, err) == (0, "mirage: terminated by Ctrl-A x\n")
    assert termios.tcgetattr(t.slave) == t.before


def test_sigterm_restores_the_terminal(tty):
    t = tty(BUSY)
    t.expect(b"ready\r\n")
    t.proc.send_signal(signal.SIGTERM)
    status, _ = t.finish()
    assert status == -signal.SIGTERM
    assert termios.tcgetattr(t.slave) == t.before
