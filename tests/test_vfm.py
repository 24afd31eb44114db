"""The virtual firmware monitor, one behaviour per test firmware (in the spirit of Miralis's suite).

Each program runs as firmware in virtual M-mode under `mirage jit-run`; most also drop into the OS
world (S or U) and come back. The checks run in the guest (`CHECK` macros numbered as in
test_insns.py) and a failing run names the check. Shared pieces: `handler` records every M-level
trap in s8 (mcause), s9 (mepc), s10 (mtval), s6 (mstatus), counts it in s11 and
- for an ecall from S/U with a7 = 0x4d (`BACK_TO_FW`) jumps to s3 in M-mode (the firmware goes on),
- for an interrupt shifts its cause into the log s5 and disables it in mie,
- else resumes at s7 if set (in the trapping mode), or after the trapping instruction.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import fail_checked_run, mirage
from tests.test_insns import _number

MACROS = r"""
  .equ CLINT_MSIP, 0x2000000
  .equ CLINT_MTIMECMP, 0x2004000
  .equ CLINT_MTIME, 0x200bff8
  .macro INSTALL_HANDLER
  lla t0, handler
  csrw mtvec, t0
  li s5, 0
  li s7, 0
  li s8, 0
  li s11, 0
  .endm
  # mret into \mode (0 = U, 1 = S) at \label; the OS comes back with BACK_TO_FW, landing at \back.
  .macro ENTER_OS mode, label, back
  lla s3, \back
  SET_MPP \mode
  lla t0, \label
  csrw mepc, t0
  mret
  .endm
  .macro BACK_TO_FW
  li a7, 0x4d
  ecall
  .endm
  .macro SET_MPP mode
  li t0, 0x1800
  csrc mstatus, t0
  li t0, \mode << 11
  csrs mstatus, t0
  .endm
  # t0 = bits \lo.. of mstatus masked with \mask
  .macro MSTATUS_FIELD reg, lo, mask
  srli t0, \reg, \lo
  andi t0, t0, \mask
  .endm
"""

HANDLER = r"""
  .align 2
handler:
  csrr s8, mcause
  csrr s9, mepc
  csrr s10, mtval
  csrr s6, mstatus
  addi s11, s11, 1
  bltz s8, 83f
  addi t0, s8, -8
  srli t0, t0, 1
  bnez t0, 81f
  li t0, 0x4d
  bne a7, t0, 81f
  jr s3
81: beqz s7, 82f
  csrw mepc, s7
  li s7, 0
  mret
82: lhu t0, 0(s9)
  andi t0, t0, 3
  li t1, 3
  addi t2, s9, 2
  bne t0, t1, 84f
  addi t2, s9, 4
84: csrw mepc, t2
  mret
83: andi t0, s8, 0xff
  slli s5, s5, 8
  or s5, s5, t0
  li t1, 1
  sll t1, t1, t0
  csrc mie, t1
  mret
"""


def run(asm, body: str, *args: str, defs: dict[str, int] | None = None, stats=None) -> dict | None:
    """Builds MACROS + body + HANDLER and runs it (256 MiB of RAM); fails naming the failed check.
    Returns the "vfm" statistics when `stats` (a path) is given."""
    equs = "".join(f"  .equ {k}, {v}\n" for k, v in (defs or {}).items())
    text, where = _number(equs + MACROS + "  INSTALL_HANDLER\n" + body + HANDLER)
    cmd = ["jit-run", "-m", "256M", "--max-insns", "50000000", *args]
    if stats is not None:
        cmd += ["--stats", str(stats)]
    r = mirage(*cmd, str(asm(text)))
    if r.returncode != 0:
        fail_checked_run(r, where)
    return json.loads(stats.read_text())["vfm"] if stats is not None else None


# ecall from the firmware: mcause 11 (M), mepc = the ecall, mtval 0, MPP = M (privileged spec 3.3.1)
ECALL = r"""
5: ecall
  lla t0, 5b
  CHECK s8, 11
  CHECK_EQ s9, t0
  CHECK s10, 0
  CHECK s11, 1
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 3
  PASS
"""


def test_ecall(asm):
    run(asm, ECALL)


# The firmware's time CSR shadows the CLINT's mtime (privileged spec 3.1.11), also after the
# firmware writes mtime.
TIME_SHADOWS_MTIME = r"""
  li t0, CLINT_MTIME
  li t1, 1 << 40
  sd t1, 0(t0)
  csrr a0, time
  sub a1, a0, t1
  li t2, 10000000
  sltu a2, a1, t2
  CHECK a2, 1
  PASS
