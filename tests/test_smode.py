"""The S/U machine: traps and delegation, sret, stvec, S-level interrupts, Sv39 and the translation
cache under virtual memory, checked by guest programs that run in S- and U-mode.

Every program is a firmware prologue (tests/guest/smode.S: page tables, medeleg/mideleg, mret to
S-mode), a test body in S-mode and the shared trap handlers. `CHECK`, `CHECK_EQ`, `CHECK_BITS`,
`TRY_S`, `TRY_M`, `TRY_U`, `TRY_UM` and a bare `FAIL` are numbered automatically, so a failing run
names the source line of the check that failed; an unexpected trap names its level, cause and epc.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench import build as bench_build
from tests.bench import run as bench_run
from tests.conftest import mirage

SMODE = (Path(__file__).parent / "guest" / "smode.S").read_text()
_NUMBERED = re.compile(r"^(\s*(?:\w+:\s*)?)(CHECK|CHECK_EQ|CHECK_BITS|TRY_S|TRY_M|TRY_U|TRY_UM|FAIL)\b(.*)$")


def _number(body: str) -> tuple[str, dict[int, str]]:
    """Gives every check its own FAIL number (the first macro argument); returns the program text
    and number -> source line."""
    out, where = [], {}
    for lineno, line in enumerate(body.splitlines(), 1):
        m = _NUMBERED.match(line)
        if m and not (m.group(2) == "FAIL" and m.group(3).strip()):
            n = len(where) + 1
            args = m.group(3).strip()
            line = f"{m.group(1)}{m.group(2)} {n}" + (f", {args}" if args else "")
            where[n] = f"line {lineno}: {m.group(2)} {args}".rstrip()
        out.append(line)
    return "\n".join(out), where


def program(body: str, symbols: dict[str, int] | None = None) -> tuple[str, dict[int, str]]:
    """The whole program: assembler symbols, firmware boot to S-mode, the body (ending in PASS),
    the handlers."""
    text, where = _number(body)
    equs = "".join(f"  .equ {k}, {v}\n" for k, v in (symbols or {}).items())
    return f"{SMODE}\n{equs}  SMODE_BOOT\n{text}\n  PASS\n  SMODE_SUPPORT\n", where


def run(asm, body: str, *args: str, symbols: dict[str, int] | None = None) -> None:
    """Builds and runs an S-mode program; fails naming the check that failed or the stray trap."""
    text, where = program(body, symbols)
    # Real-time timer tests are bounded by the time limit: the guest may spin fast between ticks.
    limit = "50000000" if "--icount" in args or "TICK" not in body else "20000000000"
    r = mirage("jit-run", "--max-insns", limit, *args, str(asm(text)), timeout=60)
    if r.returncode == 0:
        return
    err = r.stderr.decode(errors="replace")
    m = re.search(r"test (\d+) failed", err)
    if m and int(m.group(1)) >= 1_000_000_000:
        n = int(m.group(1))
        level = "S-mode" if n < 2_000_000_000 else "the firmware"
        code = n % 1_000_000_000
        cause = code >> 20
        kind = f"interrupt {cause - 32}" if cause >= 32 else f"exception {cause}"
        pytest.fail(f"unexpected trap to {level}: {kind}, epc low bits {code & 0xFFFFF:#x}\n{err}")
    if m:
        pytest.fail(f"check {m.group(1)} failed ({where.get(int(m.group(1)), '?')})\n{err}")
    pytest.fail(f"mirage exited with {r.returncode}\n{err}")


# Exceptions taken in S-mode (privileged spec 4.1.8-4.1.9: scause, sepc, stval).
EXCEPTIONS = r"""
  VM_ON
  # Illegal instruction: stval holds the instruction bits.
  TRY_S .word 0x1234500b
  CHECK s8, 2
  CHECK_EQ s9, s5
  CHECK s10, 0x1234500b
  TRY_S csrr a0, mstatus
  CHECK s8, 2
  CHECK s10, 0x30002573
  TRY_S mret
  CHECK s8, 2
  CHECK s10, 0x30200073
  # A reserved compressed encoding (c.lui with a zero immediate): the 16 instruction bits.
  .option rvc
  TRY_S .hword 0x6501
  .option norvc
  CHECK s8, 2
  CHECK_EQ s9, s5
  CHECK s10, 0x6501
  # Breakpoint: stval = the address of the ebreak.
  TRY_S ebreak
  CHECK s8, 3
  CHECK_EQ s9, s5
  CHECK_EQ s10, s5
  # Misaligned accesses: stval = the faulting address.
  la a0, data_word
  addi a0, a0, 1
  TRY_S ld a1, 0(a0)
  CHECK s8, 4
  CHECK_EQ s9, s5
  CHECK_EQ s10, a0
  TRY_S lw a1, 2(a0)
  CHECK s8, 4
  addi a2, a0, 2
  CHECK_EQ s10, a2
  TRY_S sd a1, 0(a0)
  CHECK s8, 6
  CHECK_EQ s10, a0
  TRY_S sh a1, 0(a0)
  CHECK s8, 6
  CHECK_EQ s10, a0
  addi a2, a0, 1
  TRY_S amoadd.w a1, a1, (a2)
  CHECK s8, 6
  CHECK_EQ s10, a2
  # Access faults: a mapped virtual page with nothing behind it (PA 0x1000).
  li a0, 0x1008
  TRY_S ld a1, 0(a0)
  CHECK s8, 5
  CHECK_EQ s9, s5
  CHECK s10, 0x1008
  TRY_S sw a1, 0(a0)
  CHECK s8, 7
  CHECK s10, 0x1008
  TRY_S jalr a0
  CHECK s8, 1
  CHECK s9, 0x1008
  CHECK s10, 0x1008
  # Page faults: nothing mapped at 6 GiB; stval = the virtual address.
  li a0, 0x180000010
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s9, s5
  CHECK_EQ s10, a0
  TRY_S sb a1, 0(a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  TRY_S amoswap.d a1, a1, (a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  TRY_S jalr a0
  CHECK s8, 12
  CHECK_EQ s9, a0
  CHECK_EQ s10, a0
  # A 4-byte instruction whose second half is on an unmapped page: stval = that half's address,
  # sepc = the instruction's (privileged spec 4.1.9).
  la t2, split_page
  PTE pt_l0, 40, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  li a0, TEST_VA + 0x28000 + 4094
  TRY_S jalr a0
  CHECK s8, 12
  CHECK_EQ s9, a0
  addi a1, a0, 2
  CHECK_EQ s10, a1
  # Environment calls: from U (8) and from S (9).
  TRY_U u_ecall
  CHECK s8, 8
  LA_U a0, u_ecall
  CHECK_EQ s9, a0
  CHECK s10, 0
  CHECK_BITS s7, SSTATUS_SPP, 0
  # Privileged instructions and S-level CSRs from U-mode are illegal.
  TRY_U u_sret
  CHECK s8, 2
  CHECK s10, 0x10200073
  TRY_U u_csr
  CHECK s8, 2
  CHECK s10, 0x10002573
  TRY_U u_wfi
  CHECK s8, 2
  CHECK s10, 0x10500073
  TRY_U u_sfence
  CHECK s8, 2
  CHECK s10, 0x12000073
  # medeleg bit 9 may delegate ecall from S to S-mode itself (privileged spec 3.1.8: only
  # ecall from M is not delegable). Last: the firmware services are unreachable afterwards.
  li a0, MEDELEG_ALL
  SBI SBI_MEDELEG
  TRY_S ecall
  CHECK s8, 9
  CHECK_EQ s9, s5
  CHECK_BITS s7, SSTATUS_SPP, SSTATUS_SPP
  j 90f

  .align 2
u_ecall: ecall
u_sret: sret
u_csr: csrr a0, sstatus
u_wfi: wfi
u_sfence: sfence.vma
  .align 12
split_page:
  .fill 1023, 4, 0x00000013
  .hword 0
  .hword 0x0513
  .data
  .align 3
data_word: .dword 0, 0
  .text
90:
"""


def test_exceptions_in_s_mode(asm):
    run(asm, EXCEPTIONS)


# Traps that medeleg does not delegate go to the firmware's mtvec (privileged spec 3.1.8).
NOT_DELEGATED = r"""
  VM_ON
  # A load page fault from S-mode with medeleg[13] clear.
  li a0, MEDELEG_DEFAULT & ~(1 << 13)
  SBI SBI_MEDELEG
  li a0, 0x180000020
  TRY_M ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s9, s5
  CHECK_EQ s10, a0
  CHECK_BITS s7, MSTATUS_MPP, MSTATUS_MPP_S
  # The same fault from U-mode goes to the firmware too, with MPP = U.
  li a0, 0x180000028
  TRY_UM u_load
  CHECK s8, 13
  CHECK_EQ s10, a0
  LA_U a1, u_load
  CHECK_EQ s9, a1
  CHECK_BITS s7, MSTATUS_MPP, 0
  # An illegal instruction in U-mode with medeleg[2] clear: mtval = the instruction bits.
  li a0, MEDELEG_DEFAULT & ~(1 << 2)
  SBI SBI_MEDELEG
  TRY_UM u_illegal
  CHECK s8, 2
  CHECK s10, 0x30002573
  CHECK_BITS s7, MSTATUS_MPP, 0
  # Still delegated: a breakpoint in S-mode goes to S.
  TRY_S ebreak
  CHECK s8, 3
  # ecall from S is not delegated: every service call reached the firmware with mcause 9.
  li a0, MEDELEG_DEFAULT & ~(1 << 8)
  li a7, SBI_MEDELEG
10: ecall
  la a1, m_ecall_info
  ld a2, 0(a1)
  CHECK a2, 9
  ld a2, 8(a1)
  la a3, 10b
  CHECK_EQ a2, a3
  ld a2, 16(a1)
  CHECK a2, 1
  # ecall from U with medeleg[8] clear: the firmware sees mcause 8 and MPP = U, then returns to
  # U-mode, whose ebreak (delegated) ends the attempt.
  TRY_U u_service
  CHECK s8, 3
  la a1, m_ecall_info
  ld a2, 0(a1)
  CHECK a2, 8
  ld a2, 16(a1)
  CHECK a2, 0
  ld a2, 8(a1)
  LA_U a3, u_service
  addi a3, a3, 8
  CHECK_EQ a2, a3
  j 90f

  .align 2
u_load: ld a1, 0(a0)
u_illegal: csrr a0, mstatus
u_service:
  li a0, 0
  li a7, SBI_MIP_CLEAR
  ecall
  ebreak
90:
"""


def test_non_delegated_traps_go_to_the_firmware(asm):
    run(asm, NOT_DELEGATED)


# sret and the trap-entry stack of sstatus (privileged spec 3.1.6.1, 3.3.2, 4.1.1).
SRET = r"""
  VM_ON
  # sret to S: SIE = SPIE, SPIE = 1, SPP = U.
  li t0, SSTATUS_SIE
  csrc sstatus, t0
  li t0, SSTATUS_SPIE | SSTATUS_SPP
  csrs sstatus, t0
  la t0, 10f
  csrw sepc, t0
  sret
  FAIL
10: csrr a0, sstatus
  CHECK_BITS a0, SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP, SSTATUS_SIE | SSTATUS_SPIE
  li t0, SSTATUS_SIE | SSTATUS_SPIE
  csrc sstatus, t0
  li t0, SSTATUS_SPP
  csrs sstatus, t0
  la t0, 11f
  csrw sepc, t0
  sret
  FAIL
11: csrr a0, sstatus
  CHECK_BITS a0, SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP, SSTATUS_SPIE
  # A trap from S: SPP = S, SPIE = the old SIE, SIE = 0 (seen by the handler).
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  TRY_S ebreak
  CHECK_BITS s7, SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP, SSTATUS_SPIE | SSTATUS_SPP
  csrr a0, sstatus
  CHECK_BITS a0, SSTATUS_SIE, SSTATUS_SIE
  li t0, SSTATUS_SIE
  csrc sstatus, t0
  TRY_S ebreak
  CHECK_BITS s7, SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP, SSTATUS_SPP
  # sret with SPP = U runs U-mode code: it cannot read sstatus, and the trap says SPP = U.
  TRY_U u_csr
  CHECK s8, 2
  CHECK_BITS s7, SSTATUS_SPP, 0
  LA_U a0, u_csr
  CHECK_EQ s9, a0
  # sepc[0] is always zero (IALIGN = 16).
  li a0, 0x80000003
  csrw sepc, a0
  csrr a1, sepc
  CHECK a1, 0x80000002
  # sscratch, stval, scause are plain read/write registers.
  li a0, 0x0123456789abcdef
  csrw sscratch, a0
  csrr a1, sscratch
  CHECK_EQ a0, a1
  # TSR, TVM and TW from the firmware's mstatus (privileged spec 3.1.6.5): sret, satp and
  # sfence.vma, wfi become illegal in S-mode. Illegal instructions go to the firmware meanwhile,
  # since the S handler itself returns with sret.
  li a0, MEDELEG_DEFAULT & ~(1 << 2)
  SBI SBI_MEDELEG
  li a0, MSTATUS_TSR | MSTATUS_TVM | MSTATUS_TW
  SBI SBI_MSTATUS_SET
  TRY_M sret
  CHECK s8, 2
  CHECK s10, 0x10200073
  TRY_M csrr a0, satp
  CHECK s8, 2
  TRY_M sfence.vma
  CHECK s8, 2
  TRY_M wfi
  CHECK s8, 2
  li a0, MSTATUS_TSR | MSTATUS_TVM | MSTATUS_TW
  SBI SBI_MSTATUS_CLEAR
  li a0, MEDELEG_DEFAULT
  SBI SBI_MEDELEG
  csrr a0, satp
  sfence.vma
  # sstatus.FS (privileged spec 3.1.6.6): Off makes FP instructions illegal in S and U; an FP
  # instruction in U-mode sets FS = Dirty, which SD summarizes (a kernel saves FP state on that).
  li t0, 3 << 13
  csrc sstatus, t0
  TRY_S fadd.d f0, f1, f2
  CHECK s8, 2
  CHECK s10, 0x0220f053
  TRY_U u_fp
  CHECK s8, 2
  CHECK s10, 0x0220f053
  csrr a0, sstatus
  CHECK_BITS a0, (3 << 13) | (1 << 63), 0
  li t0, 1 << 13
  csrs sstatus, t0
  csrr a0, sstatus
  CHECK_BITS a0, (3 << 13) | (1 << 63), 1 << 13
  TRY_U u_fp
  CHECK s8, 8
  csrr a0, sstatus
  CHECK_BITS a0, (3 << 13) | (1 << 63), (3 << 13) | (1 << 63)
  CHECK_BITS a0, 3 << 32, 2 << 32
  # Counters from U-mode need scounteren (and the firmware's mcounteren, all set here).
  csrw scounteren, zero
  TRY_U u_time
  CHECK s8, 2
  CHECK s10, 0xc0102573
  TRY_U u_cycle
  CHECK s8, 2
  li t0, 7
  csrw scounteren, t0
  csrr a0, scounteren
  CHECK a0, 7
  TRY_U u_time
  CHECK s8, 8
  TRY_U u_cycle
  CHECK s8, 8
  j 90f

  .align 2
u_csr: csrr a0, sstatus
u_fp:
  fadd.d f0, f1, f2
  ecall
u_time:
  rdtime a0
  ecall
u_cycle:
  rdcycle a0
  ecall
90:
"""


def test_sret_and_sstatus_stack(asm):
    run(asm, SRET)


def _vector_table() -> str:
    entries = "\n".join(f"  j 80{i:02d}f" for i in range(16))
    stubs = "\n".join(f"80{i:02d}: li s4, {i}\n  j s_trap" for i in range(16))
    return f"  .align 8\nvec_table:\n{entries}\n{stubs}\n"


# stvec (privileged spec 4.1.2): direct mode, and vectored mode where only interrupts are vectored.
STVEC = r"""
  VM_ON
  la a0, vec_table
  ori a0, a0, 1
  csrw stvec, a0
  csrr a1, stvec
  CHECK_EQ a0, a1
  # Exceptions go to BASE.
  li s4, -1
  TRY_S ebreak
  CHECK s4, 0
  CHECK s8, 3
  # Interrupts go to BASE + 4 * cause: SSI (1), STI (5), SEI (9).
  li s4, -1
  li t0, MIP_SSIP
  csrs sie, t0
  csrs sip, t0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  CHECK s4, 1
  li t0, MIP_SSIP
  csrc sip, t0
  li a0, MIP_STIP
  SBI SBI_MIP_SET
  li t0, MIP_STIP
  csrs sie, t0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  CHECK s4, 5
  li a0, MIP_STIP | MIP_SEIP
  SBI SBI_MIP_CLEAR
  li a0, MIP_SEIP
  SBI SBI_MIP_SET
  li t0, MIP_SEIP
  csrs sie, t0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  CHECK s4, 9
  li a0, MIP_SEIP
  SBI SBI_MIP_CLEAR
  la a1, irq_area
  ld a2, 0(a1)
  CHECK a2, 3
  # MODE is WARL: a reserved mode (2) keeps vectored mode.
  la a0, vec_table
  ori a0, a0, 2
  csrw stvec, a0
  csrr a1, stvec
  CHECK_BITS a1, 3, 1
  # Back to direct mode: interrupts go to BASE too.
  la a0, s_trap
  csrw stvec, a0
  csrr a1, stvec
  CHECK_EQ a0, a1
  li s4, -1
  li t0, MIP_SSIP
  csrs sie, t0
  csrs sip, t0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  CHECK s4, -1
  la a1, irq_area
  ld a2, 0(a1)
  CHECK a2, 4
  li t0, MIP_SSIP
  csrc sip, t0
  j 90f
""" + _vector_table() + "90:\n"


def test_stvec_direct_and_vectored(asm):
    run(asm, STVEC)


# S-level interrupts (privileged spec 4.1.3 and 3.1.9).
INTERRUPTS = r"""
  VM_ON
  # SSIP set by software through sip, enabled by sie.SSIE: not taken in S-mode while SIE = 0.
  li t0, MIP_SSIP
  csrs sie, t0
  csrs sip, t0
  nop
  nop
  la s1, irq_area
  ld a0, 0(s1)
  CHECK a0, 0
  csrr a0, sip
  CHECK_BITS a0, MIP_SSIP, MIP_SSIP
  li t0, SSTATUS_SIE
  csrs sstatus, t0
10: csrc sstatus, t0
  ld a0, 0(s1)
  CHECK a0, 1
  ld a0, 8(s1)
  CHECK a0, IRQ | 1
  ld a0, 136(s1)
  la a1, 10b
  CHECK_EQ a0, a1
  csrr a0, sie
  CHECK_BITS a0, MIP_SSIP, 0
  li t0, MIP_SSIP
  csrc sip, t0
  csrr a0, sip
  CHECK_BITS a0, MIP_SSIP, 0
  # In U-mode an enabled S-level interrupt is taken whatever sstatus.SIE.
  sd zero, 0(s1)
  li t0, MIP_SSIP
  csrs sie, t0
  csrs sip, t0
  TRY_U u_wait_irq
  CHECK s8, 8
  ld a0, 0(s1)
  CHECK a0, 1
  ld a0, 8(s1)
  CHECK a0, IRQ | 1
  ld a0, 136(s1)
  LA_U a1, u_wait_irq
  bltu a0, a1, 11f
  LA_U a1, u_wait_end
  bgeu a0, a1, 11f
  j 12f
11: FAIL
  # ... but not when its sie bit is clear.
12: sd zero, 0(s1)
  TRY_U u_ecall
  CHECK s8, 8
  ld a0, 0(s1)
  CHECK a0, 0
  li t0, MIP_SSIP
  csrc sip, t0
  # STIP and SEIP are read-only in sip; the firmware sets them in mip.
  li t0, MIP_STIP | MIP_SEIP
  csrs sip, t0
  csrr a0, sip
  CHECK_BITS a0, MIP_STIP | MIP_SEIP, 0
  li a0, MIP_STIP
  SBI SBI_MIP_SET
  csrr a0, sip
  CHECK_BITS a0, MIP_STIP | MIP_SEIP | MIP_SSIP, MIP_STIP
  li t0, MIP_STIP
  csrc sip, t0
  csrr a0, sip
  CHECK_BITS a0, MIP_STIP, MIP_STIP
  # Priority among S-level interrupts: SEI, SSI, STI.
  li a0, MIP_SEIP
  SBI SBI_MIP_SET
  li t0, MIP_SSIP
  csrs sip, t0
  li t0, MIP_SSIP | MIP_STIP | MIP_SEIP
  csrs sie, t0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  ld a0, 0(s1)
  CHECK a0, 3
  ld a0, 8(s1)
  CHECK a0, IRQ | 9
  ld a0, 16(s1)
  CHECK a0, IRQ | 1
  ld a0, 24(s1)
  CHECK a0, IRQ | 5
  li a0, MIP_STIP | MIP_SEIP
  SBI SBI_MIP_CLEAR
  li t0, MIP_SSIP
  csrc sip, t0
  # Bits of interrupts not delegated by mideleg are read-only zero in sie and sip.
  li a0, MIP_SSIP
  SBI SBI_MIDELEG
  li t0, MIP_STIP | MIP_SEIP
  csrs sie, t0
  csrr a0, sie
  CHECK_BITS a0, MIP_STIP | MIP_SEIP, 0
  li a0, MIP_SSIP | MIP_STIP | MIP_SEIP
  SBI SBI_MIDELEG
  j 90f

  .align 2
u_wait_irq:
  la t1, irq_area
20: ld t2, 0(t1)
  beqz t2, 20b
u_wait_end:
  ecall
u_ecall: ecall
90:
"""


# Every tier: the interpreter, cold compiled code, optimized code (sstatus writes that set SIE
# while an interrupt is pending take the slow path in all of them).
TIERS = {"interp": ("--warm-threshold", "1000000000"), "cold": ("--warm-threshold", "0"),
         "optimized": ("--warm-threshold", "0", "--hot-threshold", "0")}


@pytest.mark.parametrize("tier", TIERS)
def test_interrupts_enables_and_priorities(asm, tier):
    run(asm, INTERRUPTS, *TIERS[tier])


# The machine timer (CLINT mtimecmp) is an M-level interrupt: it reaches the firmware even while
# S-mode runs, which forwards it as STIP (as OpenSBI does); wfi wakes on it. Checks of *when* it
# fires are STRICT-only (--icount): in real time, mtime runs on while the JIT compiles.
TIMER = r"""
  VM_ON
  la s1, irq_area
  la s2, m_timer_info
  # S-mode busy loop: the M timer goes to the firmware (mcause 7, MPP = S, mepc in the loop).
  li t0, MIP_STIP
  csrs sie, t0
  rdtime a0
  addi a0, a0, 500
  SBI SBI_SET_TIMER
  # (Waits on the firmware's count in memory: a native loop, no callout per iteration.)
10: ld a0, 0(s2)
  beqz a0, 10b
11: CHECK a0, 1
  csrr a1, sip
  CHECK_BITS a1, MIP_STIP, MIP_STIP
  ld a0, 24(s2)
  CHECK a0, IRQ | 7
  ld a0, 16(s2)
  CHECK a0, 1
  .if STRICT
  ld a0, 8(s2)
  la a1, 10b
  bltu a0, a1, 12f
  la a1, 11b
  bgeu a0, a1, 12f
  j 13f
12: FAIL
  .endif
  # STIP is pending and enabled, SIE = 0: not taken until SIE = 1.
13: ld a0, 0(s1)
  CHECK a0, 0
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  csrc sstatus, t0
  ld a0, 0(s1)
  CHECK a0, 1
  ld a0, 8(s1)
  CHECK a0, IRQ | 5
  # wfi with SIE = 0 wakes on the (locally enabled) interrupt without taking it.
  li t0, MIP_STIP
  csrs sie, t0
  rdtime a0
  li t0, 100000
  add a0, a0, t0
  SBI SBI_SET_TIMER
  .if STRICT
  csrr a1, sip
  CHECK_BITS a1, MIP_STIP, 0
  .endif
14: wfi
  csrr a1, sip
  andi a1, a1, MIP_STIP
  beqz a1, 14b
  ld a0, 0(s2)
  CHECK a0, 2
  ld a0, 0(s1)
  CHECK a0, 1
  # wfi with SIE = 1: the interrupt is taken, sepc = the instruction after wfi.
  li a0, -1
  SBI SBI_SET_TIMER
  li t0, MIP_STIP
  csrs sie, t0
  rdtime a0
  li t0, 100000
  add a0, a0, t0
  SBI SBI_SET_TIMER
  li t0, SSTATUS_SIE
  csrs sstatus, t0
  li t1, 2
15: ld a0, 0(s1)
  bge a0, t1, 17f
  wfi
16: j 15b
17: li t0, SSTATUS_SIE
  csrc sstatus, t0
  CHECK a0, 2
  ld a0, 16(s1)
  CHECK a0, IRQ | 5
  .if STRICT
  ld a0, 144(s1)
  la a1, 16b
  CHECK_EQ a0, a1
  .endif
  ld a0, 0(s2)
  CHECK a0, 3
  li a0, -1
  SBI SBI_SET_TIMER
  # The time CSR is a read-only shadow of mtime (privileged spec 3.2.1), also after a write to
  # mtime; timers set from it then fire as usual.
  li s3, CLINT_MTIME
  li a0, 1 << 40
  sd a0, 0(s3)
  rdtime a1
  bgeu a1, a0, 20f
  FAIL
20: ld a2, 0(s3)
  rdtime a3
  bgeu a3, a2, 21f
  FAIL
21: li t0, 1 << 41
  bltu a3, t0, 22f
  FAIL
22: li t0, MIP_STIP
  csrs sie, t0
  rdtime a0
  li t0, 100000
  add a0, a0, t0
  SBI SBI_SET_TIMER
  .if STRICT
  csrr a1, sip
  CHECK_BITS a1, MIP_STIP, 0
  .endif
23: wfi
  ld a0, 0(s2)
  li t0, 4
  bne a0, t0, 23b
  li a0, -1
  SBI SBI_SET_TIMER
"""


@pytest.mark.parametrize("mode", ["realtime", "icount"])
def test_timer_interrupts_and_wfi(asm, mode):
    strict = mode == "icount"
    run(asm, TIMER, *(["--icount"] if strict else []), symbols={"STRICT": int(strict)})


# Sv39 (privileged spec 4.3-4.4).
SV39 = r"""
  VM_ON
  la a0, frame_a
  li a1, 0xaaaa
  sd a1, 0(a0)
  la a0, frame_b
  li a1, 0xbbbb
  sd a1, 0(a0)
  la a0, frame_b + 0x800
  li a1, 0xbbbb0800
  sd a1, 0(a0)
  # 4 KiB page.
  la t2, frame_a
  PTE pt_l0, 1, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li a0, TEST_VA + 0x1000
  ld a1, 0(a0)
  CHECK a1, 0xaaaa
  li a1, 0x5a5a
  sd a1, 8(a0)
  la a2, frame_a
  ld a3, 8(a2)
  CHECK a3, 0x5a5a
  # 2 MiB superpage at 0xC020_0000 -> RAM base (A and D left for the hardware to set).
  li t2, 0x80000000
  PTE pt_l1, 1, t2, PTE_V | PTE_R | PTE_W
  sfence.vma
  la a0, frame_b + 0x800
  li t0, 0x80000000 - 0xC0200000
  sub a0, a0, t0
  ld a1, 0(a0)
  CHECK a1, 0xbbbb0800
  PTE_ADDR a2, pt_l1, 1
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, PTE_A
  sd a1, 8(a0)
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, PTE_A | PTE_D
  # 1 GiB superpage at 4 GiB -> RAM base.
  li t2, 0x80000000
  PTE pt_root, 4, t2, PTE_V | PTE_R | PTE_A
  sfence.vma
  la a0, frame_b
  li t0, 0x100000000 - 0x80000000
  add a0, a0, t0
  ld a1, 0(a0)
  CHECK a1, 0xbbbb
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  # The upper half: VPN[2] = 258 is virtual address 0xFFFF_FFC0_8000_0000.
  li t2, 0x80000000
  PTE pt_root, 258, t2, PTE_V | PTE_R | PTE_A
  sfence.vma
  la a0, frame_b
  li t0, 0xFFFFFFC080000000 - 0x80000000
  add a0, a0, t0
  ld a1, 0(a0)
  CHECK a1, 0xbbbb
  # Misaligned superpages are page faults: 2 MiB -> RAM + 4 KiB, 1 GiB -> RAM + 2 MiB.
  li t2, 0x80001000
  PTE pt_l1, 2, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  li t2, 0x80200000
  PTE pt_root, 5, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li a0, 0xC0400000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s10, a0
  li a0, 0x140000000
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  # A walk that reads a PTE from where there is no memory: an access fault of the access's kind
  # (privileged spec 4.3.2 step 2).
  li t2, 0x1000
  PTE pt_l1, 3, t2, PTE_V
  sfence.vma
  li a0, 0xC0600000
  TRY_S ld a1, 0(a0)
  CHECK s8, 5
  CHECK_EQ s10, a0
  TRY_S sd a1, 0(a0)
  CHECK s8, 7
  TRY_S jalr a0
  CHECK s8, 1
  CHECK_EQ s10, a0
  # Invalid PTE.
  li a0, TEST_VA + 0x2000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s10, a0
  # W without R is reserved: a page fault for any access.
  la t2, frame_a
  PTE pt_l0, 3, t2, PTE_V | PTE_W | PTE_A | PTE_D
  sfence.vma
  li a0, TEST_VA + 0x3000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  # Reserved PTE bits 63:54 set: page fault.
  la t2, frame_a
  PTE pt_l0, 4, t2, PTE_V | PTE_R | PTE_A
  PTE_ADDR a2, pt_l0, 4
  ld a3, 0(a2)
  li t0, 1 << 60
  or a3, a3, t0
  sd a3, 0(a2)
  sfence.vma
  li a0, TEST_VA + 0x4000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  # A pointer PTE at the last level is a page fault.
  la t2, frame_a
  PTE pt_l0, 5, t2, PTE_V
  sfence.vma
  li a0, TEST_VA + 0x5000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  # Read-only page: loads work, stores fault; no X: fetch faults.
  la t2, frame_a
  PTE pt_l0, 6, t2, PTE_V | PTE_R | PTE_A
  sfence.vma
  li a0, TEST_VA + 0x6000
  ld a1, 0(a0)
  CHECK a1, 0xaaaa
  TRY_S sw a1, 4(a0)
  CHECK s8, 15
  addi a2, a0, 4
  CHECK_EQ s10, a2
  TRY_S jalr a0
  CHECK s8, 12
  CHECK_EQ s9, a0
  CHECK_EQ s10, a0
  # U pages from S-mode: a page fault unless sstatus.SUM; never executable from S.
  LA_U a0, frame_a
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s10, a0
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  li t0, SSTATUS_SUM
  csrs sstatus, t0
  ld a1, 0(a0)
  CHECK a1, 0xaaaa
  sd a1, 16(a0)
  LA_U a2, s_code
  TRY_S jalr a2
  CHECK s8, 12
  CHECK_EQ s10, a2
  li t0, SSTATUS_SUM
  csrc sstatus, t0
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  # S pages from U-mode: page faults for loads and fetches.
  la a0, frame_a
  TRY_U u_load
  CHECK s8, 13
  CHECK_EQ s10, a0
  la a0, s_code
  TRY_U u_jump
  CHECK s8, 12
  CHECK_EQ s9, a0
  CHECK_EQ s10, a0
  # MXR: loads from an execute-only page work only with sstatus.MXR.
  la t2, frame_a
  PTE pt_l0, 8, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  li a0, TEST_VA + 0x8000
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  li t0, SSTATUS_MXR
  csrs sstatus, t0
  ld a1, 0(a0)
  CHECK a1, 0xaaaa
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  li t0, SSTATUS_MXR
  csrc sstatus, t0
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  # A and D set by the hardware: A on a load, D on a store, A on a fetch.
  la t2, frame_b
  PTE pt_l0, 9, t2, PTE_V | PTE_R | PTE_W
  sfence.vma
  PTE_ADDR a2, pt_l0, 9
  li a0, TEST_VA + 0x9000
  ld a1, 0(a0)
  CHECK a1, 0xbbbb
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, PTE_A
  sd a1, 0x10(a0)
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, PTE_A | PTE_D
  la t2, s_code
  PTE pt_l0, 10, t2, PTE_V | PTE_X
  sfence.vma
  li a0, TEST_VA + 0xA000
  jalr a0
  CHECK a0, 77
  PTE_ADDR a2, pt_l0, 10
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, PTE_A
  # No A/D update on a faulting access.
  la t2, frame_b
  PTE pt_l0, 11, t2, PTE_V | PTE_R
  sfence.vma
  li a0, TEST_VA + 0xB000
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  PTE_ADDR a2, pt_l0, 11
  ld a3, 0(a2)
  CHECK_BITS a3, PTE_A | PTE_D, 0
  # sfence.vma after changing a PTE: the new frame is seen.
  la t2, frame_a
  PTE pt_l0, 12, t2, PTE_V | PTE_R | PTE_A
  sfence.vma
  li a0, TEST_VA + 0xC000
  ld a1, 0(a0)
  CHECK a1, 0xaaaa
  la t2, frame_b
  PTE pt_l0, 12, t2, PTE_V | PTE_R | PTE_A
  sfence.vma
  ld a1, 0(a0)
  CHECK a1, 0xbbbb
  # Bits 63:39 must all equal bit 38: otherwise a page fault, though the low 39 bits are mapped.
  la a0, frame_a
  li t0, 1 << 39
  or a0, a0, t0
  TRY_S ld a1, 0(a0)
  CHECK s8, 13
  CHECK_EQ s10, a0
  TRY_S sd a1, 0(a0)
  CHECK s8, 15
  CHECK_EQ s10, a0
  la a0, s_code
  li t0, 1 << 63
  or a0, a0, t0
  TRY_S jalr a0
  CHECK s8, 12
  CHECK_EQ s9, a0
  CHECK_EQ s10, a0
  # satp: an unsupported MODE leaves the register unchanged (privileged spec 4.1.11).
  csrr a0, satp
  srli a1, a0, 60
  CHECK a1, 8
  slli a1, a0, 4
  srli a1, a1, 4
  li t0, 9 << 60
  or a2, a1, t0
  csrw satp, a2
  csrr a3, satp
  CHECK_EQ a3, a0
  li t0, 10 << 60
  or a2, a1, t0
  csrw satp, a2
  csrr a3, satp
  CHECK_EQ a3, a0
  li t0, 6 << 60
  or a2, a1, t0
  csrw satp, a2
  csrr a3, satp
  CHECK_EQ a3, a0
  # Bare mode from S, then Sv39 again.
  csrw satp, zero
  sfence.vma
  csrr a1, satp
  CHECK a1, 0
  la a1, frame_a
  ld a2, 0(a1)
  CHECK a2, 0xaaaa
  csrw satp, a0
  sfence.vma
  li a1, TEST_VA + 0x1000
  ld a2, 0(a1)
  CHECK a2, 0xaaaa
  j 90f

  .align 12
s_code:
  li a0, 77
  ret
u_load: ld a1, 0(a0)
u_jump: jalr a0
  .bss
  .align 12
frame_a: .space 4096
frame_b: .space 4096
  .text
90:
"""


@pytest.mark.parametrize("tier", TIERS)
def test_sv39_translation_and_protection(asm, tier):
    run(asm, SV39, *TIERS[tier])


# sstatus from S-mode: reads (UXL = 2, SD summarizing FS), and the accesses that only clear or
# keep SIE, which compiled code completes inline, mixed with ones that must take the slow path
# (SIE rising, FS, SUM); every value is checked after each step.
SSTATUS_OPS = r"""
  li t0, 3 << 13
  csrc sstatus, t0
  li t0, 1 << 13
  csrs sstatus, t0
  csrr s1, sstatus
  CHECK_BITS s1, (3 << 32) | (1 << 63) | (3 << 13), (2 << 32) | (1 << 13)
  li t0, 3 << 13
  csrs sstatus, t0
  csrr s1, sstatus
  CHECK_BITS s1, (1 << 63) | (3 << 13), (1 << 63) | (3 << 13)
  li t0, 2 << 13
  csrc sstatus, t0
  csrsi sstatus, 2
  csrrci a0, sstatus, 2
  CHECK_BITS a0, (1 << 63) | (3 << 13) | 2, (1 << 13) | 2
  csrr a1, sstatus
  CHECK_BITS a1, 2, 0
  xor t0, a0, a1
  CHECK t0, 2
  csrrci a2, sstatus, 2
  CHECK_EQ a2, a1
  csrrs a3, sstatus, zero
  CHECK_EQ a3, a1
  csrsi sstatus, 2
  li t0, 2
  csrrc a4, sstatus, t0
  CHECK_EQ a4, a0
  csrrw a5, sstatus, a1
  CHECK_EQ a5, a1
  csrrwi zero, sstatus, 0
  csrr a6, sstatus
  CHECK_BITS a6, (1 << 18) | (1 << 8) | (1 << 5) | (3 << 13) | 2, 0
  li t0, 1 << 18
  csrrs a7, sstatus, t0
  CHECK_EQ a7, a6
  csrr a7, sstatus
  CHECK_BITS a7, (1 << 18) | 2, 1 << 18
  csrw sstatus, a1
  csrr a7, sstatus
  CHECK_EQ a7, a1
"""


@pytest.mark.parametrize("tier", TIERS)
def test_sstatus_reads_and_sie_updates(asm, tier):
    run(asm, SSTATUS_OPS, *TIERS[tier])


# CSRs that generated code performs in place (Machine.map_csr): sscratch, sepc, scause and stval
# hold what Zicsr writes under their masks (sepc bit 0 is zero with IALIGN=16, 4.1.7) and are
# S-level (U-mode gets an illegal instruction); the time CSR needs mcounteren.TM from S-mode and
# scounteren.TM too from U-mode (3.1.11, 4.1.5), so changing either changes what traps. sstatus.FS
# turns the FP unit off and on at once (3.1.6.6).
SLOT_CSRS = r"""
  VM_ON
  li t0, 0x1235
  csrw sepc, t0
  csrr a0, sepc
  CHECK a0, 0x1234
  csrrsi a1, sepc, 3
  CHECK a1, 0x1234
  csrr a0, sepc
  CHECK a0, 0x1236
  li t0, -1
  csrrw a1, sscratch, t0
  csrrc a2, sscratch, zero
  CHECK a2, -1
  li t0, 0xff
  csrrc a3, sscratch, t0
  CHECK a3, -1
  csrr a3, sscratch
  CHECK a3, -256
  csrrwi a4, scause, 13
  csrrsi a5, scause, 0
  CHECK a5, 13
  li t0, 0x8000000000000005
  csrw stval, t0
  csrrs a6, stval, zero
  CHECK_EQ a6, t0
  TRY_U u_sscratch
  CHECK s8, 2
  CHECK s10, 0x14002573
  # time: mcounteren.TM off, then on, then off again.
  li a0, 0
  li a7, SBI_MCOUNTEREN
  ecall
  TRY_S rdtime a0
  CHECK s8, 2
  CHECK s10, 0xc0102573
  li a0, 2
  li a7, SBI_MCOUNTEREN
  ecall
  rdtime a0
  rdtime a1
  bgeu a1, a0, 1f
  FAIL
1: csrw scounteren, zero
  TRY_U u_rdtime
  CHECK s8, 2
  li t0, 2
  csrw scounteren, t0
  TRY_U u_rdtime
  CHECK s8, 8
  li a0, 2
  li a7, SBI_MCOUNTEREN
  ecall
  TRY_U u_rdtime
  CHECK s8, 8
  csrw scounteren, zero
  TRY_U u_rdtime
  CHECK s8, 2
  li t0, 2
  csrw scounteren, t0
  li a0, 0
  li a7, SBI_MCOUNTEREN
  ecall
  TRY_U u_rdtime
  CHECK s8, 2
  TRY_S csrrs a0, time, zero
  CHECK s8, 2
  li a0, 7
  li a7, SBI_MCOUNTEREN
  ecall
  TRY_S csrw time, zero
  CHECK s8, 2
  # sstatus.FS off: FP traps; on: it runs.
  li t0, 3 << 13
  csrc sstatus, t0
  TRY_S fadd.d f0, f1, f2
  CHECK s8, 2
  li t0, 1 << 13
  csrs sstatus, t0
  fadd.d f0, f1, f2
  csrr a0, sstatus
  CHECK_BITS a0, (3 << 13) | (1 << 63), (3 << 13) | (1 << 63)
  j 90f

  .align 2
u_sscratch:
  csrr a0, sscratch
  ecall
u_rdtime:
  rdtime a0
  ecall
90:
"""


@pytest.mark.parametrize("tier", TIERS)
def test_csrs_done_in_place(asm, tier):
    run(asm, SLOT_CSRS, *TIERS[tier])


# sfence.vma with an address (privileged spec 4.2.1) orders the leaf PTE of that address only,
# but a leaf is a whole superpage: every TLB entry cut from it must go, not just the named page.
SFENCE_ADDR = r"""
  VM_ON
  la a0, sf_frame_1
  li a1, 0x1111
  sd a1, 0(a0)
  li a1, 0x2222
  li s4, 0x1000
  add s5, a0, s4
  sd a1, 0(s5)
  # A 4 KiB page: read (the TLB holds it), remap, sfence.vma of an address inside it.
  la t2, sf_frame_1
  PTE pt_l0, 20, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li s1, TEST_VA + 0x14000
  ld a1, 0(s1)
  CHECK a1, 0x1111
  la t2, sf_frame_1 + 0x1000
  PTE pt_l0, 20, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  addi t3, s1, 0x7f8
  sfence.vma t3, zero
  ld a1, 0(s1)
  CHECK a1, 0x2222
  # Stores take the new mapping too.
  li a1, 0x3333
  sd a1, 8(s1)
  ld a2, 8(s5)
  CHECK a2, 0x3333
  # A 2 MiB superpage at 0xC080_0000 -> RAM base: both frames read through it.
  li t2, 0x80000000
  PTE pt_l1, 4, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  la s2, sf_frame_1
  li t0, 0xC0800000 - 0x80000000
  add s2, s2, t0
  add s3, s2, s4
  ld a1, 0(s2)
  CHECK a1, 0x1111
  ld a1, 0(s3)
  CHECK a1, 0x2222
  # Remapped to RAM + 2 MiB (zeros there), and sfence.vma of the first frame's page only:
  # the second page is part of the same leaf and sees the new mapping as well.
  li t2, 0x80200000
  PTE pt_l1, 4, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma s2, zero
  ld a1, 0(s3)
  CHECK a1, 0
  ld a1, 0(s2)
  CHECK a1, 0
  j 90f
  .data
  .align 12
sf_frame_1:
  .fill 1024, 8, 0
  .fill 512, 8, 0
  .text
90:
"""


def test_sfence_vma_of_one_address(asm):
    run(asm, SFENCE_ADDR)


# riscv-tests rv64si icache-alias: instruction fetch is physically addressed, and remapping a
# page takes effect with sfence.vma alone (no fence.i).
ICACHE_ALIAS = r"""
  VM_ON
  # VA bit 12 differs from PA bit 12 in both mappings, as in the original test.
  la t2, code_page_2
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  la t2, code_page_1
  PTE pt_l0, 17, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  li s1, TEST_VA + 0x10000
  li s2, TEST_VA + 0x11000
  jalr s1
  CHECK a0, 321
  jalr s2
  CHECK a0, 123
  jalr s1
  CHECK a0, 321
  # Remap and sfence.vma: the same virtual address runs the other frame's code.
  la t2, code_page_1
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  jalr s1
  CHECK a0, 123
  la t2, code_page_2
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  jalr s1
  CHECK a0, 321
  # A call that ends in the other page: blocks of a page chain only within one mapping.
  li s3, TEST_VA + 0x10000 + 8
  jalr s3
  CHECK a0, 3
  la t2, code_page_1
  PTE pt_l0, 16, t2, PTE_V | PTE_X | PTE_A
  sfence.vma
  jalr s3
  CHECK a0, 1
  jalr s1
  CHECK a0, 123
  # The same in U-mode through a U mapping of the frames.
  la t2, code_page_2
  PTE pt_l0, 18, t2, PTE_V | PTE_X | PTE_U | PTE_A
  sfence.vma
  li s1, TEST_VA + 0x12000
  TRY_U u_call
  CHECK s8, 8
  CHECK a0, 321
  la t2, code_page_1
  PTE pt_l0, 18, t2, PTE_V | PTE_X | PTE_U | PTE_A
  sfence.vma
  TRY_U u_call
  CHECK s8, 8
  CHECK a0, 123
  j 90f

  .align 2
u_call:
  jalr s1
  ecall
  .data
  .align 13
code_page_1:
  li a0, 123
  ret
  li a0, 0
  j 1f
  .fill 64, 4, 0x00000013
1: addi a0, a0, 1
  ret
  .align 12
code_page_2:
  li a0, 321
  ret
  li a0, 2
  j 1f
  .fill 64, 4, 0x00000013
1: addi a0, a0, 1
  ret
  .text
90:
"""


def test_icache_alias_remap_with_sfence_vma_only(asm):
    run(asm, ICACHE_ALIAS)


# Self-modifying code through virtual aliases: code executed at X, rewritten through Y (another
# mapping of the same frame), then fence.i: the translation cache must never run stale code.
SMC = r"""
  VM_ON
  la t2, smc_page
  PTE pt_l0, 32, t2, PTE_V | PTE_R | PTE_X | PTE_A
  PTE pt_l0, 33, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li s1, TEST_VA + 0x20000
  li s2, TEST_VA + 0x21000
  # Written through Y before it ever ran (a fast write entry for Y may exist), then run at X.
  li a0, 0x00100513
  sw a0, 0(s2)
  fence.i
  jalr s1
  CHECK a0, 1
  # Rewritten after it ran: each version runs once.
  li s3, 2
10: slli a1, s3, 20
  li t0, 0x00000513
  or a1, a1, t0
  sw a1, 0(s2)
  fence.i
  jalr s1
  CHECK_EQ a0, s3
  addi s3, s3, 1
  li t0, 8
  bne s3, t0, 10b
  # Code that rewrites its own next instruction through Y.
  la s3, smc_self
  la t0, smc_page
  sub s3, s3, t0
  add s3, s3, s1
  li a2, 0x02a00513
  jalr s3
  CHECK a0, 42
  li a2, 0x02b00513
  jalr s3
  CHECK a0, 43
  # The U-mode alias of the frame (a third mapping) sees the current code as well.
  li t0, SSTATUS_SUM
  csrs sstatus, t0
  LA_U s4, smc_page
  li a0, 0x06300513
  sw a0, 0(s4)
  li t0, SSTATUS_SUM
  csrc sstatus, t0
  fence.i
  jalr s1
  CHECK a0, 99
  j 90f

  .align 12
smc_page:
  addi a0, zero, 0
  ret
smc_self:
  sw a2, 16(s2)                 # smc_target is smc_page + 16
  fence.i
smc_target:
  addi a0, zero, 0
  ret
  .align 12
90:
"""


def test_self_modifying_code_through_alias_mappings(asm):
    run(asm, SMC)


# The firmware rewrites code that S-mode runs, after S-mode filled its TLB with more than 4096
# pages and flushed it (sfence.vma): the firmware's own fast write entry for the code page must
# still be revoked when the page is translated, or its store bypasses invalidation.
FIRMWARE_WRITES_CODE = r"""
  VM_ON
  la s1, fw_code
  mv a0, s1
  li a1, 0x00100513
  SBI SBI_STORE_WORD
  # One store to each of 4200 pages: each gets a fast write entry.
  li a0, 0x81000000
  li a1, 4200
  li a2, 4096
10: sd a1, 0(a0)
  add a0, a0, a2
  addi a1, a1, -1
  bnez a1, 10b
  sfence.vma
  fence.i
  jalr s1
  CHECK a0, 1
  mv a0, s1
  li a1, 0x00200513
  SBI SBI_STORE_WORD
  fence.i
  jalr s1
  CHECK a0, 2
  j 90f

  .align 12
fw_code:
  addi a0, zero, 0
  ret
  .align 12
90:
"""


def test_firmware_rewrites_code_after_tlb_flushes(asm):
    run(asm, FIRMWARE_WRITES_CODE)


# A small kernel: Sv39 on, stvec set, the timer programmed through the firmware (SBI set_timer
# style), a U-mode loop preempted by several S-mode timer interrupts (STRICT as for TIMER).
KERNEL = r"""
  # Timer period in mtime ticks (10 MHz): far longer than a trip through the firmware.
  .equ TICK, 50000
  VM_ON
  la t0, k_trap
  csrw stvec, t0
  li s1, 0
  li s2, 0
  li t0, MIP_STIP
  csrs sie, t0
  rdtime a0
  li t0, TICK
  add a0, a0, t0
  SBI SBI_SET_TIMER
  LA_U t0, u_loop
  csrw sepc, t0
  li t0, SSTATUS_SPP
  csrc sstatus, t0
  sret
  FAIL

  .align 2
k_trap:
  csrr t0, scause
  li t1, IRQ | 5
  beq t0, t1, 20f
  FAIL
  # A timer tick: it interrupted the U loop, which made progress since the last one.
20: csrr t0, sstatus
  CHECK_BITS t0, SSTATUS_SPP | SSTATUS_SIE, 0
  csrr t0, sepc
  LA_U t1, u_loop
  bltu t0, t1, 21f
  LA_U t1, u_loop_end
  bgeu t0, t1, 21f
  j 22f
21: FAIL
22: la t0, u_counter
  ld t1, 0(t0)
  # Under --icount time only advances with instructions, so every period runs some U code.
  .if STRICT
  bgtu t1, s2, 23f
  FAIL
  .endif
23: mv s2, t1
  addi s1, s1, 1
  la t0, m_timer_info
  ld t1, 0(t0)
  CHECK_EQ t1, s1
  .if STRICT
  ld t1, 16(t0)
  CHECK t1, 0
  .endif
  li t0, 5
  beq s1, t0, 24f
  rdtime a0
  li t0, TICK
  add a0, a0, t0
  SBI SBI_SET_TIMER
  .if STRICT
  csrr t0, sip
  CHECK_BITS t0, MIP_STIP, 0
  .endif
  sret
24: bnez s2, 26f
  FAIL
26: PASS

  .align 2
u_loop:
  la a2, u_counter
30: ld a3, 0(a2)
  addi a3, a3, 1
  sd a3, 0(a2)
  j 30b
u_loop_end:
  .bss
  .align 12
u_counter: .space 4096
  .text
"""


@pytest.mark.parametrize("mode", ["realtime", "icount"])
def test_kernel_with_timer_preempting_user_loop(asm, mode):
    strict = mode == "icount"
    run(asm, KERNEL, *(["--icount"] if strict else []), symbols={"STRICT": int(strict)})


@pytest.mark.parametrize("mode", ["sv39-2M", "sv39-4K"])
def test_integer_kernel_in_s_mode_under_sv39(toolchain, tmp_path, mode):
    """The C benchmark kernel with main in S-mode under Sv39 (tests/bench/crt0.S -DSV39)."""
    elf = bench_build.build_program("intkernel", "small", bench_run.MODES[mode])
    stats = tmp_path / "stats.json"
    r = mirage("jit-run", str(elf), "--stats", str(stats), timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert bench_run.result_re("intkernel", "OK").search(out), out
    st = json.loads(stats.read_text())
    assert st["invalidations"].get("satp") == 1
    assert st["mmu"]["walks"] > 0
