"""Runs a generated program on qemu-system-riscv64 (QEMU 7.x, current F/D rules): a check of the
differential tests' reference model (unicorn, built on QEMU 5.0, plus harness._FpAdapter).

A stub loaded beside the program sets up the initial registers, enters the program with `jal`, and
its trap handler (reached by the final ebreak) writes the final registers and the data buffer to
the UART, whose output QEMU puts in a file; then it stops QEMU through the sifive_test device.
Everything is encoded with the generator's own encoder: no toolchain needed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile

from tests.diff.gen import DATA_ADDR, DATA_SIZE, Program, encode
from tests.diff.harness import State

QEMU = "qemu-system-riscv64"
STUB = 0x8008_0000
HANDLER = STUB + 0x1000  # 4 KiB into the stub: mtvec (direct mode) needs 4-byte alignment
STATE = STUB + 0x10000  # Initial x[32], f[32], fcsr
OUT = STUB + 0x20000  # Final x[32], f[32], fcsr, mepc, mcause
OUT_SIZE = 8 * (32 + 32 + 3)
UART = 0x1000_0000
FINISHER = 0x10_0000
T0, T1, A0, A1, A2, A3 = 5, 6, 10, 11, 12, 13


def available() -> bool:
    return shutil.which(QEMU) is not None


def _pcrel(rd: int, pc: int, target: int) -> list[int]:
    """auipc + addi putting `target` in rd, from an auipc at `pc`."""
    delta = target - pc
    hi = (delta + 0x800) >> 12
    return [encode("auipc", rd=rd, u=(hi << 12) & 0xFFFFFFFF), encode("addi", rd=rd, rs1=rd, i=delta - (hi << 12))]


def _stub(code_addr: int) -> bytes:
    c: list[int] = []
    c += _pcrel(T0, STUB, STATE)
    c += [encode("lui", rd=T1, u=0x6000), encode("csrrs", rd=0, rs1=T1, csr=0x300)]  # Sets mstatus.FS = Dirty
    c += _pcrel(T1, STUB + 4 * len(c), HANDLER)
    c.append(encode("csrrw", rd=0, rs1=T1, csr=0x305))  # Sets mtvec
    c += [encode("fld", rd=r, rs1=T0, i=256 + 8 * r) for r in range(32)]
    c += [encode("ld", rd=T1, rs1=T0, i=512), encode("csrrw", rd=0, rs1=T1, csr=3)]  # Sets fcsr
    c += [encode("ld", rd=r, rs1=T0, i=8 * r) for r in range(1, 32) if r != T0]
    c.append(encode("ld", rd=T0, rs1=T0, i=8 * T0))
    c.append(encode("jal", rd=0, j=code_addr - (STUB + 4 * len(c))))
    assert 4 * len(c) <= HANDLER - STUB
    c += [encode("addi", rd=0, rs1=0, i=0)] * ((HANDLER - STUB) // 4 - len(c))
    h: list[int] = [encode("csrrw", rd=0, rs1=T0, csr=0x340)]  # Saves t0 in mscratch
    h += _pcrel(T0, HANDLER + 4 * len(h), OUT)
    h += [encode("sd", rs1=T0, rs2=r, s=8 * r) for r in range(1, 32) if r != T0]
    h += [encode("csrrs", rd=T1, rs1=0, csr=0x340), encode("sd", rs1=T0, rs2=T1, s=8 * T0)]
    h += [encode("fsd", rs1=T0, rs2=r, s=256 + 8 * r) for r in range(32)]
    for n, csr in enumerate((3, 0x341, 0x342)):  # Saves fcsr, mepc, mcause
        h += [encode("csrrs", rd=T1, rs1=0, csr=csr), encode("sd", rs1=T0, rs2=T1, s=512 + 8 * n)]
    h.append(encode("lui", rd=A2, u=UART))
    for start, size in ((OUT, OUT_SIZE), (DATA_ADDR, DATA_SIZE)):
        h += _pcrel(A0, HANDLER + 4 * len(h), start)
        h += [encode("lui", rd=T1, u=size & ~0xFFF), encode("addi", rd=T1, rs1=T1, i=size & 0xFFF),
              encode("add", rd=A1, rs1=A0, rs2=T1)]
        h += [encode("lbu", rd=T1, rs1=A0, i=0), encode("sb", rs1=A2, rs2=T1, s=0), encode("addi", rd=A0, rs1=A0, i=1),
              encode("bne", rs1=A0, rs2=A1, b=-12)]
    h += [encode("lui", rd=A3, u=FINISHER), encode("lui", rd=T1, u=0x5000), encode("addi", rd=T1, rs1=T1, i=0x555),
          encode("sw", rs1=A3, rs2=T1, s=0), encode("jal", rd=0, j=0)]
    return b"".join(struct.pack("<I", w) for w in c + h)


def run_qemu(prog: Program, prefix: int | None = None, timeout: float = 20) -> State:
    state = b"".join(struct.pack("<Q", v & (2**64 - 1)) for v in [*prog.x, *prog.f, prog.fcsr])
    with tempfile.TemporaryDirectory() as d:
        blobs = {"code": (prog.code_addr, prog.code(prefix)), "stub": (STUB, _stub(prog.code_addr)), "state": (STATE, state),
                 "data": (DATA_ADDR, prog.data)}
        args = [QEMU, "-M", "virt", "-bios", "none", "-display", "none", "-monitor", "none",
                "-serial", f"file:{d}/serial"]
        for name, (addr, blob) in blobs.items():
            path = os.path.join(d, name)
            with open(path, "wb") as fh:
                fh.write(blob)
            args += ["-device", f"loader,file={path},addr={addr:#x},force-raw=on"]
        args += ["-device", f"loader,addr={STUB:#x},cpu-num=0"]
        subprocess.run(args, capture_output=True, timeout=timeout, check=True)
        with open(os.path.join(d, "serial"), "rb") as fh:
            out = fh.read()
    if len(out) != OUT_SIZE + DATA_SIZE:
        return State([0] * 32, [0] * 32, 0, 0, 0, f"qemu produced {len(out)} bytes", b"")
    v = struct.unpack(f"<{OUT_SIZE // 8}Q", out[:OUT_SIZE])
    x, f, fcsr, mepc, mcause = [0, *v[1:32]], list(v[32:64]), v[64], v[65], v[66]
    stop = "ebreak" if mcause == 3 else f"trap cause={mcause}"
    return State(x, f, fcsr & 0x1F, (fcsr >> 5) & 7, mepc, stop, out[OUT_SIZE:])
