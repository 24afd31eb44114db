"""A GDB remote serial protocol stub (`mirage jit-run -s`, `--gdb PORT`, `-S`), as QEMU's.

The stub never blocks a running guest: it is one of the machine's pollers, so the run loop hands
it control between blocks (every slice of guest instructions and on every return to Python). It
then accepts a connection, notices Ctrl-C, or takes over at a breakpoint. While the guest is
stopped the stub serves packets synchronously until gdb resumes it.

Breakpoints work with the translator as in QEMU: inserting or removing one drops the translations
that cover its address (runtime/core/tcache.py `set_breakpoint`), block formation ends before it
(translator/block.py `scan`), and a block starting at it is a debug-stop callout
(`abi.SYS_DEBUG`, handled by Machine._sys) that stops before the instruction runs. Chaining and
the jump cache stay on everywhere else. Single-step and resuming from a breakpoint execute one
instruction through `Machine.step_insn` (a one-instruction block translated under
`abi.FLAG_STEP`, breakpoints ignored).
"""

from __future__ import annotations

import select
import socket
import sys
import time
from typing import TextIO

from runtime.core.hart import GuestExit, Hart, Trap
from runtime.core.machine import Machine
from translator import csrs as C

MASK64 = (1 << 64) - 1
PACKET_SIZE = 0x4000
POLL_INTERVAL = 0.002  # Seconds between socket checks while the guest runs
SIGINT, SIGTRAP = 2, 5

# Remote register numbers (those of QEMU and of gdb's riscv-tdep.h).
PC_REG = 32
FP_REG = 33
CSR_REG = 65  # CSR n is register 65 + n
PRIV_REG = 4161
XNAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", *(f"a{i}" for i in range(8)),
          *(f"s{i}" for i in range(2, 12)), "t3", "t4", "t5", "t6"]
FNAMES = [*(f"ft{i}" for i in range(8)), "fs0", "fs1", *(f"fa{i}" for i in range(8)),
          *(f"fs{i}" for i in range(2, 12)), *(f"ft{i}" for i in range(8, 12))]
FP_CSRS = {"fflags": 0x001, "frm": 0x002, "fcsr": 0x003}
CSRS = {
    "cycle": 0xC00, "time": 0xC01, "instret": 0xC02,
    "sstatus": 0x100, "sie": 0x104, "stvec": 0x105, "scounteren": 0x106, "senvcfg": 0x10A,
    "sscratch": 0x140, "sepc": 0x141, "scause": 0x142, "stval": 0x143, "sip": 0x144, "satp": 0x180,
    "mstatus": 0x300, "misa": 0x301, "medeleg": 0x302, "mideleg": 0x303, "mie": 0x304, "mtvec": 0x305,
    "mcounteren": 0x306, "menvcfg": 0x30A, "mscratch": 0x340, "mepc": 0x341, "mcause": 0x342,
    "mtval": 0x343, "mip": 0x344, "pmpcfg0": 0x3A0, "pmpcfg2": 0x3A2,
    **{f"pmpaddr{i}": 0x3B0 + i for i in range(16)},
    "mcycle": 0xB00, "minstret": 0xB02,
    "mvendorid": 0xF11, "marchid": 0xF12, "mimpid": 0xF13, "mhartid": 0xF14,
}
CSR_NUMS = set(CSRS.values()) | set(FP_CSRS.values())


