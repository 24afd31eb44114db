"""The gdb remote stub (`jit-run -s`, `--gdb PORT`, `-S`): the protocol with a tiny client, then a
session driven by Debian's gdb-multiarch."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from elftools.elf.elffile import ELFFile

from tests.conftest import ROOT

# Steps over a taken branch, an ecall (to the handler), mret (back to mepc) and a faulting load
# (to the handler again); then spins until gdb writes `flag`.
PROTO = r"""
  la t0, handler
  csrw mtvec, t0
  li a0, 0x1234
  .globl bp1
bp1:
  addi a0, a0, 1
  .globl step_branch
step_branch:
  beqz zero, step_ecall
  FAIL 4
  .globl step_ecall
step_ecall:
  ecall
  .globl step_load
step_load:
  ld t0, 0(zero)
  .globl spin
spin:
  la t0, flag
  ld t1, 0(t0)
  beqz t1, spin
  PASS
  .align 2
  .globl handler
handler:
  csrr t1, mepc
  addi t1, t1, 4
  csrw mepc, t1
  .globl do_mret
do_mret:
  mret
  .data
  .align 3
  .globl flag
flag: .dword 0
"""

# `work` sums a1..1 in a loop; the first call runs it 3000 times (translated, then promoted), the
# second 3 times.
SESSION = r"""
  la t0, handler
  csrw mtvec, t0
  li a1, 3000
  call work
  .globl first_done
first_done:
  mv s2, a0
  li a1, 3
  call work
  la t0, data
  ld a2, 0(t0)
  .globl do_ecall
do_ecall:
  ecall
  FAIL 2
  .globl work
work:
  li a0, 0
loop:
  add a0, a0, a1
  .globl loop_mid
loop_mid:
  addi a1, a1, -1
  bnez a1, loop
  ret
  .align 2
  .globl handler
handler:
  csrr t1, mcause
  li t2, 11
  bne t1, t2, bad
  PASS
bad: FAIL 3
  .data
  .align 3
  .globl data
data: .dword 0x1122334455667788, 0xcafef00d
"""

# S-mode under Sv39 at an alias: VA 0xC000_0000 + x maps PA 0x8000_0000 + x (and 0x8000_0000 is
# mapped to itself); breakpoints and memory accesses use the alias, and so does the exit (tohost).
SV39 = r"""
  la t0, handler
  csrw mtvec, t0
  la t0, root
  li t1, ((0x80000000 >> 12) << 10) | 0xCF
  sd t1, 16(t0)
  sd t1, 24(t0)
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  li t0, 1 << 11
  csrs mstatus, t0
  la t0, s_code
  li t1, 0x40000000
  add t0, t0, t1
  csrw mepc, t0
  mret
s_code:
  li a0, 7
  .globl s_bp
s_bp:
  addi a0, a0, 1
  li t1, 8
  bne a0, t1, bad
  PASS
  .align 2
handler:
  FAIL 2
bad: FAIL 3
  .data
  .align 12
root: .zero 4096
  .globl s_data
s_data: .dword 0x5555aaaa
"""
ALIAS = 0x4000_0000

TIMEOUT = 20


def symbols(elf: Path) -> dict[str, int]:
    with open(elf, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


def text_bytes(elf: Path, addr: int, n: int) -> bytes:
    with open(elf, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".text")
        return sec.data()[addr - sec["sh_addr"]:addr - sec["sh_addr"] + n]


@contextmanager
def mirage_stub(elf: Path, *extra: str):
    """Starts `mirage jit-run --gdb 0 -S elf`; yields (process, port). Killed if still running."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "jit-run", "--gdb", "0", "-S", *extra, str(elf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        err = b""
        deadline = time.monotonic() + TIMEOUT
        while (m := re.search(rb"gdb listening on 127\.0\.0\.1:(\d+)", err)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
                raise AssertionError(f"no listening message from mirage: {err!r}")
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"mirage exited early: {err!r}")
            err += chunk
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