"""


def test_firmware_time_csr_follows_mtime_writes(asm):
    run(asm, TIME_SHADOWS_MTIME)


# Every CSR instruction on every virtual M-mode CSR (privileged spec 2.1, 3.1 and Zicsr chapter 9).
P1, P2 = 0xA5A5_5A5A_F0F0_0F0F, 0x0123_4567_89AB_CDEF
M64 = (1 << 64) - 1

# name -> mask of the bits that keep what is written (WARL / WLRL fields as Mirage implements them),
# from the privileged spec 1.12, not from the code under test:
# - medeleg 0xb3ff: causes 0-9, 12, 13 and 15 delegable; 10 and 14 are reserved and "medeleg[11] is
#   read-only zero" (3.1.8: an ecall from M cannot be delegated).
# - mideleg 0x222: SSI, STI, SEI; M-level interrupts are never delegated below M (3.1.8).
# - mie 0xaaa: SSIE, MSIE, STIE, MTIE, SEIE, MEIE (3.1.9, bits 1, 3, 5, 7, 9, 11).
# - mip 0x222: SEIP, STIP and SSIP are each "writable in mip"; MEIP, MTIP, MSIP are read-only (3.1.9).
# - mcounteren 0x7: CY, TM, IR (3.1.11); mcountinhibit 0x5: CY and IR, bit 1 has no counter to stop
#   (time is the platform's, 3.1.12); menvcfg 0x1: FIOM, the only field of an implemented extension
#   (3.1.18).
PLAIN = {
    "mscratch": M64, "mepc": M64 & ~1, "mcause": M64, "mtval": M64, "mcounteren": 0x7, "mcountinhibit": 0x5,
    "menvcfg": 0x1, "medeleg": 0xB3FF, "mideleg": 0x222, "mie": 0xAAA, "mip": 0x222, "sscratch": M64,
    "sepc": M64 & ~1, "stval": M64,
    **{f"mhpmcounter{n}": 0 for n in range(3, 32)}, **{f"mhpmevent{n}": 0 for n in range(3, 32)},
}
READ_ONLY = {"mvendorid": 0, "marchid": 0, "mimpid": 0, "mhartid": 0, "mconfigptr": 0,
             **{f"hpmcounter{n}": 0 for n in range(3, 32)}}


def _all_six(csr: str, mask: int) -> str:
    """csrrw, csrrs, csrrc and their immediate forms; each reads the value the previous one left."""
    v1 = P1 & mask
    v2 = (P1 | P2) & mask
    v3 = v2 & ~P2 & mask
    return f"""
  li a0, {P1:#x}
  csrrw x0, {csr}, a0
  csrrs a1, {csr}, x0
  CHECK a1, {v1:#x}
  li a0, {P2:#x}
  csrrs a1, {csr}, a0
  CHECK a1, {v1:#x}
  csrrc a1, {csr}, a0
  CHECK a1, {v2:#x}
  csrrwi a1, {csr}, 0x15
  CHECK a1, {v3:#x}
  csrrsi a1, {csr}, 0x0a
  CHECK a1, {0x15 & mask:#x}
  csrrci a1, {csr}, 0x03
  CHECK a1, {0x1f & mask:#x}
  csrr a1, {csr}
  CHECK a1, {0x1c & mask:#x}
  csrw {csr}, x0
"""


def _read_only(csr: str, value: int | None) -> str:
    """Reads work (also csrrs/csrrc with x0 and csrrsi/csrrci with 0, which do not write); every
    form that writes raises an illegal instruction (Zicsr 9.1 and privileged spec 2.1)."""
    out = "  li s8, 0\n"
    if value is not None:
        out += f"  csrr a1, {csr}\n  CHECK a1, {value:#x}\n"
    out += f"""  csrrs a1, {csr}, x0
  csrrc a1, {csr}, x0
  csrrsi a1, {csr}, 0
  csrrci a1, {csr}, 0
  CHECK s8, 0
  li a0, 1
"""
    for insn in (f"csrrw a1, {csr}, a0", f"csrrs a1, {csr}, a0", f"csrrc a1, {csr}, a0",
                 f"csrrwi a1, {csr}, 0", f"csrrsi a1, {csr}, 1", f"csrrci a1, {csr}, 1", f"csrw {csr}, x0"):
        out += f"  li s8, 0\n  {insn}\n  CHECK s8, 2\n"
    return out


# misa (3.1.1): MXL = 2 (RV64) in bits 63:62; extensions A (bit 0), C (2), D (3), F (5), I (8),
# M (12), S (18), U (20).
MISA = 0x8000_0000_0014_112D
# mstatus (3.1.6): the writable fields SIE (1), MIE (3), SPIE (5), MPIE (7), SPP (8), MPP (12:11),
# FS (14:13), MPRV (17), SUM (18), MXR (19), TVM (20), TW (21), TSR (22), read-only UXL = SXL = 2
# (RV64, bits 33:32 and 35:34) and SD (63) set because FS is dirty.
MSTATUS_ALL = 0x8000_000A_007E_79AA

CSR_SPECIAL = rf"""
  # misa: RV64 (MXL = 2) with I, M, A, F, D, C, S, U; writes are ignored (WARL)
  csrr a0, misa
  CHECK a0, {MISA:#x}
  csrw misa, x0
  csrrs a1, misa, a0
  csrrci a1, misa, 0x1f
  csrrwi a1, misa, 0
  csrr a1, misa
  CHECK a1, {MISA:#x}
  # mstatus: MPP = 2 is reserved and keeps the old value (WARL, spec 3.1.6.1); SXL = UXL = 2
  SET_MPP 1
  csrr a1, mstatus
  li t0, 0x800
  xor a1, a1, t0
  li t0, 0x1000
  or a1, a1, t0
  csrw mstatus, a1
  csrr a1, mstatus
  MSTATUS_FIELD a1, 11, 3
  CHECK t0, 1
  li a0, 0x1800
  csrrc x0, mstatus, a0
  csrrs x0, mstatus, a0
  csrr a1, mstatus
  MSTATUS_FIELD a1, 11, 3
  CHECK t0, 3
  li a0, 0x800
  csrc mstatus, a0
  csrr a1, mstatus
  MSTATUS_FIELD a1, 11, 3
  CHECK t0, 3
  li a0, 0x1000
  csrw mstatus, a0
  csrr a1, mstatus
  MSTATUS_FIELD a1, 11, 3
  CHECK t0, 3
  srli t0, a1, 32
  andi t0, t0, 0xf
  CHECK t0, 0xa
  # every writable bit at once; unimplemented ones (UBE, SBE, MBE, XS, MPV, ...) stay 0, SD follows FS
  li a0, -1
  csrrw a1, mstatus, a0
  csrrs a1, mstatus, x0
  CHECK a1, {MSTATUS_ALL:#x}
  csrrci a1, mstatus, 0x8
  csrrsi a1, mstatus, 0
  CHECK a1, {MSTATUS_ALL & ~8:#x}
  csrrwi a1, mstatus, 0
  csrrc a1, mstatus, a0
  CHECK a1, {0xA << 32:#x}
  # mtvec: modes 2 and 3 are reserved and keep the old mode (WARL)
  lla a0, handler
  csrw mtvec, a0
  ori a1, a0, 2
  csrw mtvec, a1
  csrr a2, mtvec
  CHECK_EQ a2, a0
  ori a1, a0, 1
  csrrw a2, mtvec, a1
  CHECK_EQ a2, a0
  ori a1, a0, 3
  csrw mtvec, a1
  csrr a2, mtvec
  ori a1, a0, 1
  CHECK_EQ a2, a1
  csrrci a2, mtvec, 1
  csrr a2, mtvec
  CHECK_EQ a2, a0
  # mcycle / minstret: writable counters that go on counting; a read counts what retired before it
  csrw minstret, x0
  csrr a0, minstret
  nop
  csrr a1, minstret
  CHECK a0, 0
  CHECK a1, 2
  li a0, 100000
  csrw minstret, a0
  csrr a1, minstret
  sub a1, a1, a0
  CHECK a1, 0
  csrw mcycle, a0
  csrr a1, mcycle
  sub a1, a1, a0
  sltiu a1, a1, 4
  CHECK a1, 1
  # tselect: no triggers, so it never reads back what was written (debug spec 5.7.1)
  csrwi tselect, 0
  csrr a1, tselect
  CHECK a1, -1
  # unknown and nonexistent CSRs raise an illegal instruction inside the firmware, mtval = the bits
  li s8, 0
5: csrr a0, 0x7c0
  CHECK s8, 2
  li t0, 0x7c002573
  CHECK_EQ s10, t0
  lla t0, 5b
  CHECK_EQ s9, t0
  li s8, 0
  csrr a0, 0x3a1
  CHECK s8, 2
  li s8, 0
  csrw 0x3af, x0
  CHECK s8, 2
  li s8, 0
  csrr a0, 0x600
  CHECK s8, 2
  li s8, 0
  csrr a0, 0x31a
  CHECK s8, 2
  li s8, 0
  csrr a0, 0xfb0
  CHECK s8, 2
"""


def _csr_ops() -> str:
    body = "".join(_all_six(name, mask) for name, mask in PLAIN.items())
    body += "".join(_read_only(name, value) for name, value in READ_ONLY.items())
    body += "".join(_read_only(name, None) for name in ("cycle", "time", "instret"))
    return body + CSR_SPECIAL + "  PASS\n"


# The monitor's fast path (Monitor.fast_sys) and the general trap path must agree: tracing turns the
# fast path off.
PATHS = pytest.mark.parametrize("path", ["fast", "general"])


def _path_args(path: str, tmp_path) -> tuple[str, ...]:
    return () if path == "fast" else ("-d", "vfm", "-D", str(tmp_path / "trace.log"))


@PATHS
def test_csr_ops(asm, path, tmp_path):
    run(asm, _csr_ops(), *_path_args(path, tmp_path))


# mcountinhibit (privileged spec 3.1.12): "When the CY, IR, or HPMn bit is set, the corresponding
# counter does not increment", so minstret and mcycle stand still for the firmware and, through
# instret and cycle ("read-only shadows of mcycle, minstret", 3.1.11), for the OS. As in Spike, an
# instruction counts itself once it completes, as mcountinhibit then says: the write that sets IR
# is not counted, the one that clears it is; a write to a stopped counter holds its value.
COUNTINHIBIT = r"""
  csrwi mcounteren, 7
  csrr a0, minstret
  csrwi mcountinhibit, 4
  csrr a1, minstret
  nop
  csrr a2, minstret
  sub t0, a1, a0
  CHECK t0, 1
  CHECK_EQ a1, a2
  # mcycle goes on while only IR is set
  csrr a3, mcycle
  nop
  csrr a4, mcycle
  sub t0, a4, a3
  CHECK t0, 2
  csrwi mcountinhibit, 5
  csrr a3, mcycle
  nop
  csrr a4, mcycle
  CHECK_EQ a3, a4
  csrr a0, mcountinhibit
  CHECK a0, 5
  li t0, 1000
  csrw minstret, t0
  li t0, 2000
  csrw mcycle, t0
  nop
  csrr a1, minstret
  CHECK a1, 1000
  csrr a1, mcycle
  CHECK a1, 2000
  # The OS reads the stopped counters: world switches and its own instructions do not move them
  ENTER_OS 1, s_stopped, 1f
1: csrr a1, minstret
  CHECK a1, 1000
  # Counting again: the clearing write is the first instruction counted
  csrwi mcountinhibit, 0
  csrr a1, minstret
  csrr a2, mcycle
  CHECK a1, 1001
  CHECK a2, 2002
  csrr a0, minstret
  nop
  nop
  csrr a1, minstret
  sub t0, a1, a0
  CHECK t0, 3
  ENTER_OS 1, s_counting, 1f
1: PASS

s_stopped:
  rdinstret a0
  nop
  rdinstret a1
  CHECK a0, 1000
  CHECK a1, 1000
  rdcycle a0
  nop
  rdcycle a1
  CHECK a0, 2000
  CHECK a1, 2000
  BACK_TO_FW
s_counting:
  rdinstret a0
  nop
  rdinstret a1
  sub t0, a1, a0
  CHECK t0, 2
  rdcycle a0
  rdcycle a1
  sub t0, a1, a0
  CHECK t0, 1
  li t0, 1001
  bltu a0, t0, 9f
  BACK_TO_FW
9: FAIL
"""


@PATHS
def test_countinhibit_stops_counters(asm, path, tmp_path):
    run(asm, COUNTINHIBIT, *_path_args(path, tmp_path))


# mret (privileged spec 3.3.2): MIE = MPIE, MPIE = 1, privilege = MPP, MPP = U (the least-privileged
# mode), and MPRV = 0 when MPP != M.
MRET = r"""
  li t0, 0x21888
  csrc mstatus, t0
  li t0, 0x21880
  csrs mstatus, t0
  lla t0, 1f
  csrw mepc, t0
  mret
  j bad
1: csrr a0, mstatus
  MSTATUS_FIELD a0, 3, 1
  CHECK t0, 1
  MSTATUS_FIELD a0, 7, 1
  CHECK t0, 1
  MSTATUS_FIELD a0, 11, 3
  CHECK t0, 0
  MSTATUS_FIELD a0, 17, 1
  CHECK t0, 1
  # MPIE = 0: MIE becomes 0
  li t0, 0x20080
  csrc mstatus, t0
  li t0, 0x1808
  csrs mstatus, t0
  lla t0, 1f
  csrw mepc, t0
  mret
  j bad
1: csrr a0, mstatus
  MSTATUS_FIELD a0, 3, 1
  CHECK t0, 0
  MSTATUS_FIELD a0, 7, 1
  CHECK t0, 1
  MSTATUS_FIELD a0, 17, 1
  CHECK t0, 0
  # To S with MPRV = 1: the OS runs, MPRV is cleared
  li t0, 0x20000
  csrs mstatus, t0
  ENTER_OS 1, s_code, 1f
1: CHECK s8, 9
  MSTATUS_FIELD s6, 17, 1
  CHECK t0, 0
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 1
  # To U with MPRV = 1
  li t0, 0x20000
  csrs mstatus, t0
  ENTER_OS 0, u_code, 1f
1: CHECK s8, 8
  MSTATUS_FIELD s6, 17, 1
  CHECK t0, 0
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 0
  PASS
bad: FAIL
s_code:
  csrr a0, sstatus
  BACK_TO_FW
u_code:
  BACK_TO_FW
"""


@PATHS
def test_mret(asm, path, tmp_path):
    run(asm, MRET, *_path_args(path, tmp_path))


# sret from the firmware: "xRET is allowed at privilege x or higher" (privileged spec 3.3.2), so an
# S-level return with sstatus: to SPP, SIE = SPIE, SPIE = 1, SPP = U; leaving M clears MPRV (3.1.6.3).
FW_SRET = r"""
  csrci sstatus, 2
  li t0, 0x120
  csrs sstatus, t0
  li t0, 0x20000
  csrs mstatus, t0
  lla t0, s_code
  csrw sepc, t0
  lla s3, 1f
  sret
  FAIL
1: CHECK s8, 9
  lla t0, s_ecall
  CHECK_EQ s9, t0
  MSTATUS_FIELD s6, 17, 1
  CHECK t0, 0
  # SPP = U now: the next sret goes to U
  lla t0, u_code
  csrw sepc, t0
  lla s3, 1f
  sret
  FAIL
1: CHECK s8, 8
  PASS
s_code:
  csrr a0, sstatus
  andi t0, a0, 0x122
  CHECK t0, 0x22
  li s8, 0
  csrr a1, mscratch
  CHECK s8, 2
  li a7, 0x4d
s_ecall:
  ecall
u_code:
  li s8, 0
  csrr a1, sstatus
  CHECK s8, 2
  BACK_TO_FW
"""


@PATHS
def test_firmware_sret(asm, path, tmp_path):
    run(asm, FW_SRET, *_path_args(path, tmp_path))


# ebreak: mcause 3, mepc = mtval = its address (privileged spec 3.1.16), from the firmware and from
# the OS (not delegated: the firmware takes it).
BREAKPOINT = r"""
5: ebreak
  lla t0, 5b
  CHECK s8, 3
  CHECK_EQ s9, t0
  CHECK_EQ s10, t0
  .option push
  .option rvc
5: c.ebreak
  .option pop
  lla t0, 5b
  CHECK s8, 3
  CHECK_EQ s9, t0
  CHECK_EQ s10, t0
  ENTER_OS 1, s_code, 2f
2: PASS
s_code:
5: ebreak
  lla t0, 5b
  CHECK s8, 3
  CHECK_EQ s9, t0
  CHECK_EQ s10, t0
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 1
  BACK_TO_FW
"""


def test_breakpoint(asm):
    run(asm, BREAKPOINT)


# World switches: mret into S, ecall back (mcause 9, mepc, MPP = S); S state survives the firmware;
# M-level CSRs and mret are illegal in S; sret to U, ecall from U (mcause 8, MPP = U); rdtime from
# S traps unless the firmware sets mcounteren.TM.
OS_CTX_SWITCH = r"""
  csrw mcounteren, x0
  ENTER_OS 1, s_code, 1f
1: CHECK s8, 9
  lla t0, s_ecall
  CHECK_EQ s9, t0
  CHECK s10, 0
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 1
  csrr t0, sscratch
  CHECK t0, 0x5c
  csrr t0, sepc
  CHECK t0, 0x5e
  # mret back to the instruction after the ecall: the OS goes on where it was
  addi s9, s9, 4
  csrw mepc, s9
  SET_MPP 1
  lla s3, 1f
  li t0, 7
  csrw mcounteren, t0
  mret
1: CHECK s8, 8
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 0
  lla t0, u_ecall
  CHECK_EQ s9, t0
  PASS

s_code:
  li t0, 0x5c
  csrw sscratch, t0
  li t0, 0x5e
  csrw sepc, t0
  li s8, 0
  csrr a0, mstatus
  CHECK s8, 2
  li t0, 0x30002573
  CHECK_EQ s10, t0
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 1
  li s8, 0
  mret
  CHECK s8, 2
  li s8, 0
  rdtime a0
  CHECK s8, 2
  li a7, 0x12345
  li a6, 0
  ecall
  CHECK s8, 9
  li a7, 0x4d
s_ecall:
  ecall
  # back in S; mcounteren.TM = 1 now: rdtime is native
  li s8, 0
  rdtime a0
  rdtime a1
  CHECK s8, 0
  bltu a1, a0, 9f
  csrr t0, sscratch
  CHECK t0, 0x5c
  # sret to U (SPP = 0)
  li t0, 0x100
  csrc sstatus, t0
  lla t0, u_code
  csrw sepc, t0
  sret
9: FAIL
u_code:
  li s8, 0
  csrr a0, sstatus
  CHECK s8, 2
  li a7, 0x4d
u_ecall:
  ecall
"""


@PATHS
def test_os_ctx_switch(asm, path, tmp_path):
    stats = run(asm, OS_CTX_SWITCH, *_path_args(path, tmp_path), stats=tmp_path / "stats.json")
    assert stats["world_switches"] == {"to_firmware": 7, "to_os": 7}
    assert stats["os_traps"] == {"illegal_insn": 4, "ecall_s": 2, "ecall_u": 1}
    assert stats["sbi"]["0x12345"] == {"0": 1}
    assert stats["mret"] >= 2 and stats["csr"]["mstatus"] > 0


# Interrupt enables: mie holds MSI/MTI/MEI and the S interrupts, sie is mie restricted to mideleg;
# a pending S interrupt goes to S when delegated, else to the firmware (M-level interrupts are
# always enabled while the OS runs: privileged spec 3.1.9).
INTERRUPT = r"""
  li t0, 0x222
  csrw mideleg, t0
  li t0, -1
  csrw mie, t0
  csrr a0, mie
  CHECK a0, 0xaaa
  csrr a0, sie
  CHECK a0, 0x222
  csrw sie, x0
  csrr a0, mie
  CHECK a0, 0x888
  csrw mideleg, x0
  csrr a0, sie
  CHECK a0, 0
  li t0, -1
  csrw sie, t0
  csrr a0, mie
  CHECK a0, 0x888
  csrw mie, x0
  # Not enabled in mie: a pending SSIP does nothing
  csrsi mip, 2
  csrsi mstatus, 8
  csrr a0, mip
  CHECK a0, 2
  csrr a0, sip
  CHECK a0, 0
  CHECK s5, 0
  csrci mstatus, 8
  # Not delegated, enabled: the firmware takes it once mstatus.MIE is set
  csrsi mie, 2
  CHECK s5, 0
5: csrsi mstatus, 8
  lla t0, 5b
  addi t0, t0, 4
  CHECK_EQ s9, t0
  CHECK s5, 1
  li t0, (1 << 63) | 1
  CHECK_EQ s8, t0
  csrci mstatus, 8
  # Not delegated, enabled, in S with sstatus.SIE = 0: the firmware still takes it at once
  csrsi mie, 2
  ENTER_OS 1, s_first, 1f
1: CHECK s5, 0x0101
  # Delegated: S takes it through stvec (sstatus.SIE = 1, sie.SSIE = 1) and never the firmware
  li t0, 0x222
  csrw mideleg, t0
  csrsi mie, 2
  li a4, 0
  li t0, 0x22
  csrs mstatus, t0
  lla t0, s_handler
  csrw stvec, t0
  ENTER_OS 1, s_wait, 1f
1: CHECK s5, 0x0101
  PASS
s_first:
  lla t0, s_first
  CHECK_EQ s9, t0
  li t0, 0x2
  csrr t1, sip
  CHECK t1, 0
  BACK_TO_FW
s_wait:
  li t0, (1 << 63) | 1
  CHECK_EQ a4, t0
  lla t0, s_wait
  CHECK_EQ a5, t0
  csrr t0, sip
  CHECK t0, 0
  BACK_TO_FW
  .align 2
s_handler:
  csrr a4, scause
  csrr a5, sepc
  csrci sip, 2
  sret
"""


def test_interrupt(asm):
    run(asm, INTERRUPT)


# Vectored mtvec (privileged spec 3.1.7): interrupts at base + 4 * cause, exceptions at base.
VECTORED = r"""
  lla t0, vtable
  ori t0, t0, 1
  csrw mtvec, t0
  csrr t1, mtvec
  CHECK_EQ t1, t0
  li s4, -1
  # MSI through the CLINT
  csrsi mie, 8
  li t0, CLINT_MSIP
  li t1, 1
  sw t1, 0(t0)
  csrsi mstatus, 8
  CHECK s4, 3
  CHECK s5, 3
  li t0, CLINT_MSIP
  sw x0, 0(t0)
  # SSI written into mip, not delegated
  csrsi mip, 2
  csrsi mie, 2
  CHECK s4, 1
  CHECK s5, 0x0301
  csrci mip, 2
  # MTI: mtimecmp = 0 is already due
  li t0, 0x80
  csrs mie, t0
  li t0, CLINT_MTIMECMP
  sd x0, 0(t0)
  CHECK s4, 7
  CHECK s5, 0x030107
  li t1, -1
  sd t1, 0(t0)
  # Exceptions go to the base
  li s4, -1
  ecall
  CHECK s4, 0
  CHECK s8, 11
  PASS
  .option push
  .option norvc
  .align 8
vtable:
  j vec0
  j vec1
  j vec_bad
  j vec3
  j vec_bad
  j vec_bad
  j vec_bad
  j vec7
  j vec_bad
  j vec_bad
  j vec_bad
  j vec_bad
  .option pop
vec0: li s4, 0
  j handler
vec1: li s4, 1
  j handler
vec3: li s4, 3
  j handler
vec7: li s4, 7
  j handler
vec_bad: FAIL
"""


def test_vectored_mtvec(asm):
    run(asm, VECTORED)


# The CLINT timer (privileged spec 3.2.1, 3.1.9): MTIP follows mtime >= mtimecmp; mip.MTIP is
# read-only (csrw/csrc of mip leave it), writing mtimecmp clears it.
CLINT_INTERRUPT = r"""
  li t0, 0x80
  csrs mie, t0
  li t0, CLINT_MTIME
  ld t1, 0(t0)
  li t2, 2000
  add t1, t1, t2
  li t0, CLINT_MTIMECMP
  sd t1, 0(t0)
  csrr a0, mip
  CHECK a0, 0
7: wfi
  csrr a0, mip
  beqz a0, 7b
  CHECK a0, 0x80
  li t0, CLINT_MTIME
  ld t2, 0(t0)
  bltu t2, t1, 9f
  csrw mip, x0
  li t0, 0x80
  csrc mip, t0
  csrr a0, mip
  CHECK a0, 0x80
  CHECK s5, 0
5: csrsi mstatus, 8
  CHECK s5, 7
  li t0, (1 << 63) | 7
  CHECK_EQ s8, t0
  lla t0, 5b
  addi t0, t0, 4
  CHECK_EQ s9, t0
  csrci mstatus, 8
  li t0, CLINT_MTIMECMP
  li t1, -1
  sd t1, 0(t0)
  csrr a0, mip
  CHECK a0, 0
  PASS
9: FAIL
"""


def test_clint_interrupt(asm):
    run(asm, CLINT_INTERRUPT)


# --icount: a timer deadline nearer than the next block. Time advances by one tick each 10
# instructions and blocks run whole, so a deadline one tick away is reached inside the next block
# of 41 instructions (translated at once: --warm-threshold 0); the interrupt is taken just after
# it, again and again (the run loop once kept waiting for a budget no block fitted in).
ICOUNT_TIMER_LONG_BLOCK = r"""
  csrsi mstatus, 8
  li s4, 0
1: li t0, CLINT_MTIME
  ld t1, 0(t0)
  addi t1, t1, 1
  li t0, CLINT_MTIMECMP
  sd t1, 0(t0)
  li s5, 0
  li t0, 0x80
  csrs mie, t0
2: .rept 40
  addi t2, t2, 1
  .endr
  beqz s5, 2b
  CHECK s5, 7
  addi s4, s4, 1
  li t0, 50
  bne s4, t0, 1b
  PASS
"""


def test_icount_timer_deadline_inside_a_block(asm):
    run(asm, ICOUNT_TIMER_LONG_BLOCK, "--icount", "--warm-threshold", "0")


# Several pending interrupts are taken by priority: "MEI, MSI, MTI, SEI, SSI, STI" (spec 3.1.9).
# All six at once: MEI from the PLIC's M context of hart 0, MSI and MTI from the CLINT, SEI from the
# PLIC's S context or from software (mip.SEIP is writable from M), SSI and STI written into mip. The
# PLIC's line is the UART's (source 10): IER.THRI with an empty transmitter raises it. Each handler
# logs the cause (s5, a byte each, first taken in the top byte) and disables it, so the next one is
# taken. The firmware takes all six; the OS, with the S interrupts delegated, sees the M-level ones
# go to the firmware first (they are always enabled below M), then takes SEI, SSI, STI itself.
PRIORITY = r"""
  .equ PLIC, 0xc000000
  .equ UART, 0x10000000
  li t0, PLIC + 4 * 10
  li t1, 1
  sw t1, 0(t0)
  li t0, PLIC + 0x2000
  li t1, 1 << 10
  sw t1, 0(t0)
  .if SEI_PLIC
  sw t1, 0x80(t0)
  .endif
  li t0, UART
  li t1, 2
  sb t1, 1(t0)
  .if !SEI_PLIC
  li t0, 0x200
  csrs mip, t0
  .endif
  li t0, CLINT_MSIP
  li t1, 1
  sw t1, 0(t0)
  li t0, CLINT_MTIMECMP
  sd x0, 0(t0)
  li t0, 0x22
  csrs mip, t0
  csrr a0, mip
  CHECK a0, 0xaaa
  CHECK s5, 0
  li t0, 0xaaa
  csrw mie, t0
  .if IN_OS
  li t0, 0x222
  csrw mideleg, t0
  lla t0, s_handler
  csrw stvec, t0
  csrsi sstatus, 2
  ENTER_OS 1, s_code, 1f
1: CHECK s5, 0x0b0307090105
  PASS
s_code:
  CHECK s5, 0x0b0307090105
  BACK_TO_FW
  .align 2
s_handler:
  csrr t0, scause
  andi t0, t0, 0xff
  slli s5, s5, 8
  or s5, s5, t0
  li t1, 1
  sll t1, t1, t0
  csrc sie, t1
  sret
  .else
  csrsi mstatus, 8
  CHECK s5, 0x0b0307090105
  PASS
  .endif
"""


@pytest.mark.parametrize("sei", ["plic", "software"])
@pytest.mark.parametrize("where", ["firmware", "os"])
def test_interrupt_priority(asm, where, sei):
    run(asm, PRIORITY, defs={"SEI_PLIC": int(sei == "plic"), "IN_OS": int(where == "os")})


def _cfg_legal(byte: int) -> int:
    cfg = byte & 0x9F
    return cfg & ~0x3 if cfg & 0x3 == 0x2 else cfg


def _cfg_word(data: bytes) -> int:
    return int.from_bytes(bytes(_cfg_legal(b) for b in data), "little")


CFG0 = bytes([0x7F, 0x02, 0x16, 0x0B, 0x10, 0x18, 0x0C, 0x00])
CFG2 = bytes([0x19, 0x1B, 0x1F, 0x06, 0x63, 0x08, 0x10, 0x1F])

# PMP registers (privileged spec 3.7.1): 16 entries, grain 4 bytes (NA4 allowed), 54 address bits;
# unimplemented entries read 0; W=1/R=0 is dropped; reserved bits read 0; only even pmpcfg exist;
# a locked entry ignores writes to itself and to the pmpaddr below a locked TOR, and binds M-mode.
PMP_CSRS = rf"""
  li t0, -1
  csrw pmpaddr0, t0
  csrr a0, pmpaddr0
  CHECK a0, 0x3fffffffffffff
  csrw pmpaddr15, t0
  csrr a0, pmpaddr15
  CHECK a0, 0x3fffffffffffff
  csrw pmpaddr16, t0
  csrr a0, pmpaddr16
  CHECK a0, 0
  csrrw a0, pmpaddr63, t0
  CHECK a0, 0
  csrr a0, pmpaddr63
  CHECK a0, 0
  csrw pmpcfg4, t0
  csrr a0, pmpcfg4
  CHECK a0, 0
  csrw pmpcfg14, t0
  csrr a0, pmpcfg14
  CHECK a0, 0
  li s8, 0
  csrr a0, pmpcfg1
  CHECK s8, 2
  li s8, 0
  csrw pmpcfg15, t0
  CHECK s8, 2
  # pmpaddr0 = all ones: entries are active while the firmware runs, which M does not notice
  li t0, {int.from_bytes(CFG0, "little"):#x}
  csrw pmpcfg0, t0
  csrr a0, pmpcfg0
  CHECK a0, {_cfg_word(CFG0):#x}
  li t0, {int.from_bytes(CFG2, "little"):#x}
  csrw pmpcfg2, t0
  csrr a0, pmpcfg2
  CHECK a0, {_cfg_word(CFG2):#x}
  csrw pmpcfg0, x0
  csrw pmpcfg2, x0
  csrr a0, pmpcfg0
  CHECK a0, 0
  # Lock entry 5 as TOR [locked_page, +4 KiB) read-only. A store before fills the fast path.
  lla a1, locked_page
  li t0, 0x77
  sd t0, 0(a1)
  srli t0, a1, 2
  csrw pmpaddr4, t0
  li t1, 1024
  add t0, t0, t1
  csrw pmpaddr5, t0
  li t0, 0x89 << 40
  csrw pmpcfg0, t0
  csrr a0, pmpcfg0
  CHECK_EQ a0, t0
  # Locked: the entry's cfg, its address and the TOR base below it ignore writes
  li t1, 0x9f << 40
  csrs pmpcfg0, t1
  csrw pmpcfg0, x0
  csrr a0, pmpcfg0
  CHECK_EQ a0, t0
  csrr a2, pmpaddr5
  csrw pmpaddr5, x0
  csrr a3, pmpaddr5
  CHECK_EQ a2, a3
  csrr a2, pmpaddr4
  csrw pmpaddr4, x0
  csrr a3, pmpaddr4
  CHECK_EQ a2, a3
  li t0, 0x1234
  csrw pmpaddr3, t0
  csrr a3, pmpaddr3
  CHECK a3, 0x1234
  # M-mode now obeys entry 5: loads work, stores and fetches fault; the next page is not covered
  ld a0, 0(a1)
  CHECK a0, 0x77
  li s8, 0
5: sd zero, 8(a1)
  lla t0, 5b
  CHECK s8, 7
  CHECK_EQ s9, t0
  addi t0, a1, 8
  CHECK_EQ s10, t0
  ld a0, 8(a1)
  CHECK a0, 0
  li t0, 4096
  add a2, a1, t0
  sd a1, 0(a2)
  ld a0, 0(a2)
  CHECK_EQ a0, a1
  lla s7, 1f
  jr a1
1: CHECK s8, 1
  CHECK_EQ s9, a1
  # NA4 entry 6, locked read-only, on one word of a page: its neighbours stay writable, and the
  # page never goes to the fast path (every store to the word faults)
  lla a1, na4_page
  addi a2, a1, 16
  srli t0, a2, 2
  csrw pmpaddr6, t0
  li t0, 0x91 << 48
  csrs pmpcfg0, t0
  li a3, 0x55
  sd a3, 0(a1)
  sw a3, 12(a1)
  li s8, 0
  sw a3, 16(a1)
  CHECK s8, 7
  CHECK_EQ s10, a2
  sw a3, 20(a1)
  li s8, 0
  sw a3, 16(a1)
  CHECK s8, 7
  li s8, 0
  sd a3, 16(a1)
  CHECK s8, 7
  lw a0, 16(a1)
  CHECK a0, 0
  # An access that the entry matches only partly fails, even where the entry would allow it
  li s8, 0
  ld a0, 16(a1)
  CHECK s8, 5
  lw a0, 20(a1)
  CHECK a0, 0x55
  PASS
  .data
  .align 12
locked_page: .fill 1024, 8, 0
na4_page: .fill 512, 8, 0
  .text
"""


def test_pmp_csrs(asm):
    run(asm, PMP_CSRS)


# PMP enforcement on the OS (privileged spec 3.7.1): the lowest-numbered matching entry decides;
# S/U accesses need an entry with the permission, and fail where no entry matches once any entry
# is active; unlocked entries do not bind the firmware. Faults reach the firmware, or S when
# delegated. Changing the PMP takes effect at once (no stale fast-path entry).
PMP_ENFORCE = r"""
  # entry 0: secret page, no access (NAPOT 4 KiB); entry 1: read-only page; entry 2: the image
  # (NAPOT 1 MiB at 0x80000000) RWX; entry 4: TOR [0x80800000, 0x80801000) RW; nothing else.
  lla t0, secret
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr0, t0
  lla t0, ro_page
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr1, t0
  li t0, (0x80000000 >> 2) | 0x1ffff
  csrw pmpaddr2, t0
  li t0, 0x80800000 >> 2
  csrw pmpaddr3, t0
  li t0, 0x80801000 >> 2
  csrw pmpaddr4, t0
  li t0, 0x0b001f1918
  csrw pmpcfg0, t0
  # The firmware is not bound by unlocked entries
  lla a1, secret
  li t0, 0x5ec
  sd t0, 0(a1)
  ENTER_OS 1, s_code, 1f
1: # A load fault delegated to S goes to stvec, not to the firmware
  li t0, 1 << 5
  csrw medeleg, t0
  lla t0, s_handler
  csrw stvec, t0
  mv a5, s11
  ENTER_OS 1, s_delegated, 1f
1: addi a5, a5, 1
  CHECK_EQ s11, a5
  csrw medeleg, x0
  # The OS loads from a page, the firmware revokes it (entry 1 now denies it), the next load faults
  ENTER_OS 1, s_before, 1f
1: lla t0, data
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr1, t0
  li t0, 0x0b001f1818
  csrw pmpcfg0, t0
  ENTER_OS 1, s_after, 1f
1: PASS

s_code:
  lla a1, data
  ld a0, 0(a1)
  CHECK a0, 0x1234
  sd a0, 8(a1)
  lla a1, secret
  li s8, 0
5: ld a0, 0(a1)
  lla t0, 5b
  CHECK s8, 5
  CHECK_EQ s9, t0
  CHECK_EQ s10, a1
  li s8, 0
  sw a0, 4(a1)
  CHECK s8, 7
  addi t0, a1, 4
  CHECK_EQ s10, t0
  lla a1, ro_page
  ld a0, 0(a1)
  CHECK a0, 0x4f
  li s8, 0
  sd a0, 0(a1)
  CHECK s8, 7
  li a1, 0x80800000
  sd a1, 0(a1)
  ld a0, 0(a1)
  CHECK_EQ a0, a1
  li a1, 0x80801000
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  li s8, 0
  sd a0, 0(a1)
  CHECK s8, 7
  li a1, 0x807ffff8
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  # Fetching from the secret page (no X)
  lla a1, secret
  lla s7, 1f
  jr a1
1: CHECK s8, 1
  CHECK_EQ s10, a1
  # U-mode follows the same entries
  lla t0, u_code
  csrw sepc, t0
  li t0, 0x100
  csrc sstatus, t0
  sret
u_code:
  lla a1, ro_page
  ld a0, 0(a1)
  CHECK a0, 0x4f
  lla a1, secret
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  BACK_TO_FW

s_delegated:
  li a4, 0
  lla a1, secret
5: ld a0, 0(a1)
  CHECK a4, 5
  lla t0, 5b
  CHECK_EQ a3, t0
  CHECK_EQ a2, a1
  BACK_TO_FW
  .align 2
s_handler:
  csrr a4, scause
  csrr a3, sepc
  csrr a2, stval
  addi t0, a3, 4
  csrw sepc, t0
  sret

s_before:
  lla a1, data
  ld a0, 0(a1)
  CHECK a0, 0x1234
  BACK_TO_FW
s_after:
  lla a1, data
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  BACK_TO_FW

  .data
  .align 12
secret: .fill 512, 8, 0
ro_page: .dword 0x4f
  .align 12
data: .dword 0x1234, 0
  .text
"""


def test_pmp_enforcement(asm):
    run(asm, PMP_ENFORCE)


# The OS loses execute permission on code it has already run, translated and chained (called 100
# times from a loop): the firmware's PMP change takes effect at the next fetch (privileged spec
# 3.7.1 and 3.7.2), whatever tier the code was compiled at, so the next call faults (instruction
# access fault, mepc = mtval = the function) instead of running stale translated code.
PMP_EXEC = r"""
  # entry 0: s_func's page, RWX then RW; entry 1: everything, RWX
  lla t0, s_func
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr0, t0
  li t0, -1
  csrw pmpaddr1, t0
  li t0, 0x1f1f
  csrw pmpcfg0, t0
  ENTER_OS 1, s_code, 1f
1: CHECK s8, 9
  CHECK a0, 100
  li t0, 0x1f1b
  csrw pmpcfg0, t0
  lla s7, s_faulted
  ENTER_OS 1, s_code, 1f
1: CHECK a1, 1
  lla t0, s_func
  CHECK_EQ a2, t0
  CHECK_EQ a3, t0
  CHECK a0, 0
  PASS

s_code:
  li a0, 0
  li s1, 100
2: call s_func
  addi s1, s1, -1
  bnez s1, 2b
  BACK_TO_FW
s_faulted:
  mv a1, s8
  mv a2, s9
  mv a3, s10
  BACK_TO_FW

  .align 12
s_func:
  addi a0, a0, 1
  ret
  .align 12
"""

# Tiers: cold code only, optimized code only, and promotion after two runs (`--hot-threshold`).
TIERS = pytest.mark.parametrize("threshold", ["1000000000", "0", "2"], ids=["tier0", "tier1", "promote"])


@TIERS
def test_pmp_revokes_execute_on_translated_code(asm, threshold):
    run(asm, PMP_EXEC, "--hot-threshold", threshold)


# The monitor's own memory: 2 MiB just above the guest's 256 MiB (`jit-run` leaves it out of the
# device tree). No guest reaches it: loads, stores, AMOs and fetches fault with access faults from
# the firmware, with MPRV = 1, from S (even when a PMP entry grants everything), and page-table
# walks through it fault too.
SANDBOX = r"""
  .equ MON, 0x90000000
  li a1, 0x8ffffff8
  ld a0, 0(a1)
  sd a0, 0(a1)
  li a1, MON
  li s8, 0
5: ld a0, 0(a1)
  lla t0, 5b
  CHECK s8, 5
  CHECK_EQ s9, t0
  CHECK_EQ s10, a1
  li s8, 0
  sd a0, 8(a1)
  CHECK s8, 7
  addi t0, a1, 8
  CHECK_EQ s10, t0
  li a2, MON + 0x1ffff8
  li s8, 0
  lw a0, 4(a2)
  CHECK s8, 5
  li s8, 0
  amoswap.d a0, a0, (a2)
  CHECK s8, 7
  li s8, 0
  lr.d a0, (a1)
  CHECK s8, 5
  lla s7, 1f
  jr a1
1: CHECK s8, 1
  CHECK_EQ s9, a1
  # MPRV = 1, MPP = S, bare translation
  SET_MPP 1
  li t0, 0x20000
  csrs mstatus, t0
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  SET_MPP 1
  li s8, 0
  sd a0, 0(a1)
  CHECK s8, 7
  # satp's root table inside the monitor's memory: the page walk itself faults
  li t0, (8 << 60) | (MON >> 12)
  csrw satp, t0
  SET_MPP 1
  li s8, 0
  li a2, 0x1000
  ld a0, 0(a2)
  CHECK s8, 5
  CHECK_EQ s10, a2
  csrw satp, x0
  li t0, 0x20000
  csrc mstatus, t0
  # A PMP entry granting S everything (NAPOT over the whole address space) does not open it
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  ENTER_OS 1, s_code, 1f
1: PASS
s_code:
  li a1, MON
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 5
  li s8, 0
  sb a0, 0(a1)
  CHECK s8, 7
  li a1, 0x8ffffff8
  ld a0, 0(a1)
  BACK_TO_FW
"""


def test_sandbox(asm):
    run(asm, SANDBOX)


def test_sandbox_memory_is_the_monitors(asm):
    """In-process: the reserved range is real RAM of the machine, it holds the monitor's marker,
    and a firmware that writes at it (every way it can) leaves it intact."""
    from platforms import qemu_virt
    from runtime.boot import board
    from runtime.boot.loader import load
    from vfm.monitor import MONITOR_MAGIC, MONITOR_RAM, Monitor

    text, _ = _number(MACROS + "  INSTALL_HANDLER\n" + SANDBOX + HANDLER)
    ram = 256 << 20
    m = board.build(qemu_virt, ram_size=ram + MONITOR_RAM)
    img = load(m.mem, asm(text), qemu_virt.RAM_BASE)
    from runtime.devices.htif import Htif

    Htif(m, img.symbols["tohost"], img.symbols.get("fromhost"))
    base = qemu_virt.RAM_BASE + ram
    mon = Monitor(reserved=[(base, MONITOR_RAM)])
    mon.attach(m)
    assert m.mem.is_ram(base, MONITOR_RAM)
    before = m.mem.read_bytes(base, MONITOR_RAM)
    assert before.startswith(MONITOR_MAGIC)
    mon.reset(m.harts[0], img.entry, 0, 0)
    m.max_insns = 10_000_000
    assert m.run().code == 0
    assert m.mem.read_bytes(base, MONITOR_RAM) == before


# Misaligned loads and stores (Miralis: emulated for the OS by its offload policy, like OpenSBI's
# handler). From the firmware they trap into the firmware as on hardware (mcause 4 / 6, mtval =
# address). From the OS, with the fast path on, the monitor performs them and the firmware never
# sees them; with --no-offload the firmware gets them. When delegated, S gets them. A fault during
# the emulation is raised as that fault; AMOs are never emulated.
MISALIGNED = r"""
  lla a1, buf
  li s8, 0
5: lw a0, 1(a1)
  lla t0, 5b
  CHECK s8, 4
  CHECK_EQ s9, t0
  addi t0, a1, 1
  CHECK_EQ s10, t0
  li s8, 0
  sd a0, 3(a1)
  CHECK s8, 6
  li t0, 0x2000
  csrs mstatus, t0
  mv s2, s11
  ENTER_OS 1, s_code, 1f
1: sub s2, s11, s2
  .if OFFLOAD
  CHECK s2, 3
  .else
  CHECK s2, 14
  .endif
  # Delegated to S: S's handler sees it
  li t0, (1 << 4) | (1 << 6)
  csrw medeleg, t0
  lla t0, s_handler
  csrw stvec, t0
  ENTER_OS 1, s_delegated, 1f
1: PASS

s_code:
  lla a1, buf
  li a0, 0x1122334455667788
  sd a0, 0(a1)
  li a0, -1
  sd a0, 8(a1)
  .if OFFLOAD
  lh a2, 1(a1)
  CHECK a2, 0x6677
  lhu a2, 7(a1)
  CHECK a2, 0xff11
  lw a2, 7(a1)
  CHECK a2, 0xffffffffffffff11
  lwu a2, 3(a1)
  CHECK a2, 0x22334455
  ld a2, 1(a1)
  CHECK a2, 0xff11223344556677
  li a3, 0x0102030405060708
  sd a3, 5(a1)
  ld a2, 0(a1)
  CHECK a2, 0x0607084455667788
  ld a2, 8(a1)
  CHECK a2, 0xffffff0102030405
  sh a3, 15(a1)
  lbu a2, 15(a1)
  CHECK a2, 0x08
  lbu a2, 16(a1)
  CHECK a2, 0x07
  sw a3, 17(a1)
  lwu a2, 17(a1)
  CHECK a2, 0x05060708
  addi a4, a1, 2
  .option push
  .option rvc
  c.lw a2, 0(a4)
  c.sd a3, 8(a4)
  .option pop
  CHECK a2, 0x08445566
  ld a2, 10(a1)
  CHECK_EQ a2, a3
  fld fa0, 10(a1)
  fmv.x.d a2, fa0
  CHECK_EQ a2, a3
  flw fa1, 10(a1)
  fmv.x.d a2, fa1
  CHECK a2, 0xffffffff05060708
  fsw fa1, 33(a1)
  lwu a2, 33(a1)
  CHECK a2, 0x05060708
  fsd fa0, 41(a1)
  ld a2, 41(a1)
  CHECK_EQ a2, a3
  .else
  li s8, 0
  lh a2, 1(a1)
  CHECK s8, 4
  addi t0, a1, 1
  CHECK_EQ s10, t0
  li s8, 0
  sd a2, 5(a1)
  CHECK s8, 6
  li s8, 0
  lhu a2, 7(a1)
  lw a2, 7(a1)
  lwu a2, 3(a1)
  ld a2, 1(a1)
  sh a3, 15(a1)
  sw a3, 17(a1)
  addi a4, a1, 2
  .option push
  .option rvc
  c.lw a2, 0(a4)
  c.sd a3, 8(a4)
  .option pop
  fld fa0, 10(a1)
  CHECK s8, 4
  .endif
  # A misaligned load running into the monitor's memory: access fault (or misaligned to the firmware)
  li a1, 0x8ffffffc
  li s8, 0
  ld a2, 0(a1)
  .if OFFLOAD
  CHECK s8, 5
  li t0, 0x90000000
  CHECK_EQ s10, t0
  .else
  CHECK s8, 4
  CHECK_EQ s10, a1
  .endif
  # AMOs are not emulated
  lla a1, buf
  li s8, 0
  amoadd.w a2, a3, (a4)
  CHECK s8, 6
  BACK_TO_FW

s_delegated:
  lla a1, buf
  li a4, 0
  lw a2, 1(a1)
  CHECK a4, 4
  addi t0, a1, 1
  CHECK_EQ a2, t0
  BACK_TO_FW
  .align 2
s_handler:
  csrr a4, scause
  csrr a2, stval
  csrr t0, sepc
  addi t0, t0, 4
  csrw sepc, t0
  sret

  .data
  .align 4
buf: .fill 8, 8, 0
"""


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_misaligned(asm, offload, tmp_path):
    args = ("--offload",) if offload else ("--no-offload",)
    stats = run(asm, MISALIGNED, *args, defs={"OFFLOAD": int(offload)}, stats=tmp_path / "s.json")
    if offload:
        assert stats["offloaded"]["misaligned_load"] == 12
        assert stats["offloaded"]["misaligned_store"] == 6
    else:
        assert "misaligned_load" not in stats["offloaded"]
        assert stats["os_traps"]["load_misaligned"] == 8
        assert stats["os_traps"]["store_misaligned"] == 5


# Sv39 tables for the MPRV and fence tests, built by the firmware (privileged spec 4.3-4.4):
# 0x80000000 (1 GiB) identity RWX, not U; 0x40000000 -> 0x80000000 with U, RW; 0xC0000000 ->
# 0x80000000 read-only; 0x0 -> pt_l1 -> pt_l0, whose entry 1 maps VA 0x1000 to page_a (RW, not U).
PAGE_TABLES = r"""
  .macro PTE reg, pa_reg, flags
  srli \reg, \pa_reg, 12
  slli \reg, \reg, 10
  ori \reg, \reg, \flags
  .endm
  lla a0, pt_root
  li a1, 0x80000000
  PTE t1, a1, 0xcf
  sd t1, 16(a0)
  PTE t1, a1, 0xd7
  sd t1, 8(a0)
  PTE t1, a1, 0x43
  sd t1, 24(a0)
  lla a1, pt_l1
  PTE t1, a1, 0x01
  sd t1, 0(a0)
  lla a2, pt_l0
  PTE t1, a2, 0x01
  sd t1, 0(a1)
  lla a3, page_a
  PTE t1, a3, 0xc7
  sd t1, 8(a2)
  srli t1, a0, 12
  li t0, 8 << 60
  or t1, t1, t0
  csrw satp, t1
"""
PAGE_DATA = r"""
  .data
  .align 12
pt_root: .fill 512, 8, 0
pt_l1: .fill 512, 8, 0
pt_l0: .fill 512, 8, 0
page_a: .dword 0xaaaa
  .align 12
page_b: .dword 0xbbbb
  .align 12
mdata: .dword 0x6d6d
  .text
"""

# MPRV (privileged spec 3.1.6.3): with MPRV = 1 the firmware's loads and stores use the privilege
# in MPP and its translation (fetches do not); faults reach the firmware with the cause and tval
# of the access. Trap entry from M leaves MPP = M, so the handler itself accesses physically.
MPRV = PAGE_TABLES + r"""
  lla a4, mdata
  li t0, 0x40000000
  add a5, a4, t0
  sub a6, a4, t0
  li t0, 0x20000
  csrs mstatus, t0
  SET_MPP 1
  ld a0, 0(a4)
  CHECK a0, 0x6d6d
  ld a0, 0(a5)
  CHECK a0, 0x6d6d
  li s8, 0
5: sd a0, 0(a5)
  lla t0, 5b
  CHECK s8, 15
  CHECK_EQ s9, t0
  CHECK_EQ s10, a5
  MSTATUS_FIELD s6, 17, 1
  CHECK t0, 1
  MSTATUS_FIELD s6, 11, 3
  CHECK t0, 3
  # The handler's mret left MPP = U: loads are U-mode now, the identity map is not U
  li s8, 0
  ld a0, 0(a4)
  CHECK s8, 13
  CHECK_EQ s10, a4
  SET_MPP 0
  ld a0, 0(a6)
  CHECK a0, 0x6d6d
  sd a0, 8(a6)
  SET_MPP 1
  li s8, 0
  ld a0, 0(a6)
  CHECK s8, 13
  CHECK_EQ s10, a6
  # sstatus.SUM lets S touch U pages
  SET_MPP 1
  li t0, 1 << 18
  csrs sstatus, t0
  ld a0, 8(a6)
  CHECK a0, 0x6d6d
  csrc sstatus, t0
  li s8, 0
  ld a0, 8(a6)
  CHECK s8, 13
  # Unmapped, and a 4 KiB mapping
  SET_MPP 1
  li a1, 0x100000000
  li s8, 0
  lw a0, 4(a1)
  CHECK s8, 13
  addi t0, a1, 4
  CHECK_EQ s10, t0
  SET_MPP 1
  li a1, 0x1000
  ld a0, 0(a1)
  CHECK a0, 0xaaaa
  li a1, 0x2000
  li s8, 0
  ld a0, 0(a1)
  CHECK s8, 13
  # MPP = M: physical again
  SET_MPP 3
  ld a0, 0(a4)
  CHECK a0, 0x6d6d
  li t0, 0x20000
  csrc mstatus, t0
  csrw satp, x0
  PASS
""" + PAGE_DATA


def test_mprv(asm):
    run(asm, MPRV)


# PMP also checks the page-table walk's own reads, as S-mode accesses; a denied one raises the access
# fault of the original access (privileged spec 3.7.2 and 4.3.2 step 2): a load, a store, and a
# fetch (an access fault, before the leaf's missing X could give a page fault). Entry 0 covers the
# last-level table of VA 0x1000 (-> page_a); the gigapage the OS's code runs from is left readable.
PMP_WALK = PAGE_TABLES + r"""
  lla t0, pt_l0
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr0, t0
  li t0, -1
  csrw pmpaddr1, t0
  li t0, 0x1f19
  csrw pmpcfg0, t0
  ENTER_OS 1, s_allowed, 1f
1: CHECK a0, 0xaaaa
  li t0, 0x1f18
  csrw pmpcfg0, t0
  ENTER_OS 1, s_denied, 1f
1: csrw satp, x0
  PASS

s_allowed:
  li a1, 0x1000
  ld a0, 0(a1)
  BACK_TO_FW
s_denied:
  li a1, 0x1000
  li s8, 0
5: ld a0, 0(a1)
  CHECK s8, 5
  lla t0, 5b
  CHECK_EQ s9, t0
  CHECK s10, 0x1000
  li s8, 0
  sd a0, 8(a1)
  CHECK s8, 7
  CHECK s10, 0x1008
  lla s7, 6f
  li s8, 0
  jr a1
6: CHECK s8, 1
  CHECK s10, 0x1000
  BACK_TO_FW
""" + PAGE_DATA


def test_pmp_checks_page_table_walks(asm):
    run(asm, PMP_WALK)


# The OS world loads and stores a page through Sv39 many times (after each sfence.vma the TLB
# misses and the native refill does the access, from what it learned of the PMP); then the
# firmware revokes read and write on that page (privileged spec 3.7.1: the entry's R and W bits
# decide S-mode accesses), and the next load and store of the OS fault with access faults
# (3.7.2: a PMP change "takes effect" for the accesses after it), as a fetch from it does.
PMP_REVOKE = PAGE_TABLES + r"""
  lla t0, page_a
  srli t0, t0, 2
  ori t0, t0, 0x1ff
  csrw pmpaddr0, t0
  li t0, -1
  csrw pmpaddr1, t0
  li t0, 0x1f1f
  csrw pmpcfg0, t0
  ENTER_OS 1, s_use, 1f
1: CHECK a0, 0xaaaa + 50
  li t0, 0x1f18
  csrw pmpcfg0, t0
  ENTER_OS 1, s_denied, 1f
1: csrw satp, x0
  PASS

s_use:
  li a1, 0x1000
  li s1, 50
2: sfence.vma
  ld a0, 0(a1)
  addi a0, a0, 1
  sfence.vma
  sd a0, 0(a1)
  addi s1, s1, -1
  bnez s1, 2b
  ld a0, 0(a1)
  BACK_TO_FW
s_denied:
  li a1, 0x1000
  li s8, 0
5: ld a0, 0(a1)
  CHECK s8, 5
  lla t0, 5b
  CHECK_EQ s9, t0
  CHECK s10, 0x1000
  li s8, 0
  sd a0, 8(a1)
  CHECK s8, 7
  CHECK s10, 0x1008
  BACK_TO_FW
""" + PAGE_DATA


@TIERS
def test_pmp_change_revokes_what_the_native_refill_learned(asm, threshold, tmp_path):
    stats = tmp_path / "s.json"
    run(asm, PMP_REVOKE, "--hot-threshold", threshold, stats=stats)
    assert json.loads(stats.read_text())["mmu"]["native_walks"] >= 50  # The refill did the accesses


# The SBI fast path. A small firmware implements what the OS uses the way OpenSBI does (set_timer
# arms the CLINT and MTIE, the timer interrupt raises STIP; IPIs raise SSIP; remote fences
# sfence.vma) and counts the calls it sees. The same OS runs with the fast path (the firmware sees
# only the final call) and without (it sees all of them); the OS cannot tell the difference, except
# that the fast path rejects a hart mask naming a hart that does not exist.
SBI = PAGE_TABLES + r"""
  .equ EID_TIME, 0x54494D45
  .equ EID_IPI, 0x735049
  .equ EID_RFNC, 0x52464E43
  csrw satp, x0
  lla t0, fw_trap
  csrw mtvec, t0
  li t0, 0x222
  csrw mideleg, t0
  li t0, 7
  csrw mcounteren, t0
  li s11, 0
  SET_MPP 1
  lla t0, s_main
  csrw mepc, t0
  mret

  .align 2
fw_trap:
  csrr s8, mcause
  bltz s8, fw_irq
  li s9, 9
  bne s8, s9, fw_bad
  addi s11, s11, 1
  csrr s9, mepc
  addi s9, s9, 4
  csrw mepc, s9
  li s9, EID_TIME
  beq a7, s9, fw_set_timer
  beqz a7, fw_set_timer
  li s9, EID_IPI
  beq a7, s9, fw_ipi
  li s9, EID_RFNC
  beq a7, s9, fw_rfnc
  li s9, 0x4d
  beq a7, s9, fw_done
  li a0, -2
  mret
fw_set_timer:
  li s9, CLINT_MTIMECMP
  sd a0, 0(s9)
  li s9, 0x20
  csrc mip, s9
  li s9, 0x80
  csrs mie, s9
  li a0, 0
  li a1, 0
  mret
fw_irq:
  slli s8, s8, 1
  li s9, 7 << 1
  bne s8, s9, fw_bad
  li s9, 0x20
  csrs mip, s9
  li s9, 0x80
  csrc mie, s9
  mret
fw_ipi:
  csrsi mip, 2
  li a0, 0
  li a1, 0
  mret
fw_rfnc:
  sfence.vma
  li a0, 0
  li a1, 0
  mret
fw_done:
  CHECK s11, FW_CALLS
  PASS
fw_bad: FAIL

  # Sleeps until \reg == \value (sstatus.SIE off around the test and wfi, so no wake-up is lost)
  .macro WAIT_S reg, value
71: csrci sstatus, 2
  li t0, \value
  beq \reg, t0, 72f
  wfi
  csrsi sstatus, 2
  j 71b
72: csrsi sstatus, 2
  .endm
s_main:
  lla t0, s_trap
  csrw stvec, t0
  li t0, 0x22
  csrs sie, t0
  csrsi sstatus, 2
  li s2, 0
  li s3, 0
  # TIME set_timer 200 us ahead, then wait for the supervisor timer interrupt
  rdtime t0
  li t1, 2000
  add a0, t0, t1
  mv a3, a0
  li a7, EID_TIME
  li a6, 0
  li a1, 0x77
  ecall
  CHECK a0, 0
  CHECK a1, 0
  csrr t0, sip
  CHECK t0, 0
  WAIT_S s2, 1
  rdtime t2
  bltu t2, a3, s_bad
  csrr t0, sip
  CHECK t0, 0
  # Legacy set_timer with a deadline already passed: at once
  li a0, 0
  li a7, 0
  ecall
  CHECK a0, 0
  WAIT_S s2, 2
  # IPI to this hart, by mask and by base -1
  li a0, 1
  li a1, 0
  li a7, EID_IPI
  li a6, 0
  ecall
  CHECK a0, 0
7: beqz s3, 7b
  li a0, 0
  li a1, -1
  ecall
  CHECK a0, 0
7: li t0, 2
  bne s3, t0, 7b
  .if OFFLOAD
  li a0, 2
  li a1, 0
  ecall
  CHECK a0, -3
  .endif
  # Remote fences: a stale translation is gone after remote_sfence_vma
  li a7, EID_RFNC
  li a6, 0
  li a0, 1
  li a1, 0
  ecall
  CHECK a0, 0
  la t0, pt_root
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  li a4, 0x1000
  ld a5, 0(a4)
  CHECK a5, 0xaaaa
  lla t0, page_b
  srli t0, t0, 12
  slli t0, t0, 10
  ori t0, t0, 0xc7
  lla t1, pt_l0
  sd t0, 8(t1)
  li a0, 1
  li a1, 0
  li a2, 0
  li a3, -1
  li a6, 1
  ecall
  CHECK a0, 0
  ld a5, 0(a4)
  CHECK a5, 0xbbbb
  # remote_sfence_vma_asid (a4 = ASID 0) drops it too
  lla t0, page_a
  srli t0, t0, 12
  slli t0, t0, 10
  ori t0, t0, 0xc7
  lla t1, pt_l0
  sd t0, 8(t1)
  li a0, 1
  li a1, 0
  li a2, 0
  li a3, -1
  li a4, 0
  li a6, 2
  ecall
  CHECK a0, 0
  li t2, 0x1000
  ld a5, 0(t2)
  CHECK a5, 0xaaaa
  csrw satp, x0
  sfence.vma
  li a7, 0x4d
  ecall
s_bad: FAIL

  .align 2
s_trap:
  csrr s4, scause
  bgez s4, s_bad
  slli s4, s4, 1
  li s5, 5 << 1
  beq s4, s5, s_sti
  li s5, 1 << 1
  bne s4, s5, s_bad
  addi s3, s3, 1
  csrci sip, 2
  sret
s_sti:
  addi s2, s2, 1
  mv s4, a0
  mv s5, a7
  mv s6, a6
  li a0, -1
  li a7, EID_TIME
  li a6, 0
  ecall
  mv a0, s4
  mv a7, s5
  mv a6, s6
  sret
""" + PAGE_DATA


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_sbi_offload(asm, offload, tmp_path):
    args = ("--offload",) if offload else ("--no-offload",)
    stats = run(asm, SBI, *args, defs={"OFFLOAD": int(offload), "FW_CALLS": 1 if offload else 10},
                stats=tmp_path / "stats.json")
    assert stats["sbi"]["TIME"] == {"set_timer": 3}
    assert stats["sbi"]["legacy"] == {"set_timer": 1}
    assert stats["sbi"]["RFNC"] == {"remote_fence_i": 1, "remote_sfence_vma": 1, "remote_sfence_vma_asid": 1}
    if offload:
        assert stats["sbi"]["IPI"] == {"send_ipi": 3}
        assert stats["offloaded"] == {"set_timer": 4, "timer_interrupt": 2, "send_ipi": 3,
                                      "remote_fence_i": 1, "remote_sfence_vma": 1, "remote_sfence_vma_asid": 1}
        assert stats["world_switches"] == {"to_os": 1, "to_firmware": 1}
    else:
        assert stats["offloaded"] == {}
        assert stats["world_switches"]["to_firmware"] == 12
    assert stats["interrupts"] == {"MTI": 2}
    assert "illegal_insn" not in stats["os_traps"]  # rdtime is native


# The fast path next to a real firmware: Debian's OpenSBI 1.1 boots an S-mode payload that uses
# the timer, an IPI to itself and a remote fence. With the fast path OpenSBI never sees those
# calls; without it OpenSBI serves them. The payload behaves the same either way.
OPENSBI_PAYLOAD = r"""
  .section .text.init, "ax"
  .globl _start
_start:
  lla t0, strap
  csrw stvec, t0
  li t0, 0x22
  csrs sie, t0
  li s2, 0
  li s3, 0
  rdtime a0
  li t0, 10000
  add a0, a0, t0
  li a7, 0x54494D45
  li a6, 0
  ecall
  bnez a0, bad
1: csrci sstatus, 2
  bnez s2, 2f
  wfi
  csrsi sstatus, 2
  j 1b
2: csrsi sstatus, 2
  li a0, 1
  li a1, 0
  li a7, 0x735049
  li a6, 0
  ecall
  bnez a0, bad
3: beqz s3, 3b
  li a0, 1
  li a1, 0
  li a2, 0
  li a3, -1
  li a7, 0x52464E43
  li a6, 1
  ecall
  bnez a0, bad
  lla s0, ok
  call puts
shutdown:
  li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 0
  ecall
4: j 4b
bad:
  lla s0, badmsg
  call puts
  j shutdown
puts:
  mv s1, ra
5: lbu a0, 0(s0)
  beqz a0, 6f
  li a7, 1
  ecall
  addi s0, s0, 1
  j 5b
6: mv ra, s1
  ret
  .align 2
strap:
  csrr t0, scause
  li t1, 0x8000000000000005
  beq t0, t1, 7f
  li t1, 0x8000000000000001
  bne t0, t1, bad
  addi s3, s3, 1
  csrci sip, 2
  sret
7: addi s2, s2, 1
  mv s4, a0
  mv s5, a6
  mv s6, a7
  li a0, -1
  li a6, 0
  li a7, 0x54494D45
  ecall
  mv a0, s4
  mv a6, s5
  mv a7, s6
  sret
ok: .asciz "payload: sbi ok\n"
badmsg: .asciz "payload: sbi FAILED\n"
"""


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_offload_under_opensbi(asm, offload, tmp_path):
    from tests.guest import build as guest_build
    from tests.test_opensbi import FW_DIR

    firmware = FW_DIR / "fw_jump.elf"
    if not firmware.exists():
        pytest.fail("Debian's opensbi package is missing: run `just setup`")
    payload = guest_build.build(OPENSBI_PAYLOAD, prelude=False, ld=guest_build.PAYLOAD_LD)
    stats = tmp_path / "stats.json"
    r = mirage("jit-run", str(firmware), "--kernel", str(payload), "--max-insns", "300000000",
               "--stats", str(stats), *(() if offload else ("--no-offload",)), timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert "payload: sbi ok" in out, out[-2000:]
    vfm = json.loads(stats.read_text())["vfm"]
    assert vfm["sbi"]["TIME"] == {"set_timer": 2}
    assert vfm["sbi"]["IPI"] == {"send_ipi": 1}
    if offload:
        assert vfm["offloaded"] == {"set_timer": 2, "timer_interrupt": 1, "send_ipi": 1, "remote_sfence_vma": 1,
                                    "console_putchar": len("payload: sbi ok\n")}
    else:
        assert vfm["offloaded"] == {}
        assert vfm["interrupts"]["MTI"] >= 1 and vfm["interrupts"]["MSI"] >= 1