def target_xml() -> str:
    """The riscv64 target description (features org.gnu.gdb.riscv.cpu, .fpu, .csr, .virtual)."""
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', '<target version="1.0">',
             "<architecture>riscv:rv64</architecture>", '<feature name="org.gnu.gdb.riscv.cpu">']
    for i, name in enumerate(XNAMES):
        kind = "data_ptr" if name in ("sp", "fp") else "code_ptr" if name == "ra" else "int"
        lines.append(f'<reg name="{name}" bitsize="64" type="{kind}" regnum="{i}"/>')
    lines += [f'<reg name="pc" bitsize="64" type="code_ptr" regnum="{PC_REG}"/>', "</feature>",
              '<feature name="org.gnu.gdb.riscv.fpu">',
              '<union id="riscv_double"><field name="float" type="ieee_single"/>'
              '<field name="double" type="ieee_double"/></union>']
    for i, name in enumerate(FNAMES):
        lines.append(f'<reg name="{name}" bitsize="64" type="riscv_double" regnum="{FP_REG + i}"/>')
    for name, num in FP_CSRS.items():
        lines.append(f'<reg name="{name}" bitsize="32" type="int" regnum="{CSR_REG + num}" group="float"/>')
    lines += ["</feature>", '<feature name="org.gnu.gdb.riscv.csr">']
    for name, num in CSRS.items():
        lines.append(f'<reg name="{name}" bitsize="64" type="int" regnum="{CSR_REG + num}" group="csr"/>')
    lines += ["</feature>", '<feature name="org.gnu.gdb.riscv.virtual">',
              f'<reg name="priv" bitsize="64" type="int" regnum="{PRIV_REG}"/>', "</feature>", "</target>"]
    return "\n".join(lines) + "\n"


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def frame(data: bytes) -> bytes:
    """`$data#cs` (data already escaped)."""
    return b"$" + data + b"#" + f"{checksum(data):02x}".encode()


def escape(data: bytes) -> bytes:
    """Binary escaping of replies: '#', '$', '}' and '*' become '}' and the byte xor 0x20."""
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        out.append(next(it, 0x20) ^ 0x20 if b == 0x7D else b)
    return bytes(out)


def _le(value: int, size: int = 8) -> str:
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()


class _Resume(Exception):  # noqa: N818 (control flow)
    """A command resumed the guest: leave the serve loop."""