class Client:
    """A minimal remote-protocol client in acknowledgment mode."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _byte(self) -> int:
        if not self.buf:
            self.buf = self.sock.recv(65536)
            assert self.buf, "stub hung up"
        b, self.buf = self.buf[0], self.buf[1:]
        return b

    def send(self, payload: str, checksum: int | None = None) -> int:
        """Sends a packet; returns the stub's acknowledgment ('+' or '-')."""
        data = payload.encode()
        cs = sum(data) & 0xFF if checksum is None else checksum
        self.sock.sendall(b"$" + data + b"#" + f"{cs:02x}".encode())
        return self._byte()

    def recv(self) -> str:
        while self._byte() != ord("$"):
            pass
        data = bytearray()
        while (b := self._byte()) != ord("#"):
            data.append(b)
        cs = int(bytes([self._byte(), self._byte()]), 16)
        assert cs == sum(data) & 0xFF, f"bad checksum on {data!r}"
        self.sock.sendall(b"+")
        return data.decode("latin-1")

    def cmd(self, payload: str) -> str:
        assert self.send(payload) == ord("+")
        return self.recv()

    def reg(self, n: int) -> int:
        return int.from_bytes(bytes.fromhex(self.cmd(f"p{n:x}")), "little")

    def close(self) -> None:
        self.sock.close()


PC, A0, MCAUSE, MTVAL, SATP, PRIV = 32, 10, 65 + 0x342, 65 + 0x343, 65 + 0x180, 4161