class GdbStub:
    """Serves one gdb at a time on a TCP port; stops and resumes `machine`'s first hart."""

    def __init__(self, machine: Machine, port: int = 1234, host: str = "127.0.0.1",
                 log: TextIO | None = None) -> None:
        self.m = machine
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.inbuf = bytearray()
        self.no_ack = False
        self.last_sent = b""
        self.hart = machine.harts[0]  # Thread of register and memory accesses (Hg)
        self.stop_reply = f"T{SIGTRAP:02x}thread:1;"
        self.running = False  # gdb waits for a stop reply
        self.bps: dict[int, set[int]] = {}  # Address -> Z types (0 software, 1 hardware)
        self._next_check = 0.0
        self._xml = target_xml().encode()
        machine.pollers.append(self._poll)
        out = log or sys.stderr
        out.write(f"mirage: gdb listening on {host}:{self.port}\n")
        out.flush()

    # Entry points
    def wait_and_stop(self) -> None:
        """-S: waits for gdb and serves it before the first instruction runs."""
        self._accept(block=True)
        self._stop(self.m.harts[0], SIGTRAP)

    def finish(self, result: GuestExit | None) -> None:
        """The guest stopped the machine: tell a waiting gdb (W: exited) and close."""
        if self.conn is not None and self.running and result is not None:
            self._send_exit(result.code)
        self._close_client()
        self.listener.close()

    # The poller: runs between blocks while the guest runs
    def _poll(self, machine: Machine) -> None:
        hart = machine.debug_stop
        if hart is not None:
            machine.debug_stop = None
            if self.conn is not None:
                kinds = self.bps.get(hart.pc, set())
                self._stop(hart, SIGTRAP, "swbreak:;" if 0 in kinds or not kinds else "hwbreak:;")
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + POLL_INTERVAL
        if self.conn is None:
            if self._accept(block=False):
                self._stop(machine.harts[0], SIGTRAP)  # Attaching stops the guest, as in QEMU
            return
        if not select.select([self.conn], [], [], 0)[0]:
            return
        if not self._fill():
            self._close_client()  # gdb went away: the guest goes on
            return
        i = self.inbuf.find(b"\x03")
        if i >= 0:
            del self.inbuf[:i + 1]
            self._stop(machine.harts[0], SIGINT)

    # Connection
    def _accept(self, block: bool) -> bool:
        if not block and not select.select([self.listener], [], [], 0)[0]:
            return False
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self.inbuf.clear()
        self.no_ack = False
        self.running = False
        return True

    def _close_client(self) -> None:
        """Disconnected or detached: breakpoints go away and the guest runs freely."""
        for addr in list(self.bps):
            self.bps.pop(addr)
            self.m.tcache.set_breakpoint(addr, False, self._phys(self.hart, addr), self.m.harts)
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None
        self.running = False

    def _fill(self) -> bool:
        try:
            data = self.conn.recv(65536) if self.conn is not None else b""
        except OSError:
            data = b""
        self.inbuf += data
        return bool(data)

    def _raw(self, data: bytes) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(data)
        except OSError:
            self._close_client()

    def _send(self, reply: str | bytes, binary: bool = False) -> None:
        data = reply.encode("latin-1") if isinstance(reply, str) else reply
        self.last_sent = frame(escape(data) if binary else data)
        self._raw(self.last_sent)

    def _send_exit(self, code: int) -> None:
        """W: the process exited. Then half-close and let gdb hang up first (so the reply is not
        lost to a reset)."""
        self._send(f"W{code & 0xFF:02x}")
        self.running = False
        conn = self.conn
        if conn is None:
            return
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if select.select([conn], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    if not conn.recv(65536):
                        break
        except OSError:
            pass
        self.conn = None
        conn.close()

    def _read_packet(self) -> bytes | None:
        """The next packet's payload (b"\\x03" for an interrupt); None when gdb hung up."""
        buf = self.inbuf
        while True:
            while buf and buf[0] != 0x24:  # Acks and noise before '$'
                c = buf.pop(0)
                if c == 0x03:
                    return b"\x03"
                if c == 0x2D and self.last_sent:  # '-': resend
                    self._raw(self.last_sent)
            end = buf.find(b"#")
            if buf and 0 <= end and len(buf) >= end + 3:
                body = bytes(buf[1:end])
                cs = bytes(buf[end + 1:end + 3])
                del buf[:end + 3]
                try:
                    ok = int(cs, 16) == checksum(body)
                except ValueError:
                    ok = False
                if not self.no_ack:
                    self._raw(b"+" if ok else b"-")
                if ok:
                    return unescape(body)
                continue
            if not self._fill():
                return None

    # Stopped: serve packets until gdb resumes the guest
    def _stop(self, hart: Hart, signal: int, why: str = "") -> None:
        self.hart = hart
        self.stop_reply = f"T{signal:02x}{why}thread:{hart.id + 1:x};"
        if self.running:
            self._send(self.stop_reply)
            self.running = False
        while self.conn is not None and self.m.halted is None:
            pkt = self._read_packet()
            if pkt is None:
                self._close_client()
                return
            if pkt == b"\x03":
                continue  # Already stopped
            try:
                reply = self._handle(pkt.decode("latin-1"))
            except _Resume:
                return
            except (ValueError, IndexError):
                reply = "E01"  # A malformed packet
            if reply is not None:
                self._send(reply)

    def _handle(self, p: str) -> str | None:
        cmd = p[:1]
        if p.startswith("qSupported"):
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+;"
                    "QStartNoAckMode+;vContSupported+")
        if p == "QStartNoAckMode":
            self._send("OK")
            self.no_ack = True
            return None
        if p.startswith("qXfer:features:read:"):
            return self._xfer(p[len("qXfer:features:read:"):])
        if p == "qAttached" or p.startswith("qAttached:"):
            return "1"
        if p == "qC":
            return f"QC{self.hart.id + 1:x}"
        if p == "qfThreadInfo":
            return "m" + ",".join(f"{h.id + 1:x}" for h in self.m.harts)
        if p == "qsThreadInfo":
            return "l"
        if p.startswith("qThreadExtraInfo,"):
            h = self._thread(p.split(",", 1)[1])
            return f"hart {h.id if h else '?'}".encode().hex()
        if p.startswith("qSymbol"):
            return "OK"
        if p == "vCont?":
            return "vCont;c;C;s;S"
        if p.startswith("vCont;"):
            return self._vcont(p)
        if cmd == "?":
            return self.stop_reply
        if cmd == "g":
            h = self.hart
            return "".join(_le(h.get_x(i)) for i in range(32)) + _le(h.pc)
        if cmd == "G":
            return self._write_g(p[1:])
        if cmd == "p":
            v = self._read_reg(int(p[1:], 16))
            return "E01" if v is None else _le(*v)
        if cmd == "P":
            reg, _, val = p[1:].partition("=")
            return "OK" if self._write_reg(int(reg, 16), int.from_bytes(bytes.fromhex(val), "little")) else "E01"
        if cmd == "m":
            addr, _, n = p[1:].partition(",")
            data = self._read_mem(int(addr, 16), min(int(n, 16), PACKET_SIZE // 2 - 16))
            return data.hex() if data else "E01"
        if cmd == "M":
            head, _, hexdata = p[1:].partition(":")
            return self._write_mem(int(head.split(",")[0], 16), bytes.fromhex(hexdata))
        if cmd == "X":
            head, _, data = p[1:].partition(":")
            return self._write_mem(int(head.split(",")[0], 16), data.encode("latin-1"))
        if cmd in "Zz" and p[1:2] in ("0", "1"):
            kind, addr, _ = (p[1:].split(";")[0].split(",") + ["", ""])[:3]
            return self._breakpoint(int(addr, 16), int(kind), cmd == "Z")
        if cmd in ("c", "C"):
            self._set_pc_arg(p[1:], signal=cmd == "C")
            self._continue()
        if cmd in ("s", "S"):
            self._set_pc_arg(p[1:], signal=cmd == "S")
            return self._step()
        if cmd == "H":
            h = self._thread(p[2:])
            if h is not None and p[1:2] == "g":
                self.hart = h
            return "OK"
        if cmd == "T":
            return "OK" if self._thread(p[1:]) is not None else "E01"
        if cmd == "k":
            self.m.halted = GuestExit(0, "killed by gdb")
            self._close_client()
            raise _Resume
        if cmd == "D":
            self._send("OK")
            self._close_client()
            raise _Resume
        return ""

    def _thread(self, tid: str) -> Hart | None:
        try:
            n = int(tid, 16)
        except ValueError:
            return None
        if n in (0, -1):
            return self.hart
        return self.m.harts[n - 1] if 0 < n <= len(self.m.harts) else None

    def _set_pc_arg(self, arg: str, signal: bool) -> None:
        if signal:
            arg = arg.partition(";")[2]  # C sig;addr: the signal is not delivered
        if arg:
            self.hart.pc = int(arg, 16)

    # Execution control
    def _step(self) -> str | None:
        """One instruction; a trap it raises stops at the handler."""
        self.m.step_insn(self.hart)
        if self.m.halted is not None:
            self._send_exit(self.m.halted.code)
            raise _Resume
        self.stop_reply = f"T{SIGTRAP:02x}thread:{self.hart.id + 1:x};"
        return self.stop_reply

    def _continue(self) -> None:
        if self.hart.pc in self.bps:
            self.m.step_insn(self.hart)  # Off the breakpoint first, or it would stop at once
            if self.m.halted is not None:
                self._send_exit(self.m.halted.code)
                raise _Resume
        self.running = True
        raise _Resume

    def _vcont(self, p: str) -> str | None:
        for action in p.split(";")[1:]:
            act, _, tid = action.partition(":")
            if tid and tid != "-1" and self._thread(tid) is not self.hart:
                continue
            if act[:1] in ("s", "S"):
                return self._step()
            if act[:1] in ("c", "C"):
                self._continue()
        return "E01"

    def _breakpoint(self, addr: int, kind: int, insert: bool) -> str:
        kinds = self.bps.get(addr, set())
        before = bool(kinds)
        if insert:
            kinds.add(kind)
            self.bps[addr] = kinds
        else:
            kinds.discard(kind)
            if not kinds:
                self.bps.pop(addr, None)
        if before != bool(kinds):
            self.m.tcache.set_breakpoint(addr, bool(kinds), self._phys(self.hart, addr), self.m.harts)
        return "OK"

    # Registers
    def _read_reg(self, n: int) -> tuple[int, int] | None:
        """(value, size in bytes) of remote register n."""
        h = self.hart
        s = h.s
        if n < 32:
            return h.get_x(n), 8
        if n == PC_REG:
            return h.pc, 8
        if FP_REG <= n < FP_REG + 32:
            return s.f[n - FP_REG], 8
        if n == PRIV_REG:
            return h.priv, 8
        csr = n - CSR_REG
        if csr == 0x001:
            return s.fflags, 4
        if csr == 0x002:
            return s.frm, 4
        if csr == 0x003:
            return s.fflags | (s.frm << 5), 4
        if csr in CSR_NUMS:
            try:
                return self._csr(csr, None), 8
            except Trap:
                return 0, 8
        return None

    def _write_reg(self, n: int, v: int) -> bool:
        h = self.hart
        s = h.s
        if n < 32:
            h.set_x(n, v)
        elif n == PC_REG:
            h.pc = v
        elif FP_REG <= n < FP_REG + 32:
            s.f[n - FP_REG] = v & MASK64
        elif n == CSR_REG + 0x001:
            s.fflags = v & 0x1F
        elif n == CSR_REG + 0x002:
            s.frm = v & 7
        elif n == CSR_REG + 0x003:
            s.fflags, s.frm = v & 0x1F, (v >> 5) & 7
        elif n - CSR_REG in CSR_NUMS:
            try:
                self._csr(n - CSR_REG, v)
            except Trap:
                return False
        else:
            return False
        return True

    def _write_g(self, hexdata: str) -> str:
        data = bytes.fromhex(hexdata)
        for i in range(min(33, len(data) // 8)):
            self._write_reg(i, int.from_bytes(data[8 * i:8 * i + 8], "little"))
        return "OK"

    def _csr(self, num: int, write: int | None) -> int:
        """Reads (or writes) a CSR as the firmware sees it: M-level CSRs through the monitor's rules,
        S-level ones through the machine's."""
        from runtime.core import system

        mon = self.m.monitor
        h = self.hart
        if hasattr(mon, "ctx"):
            from vfm import csr as vcsr

            if write is None:
                return vcsr.read_write(mon, h, num, 0, system.CSR_READ, 0)
            vcsr.read_write(mon, h, num, 0, system.CSR_WRITE, write & MASK64)
            return 0
        rule = system.S_CSRS.get(num)
        if rule is None:
            return 0
        saved = h.priv
        h.priv = C.PRV_S
        try:
            ctx = system.CsrContext(self.m, h, 0)
            if write is None:
                return rule[0](ctx)
            if rule[1] is not None:
                rule[1](ctx, write & MASK64)
            return 0
        finally:
            h.priv = saved

    # Memory: virtual addresses through the hart's current translation
    def _phys(self, hart: Hart, vaddr: int) -> int | None:
        """Physical address of vaddr for the hart's privilege, without side effects (no A/D
        updates, permissions ignored, as QEMU's debug accesses); None if unmapped."""
        vaddr &= MASK64
        if hart.priv == C.PRV_M:
            return vaddr
        try:
            return self.m.mmu.walk(hart, vaddr, "r", hart.priv, True, probe=True)
        except Trap:
            return None

    def _ram_span(self, vaddr: int, n: int) -> tuple[int, int] | None:
        """(paddr, length) of the first piece of [vaddr, vaddr+n) within one page, if it is RAM the
        guest may have (the monitor's own memory is not shown)."""
        length = min(n, 0x1000 - (vaddr & 0xFFF))
        paddr = self._phys(self.hart, vaddr)
        if paddr is None or not self.m.mem.is_ram(paddr, length):
            return None
        for base, size in getattr(self.m.monitor, "reserved", ()):
            if paddr < base + size and base < paddr + length:
                return None
        return paddr, length

    def _read_mem(self, vaddr: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            span = self._ram_span(vaddr + len(out), n)
            if span is None:
                break
            out += self.m.mem.read_bytes(*span)
            n -= span[1]
        return bytes(out)

    def _write_mem(self, vaddr: int, data: bytes) -> str:
        done = 0
        while done < len(data):
            span = self._ram_span(vaddr + done, len(data) - done)
            if span is None:
                return "E01"
            paddr, length = span
            self.m.mem.load_bytes(paddr, data[done:done + length])
            self.m.tcache.invalidate_range(paddr, length, "gdb-write", self.m.harts)
            done += length
        return "OK"

    def _xfer(self, args: str) -> str | None:
        annex, _, span = args.partition(":")
        if annex != "target.xml":
            return "E00"
        off, _, length = span.partition(",")
        o, n = int(off, 16), int(length, 16)
        chunk = self._xml[o:o + n]
        reply = (b"m" if o + n < len(self._xml) else b"l") + chunk
        self._send(reply, binary=True)
        return None