def test_protocol(asm):
    elf = asm(PROTO)
    sym = symbols(elf)
    with mirage_stub(elf) as (proc, port):
        c = Client(port)
        try:
            assert c.send("?", checksum=0) == ord("-")  # Bad checksum: negative acknowledgment
            assert c.cmd("?").startswith("T05")
            features = c.cmd("qSupported:swbreak+;hwbreak+")
            for f in ("PacketSize=", "qXfer:features:read+", "swbreak+", "hwbreak+"):
                assert f in features
            xml = c.cmd("qXfer:features:read:target.xml:0,3fff")
            assert xml[0] == "l" and "org.gnu.gdb.riscv.cpu" in xml and 'name="mcause"' in xml
            assert c.cmd("qC") == "QC1" and c.cmd("qfThreadInfo") == "m1" and c.cmd("qsThreadInfo") == "l"
            regs = bytes.fromhex(c.cmd("g"))
            assert len(regs) == 33 * 8
            assert int.from_bytes(regs[32 * 8:], "little") == 0x8000_0000
            assert bytes.fromhex(c.cmd("m80000000,8")) == text_bytes(elf, 0x8000_0000, 8)
            assert c.cmd("m0,4") == "E01"  # Nothing there

            # A breakpoint, continue, a step, and the breakpoint removed again.
            assert c.cmd(f"Z0,{sym['bp1']:x},2") == "OK"
            stop = c.cmd("c")
            assert stop.startswith("T05") and "swbreak" in stop
            assert c.reg(PC) == sym["bp1"]
            assert c.reg(A0) == 0x1234  # Stopped before the instruction ran
            assert c.cmd("s").startswith("T05")
            assert c.reg(PC) == sym["step_branch"] and c.reg(A0) == 0x1235
            assert c.cmd(f"z0,{sym['bp1']:x},2") == "OK"

            # Steps over a branch, an ecall (stops at the handler), mret, a faulting load.
            c.cmd("s")
            assert c.reg(PC) == sym["step_ecall"]
            c.cmd("vCont;s:1")
            assert c.reg(PC) == sym["handler"] and c.reg(MCAUSE) == 11  # ecall from M, as the firmware sees it
            for _ in range(3):
                c.cmd("s")
            assert c.reg(PC) == sym["do_mret"]
            c.cmd("s")
            assert c.reg(PC) == sym["step_load"]
            c.cmd("s")
            assert c.reg(PC) == sym["handler"] and c.reg(MCAUSE) == 5 and c.reg(MTVAL) == 0
            for _ in range(4):
                c.cmd("s")
            assert c.reg(PC) == sym["spin"]

            # A hardware breakpoint where the guest stands: continuing leaves it and stops there
            # on the next pass through the (translated) loop.
            assert c.cmd(f"Z1,{sym['spin']:x},4") == "OK"
            stop = c.cmd("vCont;c")
            assert stop.startswith("T05") and "hwbreak" in stop and c.reg(PC) == sym["spin"]
            assert c.cmd(f"z1,{sym['spin']:x},4") == "OK"

            # Ctrl-C interrupts the spinning guest; writing the flag lets it finish.
            assert c.send("c") == ord("+")
            time.sleep(0.3)
            c.sock.sendall(b"\x03")
            assert c.recv().startswith("T02")
            assert c.cmd(f"M{sym['flag']:x},8:0100000000000000") == "OK"
            assert c.cmd(f"m{sym['flag']:x},8") == "0100000000000000"
            assert c.cmd("c") == "W00"
        finally:
            c.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_sv39_breakpoint_and_memory(asm):
    """A breakpoint at an S-mode virtual address (set while still in M-mode, where that address
    means nothing), memory read through the S-mode translation."""
    elf = asm(SV39)
    sym = symbols(elf)
    with mirage_stub(elf) as (proc, port):
        c = Client(port)
        try:
            va = sym["s_bp"] + ALIAS
            assert c.cmd(f"Z0,{va:x},4") == "OK"
            assert c.cmd("c").startswith("T05")
            assert c.reg(PC) == va and c.reg(PRIV) == 1 and c.reg(A0) == 7
            assert c.reg(SATP) >> 60 == 8
            assert c.cmd(f"m{sym['s_data'] + ALIAS:x},4") == "aaaa5555"
            assert c.cmd("s").startswith("T05")
            assert c.reg(PC) == va + 2 or c.reg(PC) == va + 4
            assert c.reg(A0) == 8
            assert c.cmd(f"z0,{va:x},4") == "OK"
            assert c.cmd("c") == "W00"
        finally:
            c.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_kill(asm):
    with mirage_stub(asm(PROTO)) as (proc, port):
        c = Client(port)
        try:
            assert c.send("k") == ord("+")
        finally:
            c.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_gdb_multiarch_session(asm, gdb_multiarch):
    elf = asm(SESSION)
    sym = symbols(elf)
    first = text_bytes(elf, sym["loop_mid"], 1)[0]
    step_len = 4 if first & 3 == 3 else 2
    commands = [
        "set architecture riscv:rv64", "target remote :{port}",
        "break *first_done", "continue", "p $a0", "info registers pc",
        # loop_mid is inside the loop block, translated (and promoted) by the first call.
        "break *loop_mid", "continue", "p $a1", "continue", "p $a1", "delete",
        "x/2gx &data",
        "p/x $pc", "stepi", "p/x $pc",
        "break *handler", "continue", "p $mcause", "p/x $mepc", "p $priv",
        "continue",
    ]
    with mirage_stub(elf) as (proc, port):
        args = [gdb_multiarch, "-nx", "-batch"]
        for cmd in commands:
            args += ["-ex", cmd.format(port=port)]
        r = subprocess.run([*args, str(elf)], capture_output=True, text=True, timeout=60)
        out = r.stdout
        assert proc.wait(timeout=TIMEOUT) == 0, out + r.stderr
    values = re.findall(r"^\$\d+ = (.*)$", out, re.M)
    assert values[:3] == [str(3000 * 3001 // 2), "3", "2"], out
    assert re.search(rf"^pc\s+{sym['first_done']:#x}\b", out, re.M), out
    assert "0x1122334455667788\t0x00000000cafef00d" in out, out
    assert int(values[3], 16) == sym["loop_mid"] and int(values[4], 16) == sym["loop_mid"] + step_len, out
    assert values[5] == "11" and int(values[6], 16) == sym["do_ecall"], out
    assert values[7] in ("3", "prv:3 [Machine]"), out
    assert "exited normally" in out, out
