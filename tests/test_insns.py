"""Per-instruction tests: assembly programs that check every result in the guest.

Each program groups many checks. `CHECK reg, value`, `CHECK_EQ reg, reg`, the branch macros and a
bare `FAIL` are numbered automatically (a distinct `FAIL n` each), so a failing run names the
source line of the check that failed. Programs run as firmware (virtual M-mode) under
`mirage jit-run`; an unexpected trap reports its mcause and mepc.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import fail_checked_run, mirage

# Macros and prologue shared by every program. t3-t6 belong to the macros.
COMMON = r"""
  .macro CHECK reg, val, n
  li t4, \val
  beq \reg, t4, 1f
  FAIL \n
1:
  .endm
  .macro CHECK_EQ a, b, n
  beq \a, \b, 1f
  FAIL \n
1:
  .endm
  # Branch \op on (\a, \b): taken / not taken, forward and backward.
  .macro BR_T op, a, b, n
  li t3, \a
  li t4, \b
  \op t3, t4, 1f
  FAIL \n
1:
  .endm
  .macro BR_N op, a, b, n
  li t3, \a
  li t4, \b
  \op t3, t4, 1f
  j 2f
1: FAIL \n
2:
  .endm
  .macro BR_BT op, a, b, n
  li t3, \a
  li t4, \b
  j 2f
1: j 3f
2: \op t3, t4, 1b
  FAIL \n
3:
  .endm
  .macro BR_BN op, a, b, n
  li t3, \a
  li t4, \b
  j 2f
1: FAIL \n
2: \op t3, t4, 1b
  .endm
  .option push
  .option norvc
  lla t0, unexpected_trap
  csrw mtvec, t0
  j main
  # Reports FAIL (1000000000 + mcause * 2^20 + low 20 bits of mepc).
unexpected_trap:
  csrr t6, mcause
  slli t6, t6, 20
  csrr t5, mepc
  slli t5, t5, 44
  srli t5, t5, 44
  or t6, t6, t5
  li t5, 1000000000
  add t6, t6, t5
  slli t6, t6, 1
  ori t6, t6, 1
  lla t5, tohost
  sd t6, 0(t5)
1: j 1b
  .option pop
main:
"""

_NUMBERED = re.compile(r"^(\s*(?:\w+:\s*)?)(CHECK|CHECK_EQ|BR_T|BR_N|BR_BT|BR_BN|FAIL)\b(.*)$")


def _number(source: str) -> tuple[str, dict[int, str]]:
    """Gives every check its own FAIL number; returns the program and number -> source line."""
    out, where = [], {}
    for lineno, line in enumerate(source.splitlines(), 1):
        m = _NUMBERED.match(line)
        if m and not (m.group(2) == "FAIL" and m.group(3).strip()):
            n = len(where) + 1
            args = m.group(3).rstrip()
            line = f"{m.group(1)}{m.group(2)} {args.strip()}, {n}" if args.strip() else f"{m.group(1)}FAIL {n}"
            where[n] = f"line {lineno}: {m.group(2)}{args}"
        out.append(line)
    return COMMON + "\n".join(out) + "\n", where


@pytest.fixture(autouse=True, params=["interp", "tier0", "tier1", "promote"])
def tier(request, monkeypatch):
    """Every program runs in the interpreter only, with cold compiled code only, optimized code
    only, and through every tier (interpreted, warm after 2 heads, promoted after 2 runs)."""
    warm, hot = {"interp": (1 << 30, 1 << 30), "tier0": (0, 1 << 30), "tier1": (0, 0),
                 "promote": (2, 2)}[request.param]
    monkeypatch.setenv("MIRAGE_WARM_THRESHOLD", str(warm))
    monkeypatch.setenv("MIRAGE_HOT_THRESHOLD", str(hot))
    # Reproducible promotion points: translations happen in the run loop
    monkeypatch.setenv("MIRAGE_JIT_THREAD", "0" if request.param == "promote" else "1")
    return request.param


def run(asm, source: str) -> None:
    """Builds and runs a program (256 MiB of RAM); fails naming the check that failed."""
    text, where = _number(source)
    r = mirage("jit-run", "-m", "256M", "--max-insns", "20000000", str(asm(text)))
    if r.returncode != 0:
        fail_checked_run(r, where)


# RV64I: integer computation (unprivileged spec 2.4 and 5.2)
RV64I_ALU = r"""
  .option norvc
  # lui: 20-bit immediate, bit 31 sign-extends
  lui a0, 0x80000
  CHECK a0, 0xffffffff80000000
  lui a0, 0x7ffff
  CHECK a0, 0x7ffff000
  lui a0, 0xfffff
  CHECK a0, -4096
  lui a0, 0
  CHECK a0, 0
  # auipc: pc-relative, sign-extended immediate
1: auipc a0, 0
  lla a1, 1b
  CHECK_EQ a0, a1
2: auipc a0, 0x80000
  lla a1, 2b
  li a2, 0xffffffff80000000
  add a1, a1, a2
  CHECK_EQ a0, a1
3: auipc a0, 0x7ffff
  lla a1, 3b
  li a2, 0x7ffff000
  add a1, a1, a2
  CHECK_EQ a0, a1
  # addi
  li a0, 5
  addi a1, a0, -6
  CHECK a1, -1
  addi a1, a0, 2047
  CHECK a1, 2052
  addi a1, a0, -2048
  CHECK a1, -2043
  li a0, 0x7fffffffffffffff
  addi a1, a0, 1
  CHECK a1, 0x8000000000000000
  addi x0, a0, 5
  CHECK x0, 0
  lui x0, 0x12345
  auipc x0, 0x1
  slli x0, a0, 3
  add x0, a0, a0
  addiw x0, a0, 1
  CHECK x0, 0
  # slti / sltiu (immediate sign-extended, then compared unsigned for sltiu)
  li a0, -1
  slti a1, a0, 0
  CHECK a1, 1
  slti a1, a0, -1
  CHECK a1, 0
  slti a1, a0, -2
  CHECK a1, 0
  li a0, 5
  slti a1, a0, -1
  CHECK a1, 0
  slti a1, a0, 6
  CHECK a1, 1
  sltiu a1, a0, -1
  CHECK a1, 1
  li a0, -1
  sltiu a1, a0, -1
  CHECK a1, 0
  sltiu a1, a0, 5
  CHECK a1, 0
  li a0, 0
  sltiu a1, a0, 1
  CHECK a1, 1
  # xori / ori / andi with sign-extended immediates
  li a0, 0x0f0f
  xori a1, a0, -1
  CHECK a1, 0xfffffffffffff0f0
  xori a1, a0, 0xff
  CHECK a1, 0x0ff0
  li a0, 0x100
  ori a1, a0, -2048
  CHECK a1, 0xfffffffffffff900
  ori a1, a0, 0x0ff
  CHECK a1, 0x1ff
  li a0, -1
  andi a1, a0, 0x7ff
  CHECK a1, 0x7ff
  andi a1, a0, -2048
  CHECK a1, 0xfffffffffffff800
  li a0, 0x123456789
  andi a1, a0, 0
  CHECK a1, 0
  # slli / srli / srai, shift amounts up to 63
  li a0, 1
  slli a1, a0, 63
  CHECK a1, 0x8000000000000000
  slli a1, a0, 32
  CHECK a1, 0x100000000
  li a0, 0xff
  slli a1, a0, 60
  CHECK a1, 0xf000000000000000
  li a0, -1
  srli a1, a0, 63
  CHECK a1, 1
  srli a1, a0, 1
  CHECK a1, 0x7fffffffffffffff
  srli a1, a0, 0
  CHECK a1, -1
  srli a1, a0, 32
  CHECK a1, 0xffffffff
  li a0, 0x8000000000000000
  srai a1, a0, 63
  CHECK a1, -1
  srai a1, a0, 4
  CHECK a1, 0xf800000000000000
  li a0, 0x4000000000000000
  srai a1, a0, 62
  CHECK a1, 1
  # add / sub wrap around
  li a0, 0x7fffffffffffffff
  li a1, 1
  add a2, a0, a1
  CHECK a2, 0x8000000000000000
  add a2, a0, x0
  CHECK_EQ a2, a0
  li a0, 0
  sub a2, a0, a1
  CHECK a2, -1
  sub a2, a1, a0
  CHECK a2, 1
  li a0, 0x8000000000000000
  sub a2, a0, a1
  CHECK a2, 0x7fffffffffffffff
  # sll / srl / sra use rs2[5:0]
  li a0, 1
  li a1, 63
  sll a2, a0, a1
  CHECK a2, 0x8000000000000000
  li a1, 64
  sll a2, a0, a1
  CHECK a2, 1
  li a1, 65
  sll a2, a0, a1
  CHECK a2, 2
  li a1, -1
  sll a2, a0, a1
  CHECK a2, 0x8000000000000000
  li a0, 0x8000000000000000
  li a1, 63
  srl a2, a0, a1
  CHECK a2, 1
  li a1, 68
  srl a2, a0, a1
  CHECK a2, 0x0800000000000000
  li a1, 63
  sra a2, a0, a1
  CHECK a2, -1
  li a1, 68
  sra a2, a0, a1
  CHECK a2, 0xf800000000000000
  li a0, 0x7000000000000000
  sra a2, a0, a1
  CHECK a2, 0x0700000000000000
  # slt / sltu with negatives
  li a0, -1
  li a1, 1
  slt a2, a0, a1
  CHECK a2, 1
  slt a2, a1, a0
  CHECK a2, 0
  sltu a2, a0, a1
  CHECK a2, 0
  sltu a2, a1, a0
  CHECK a2, 1
  slt a2, a0, a0
  CHECK a2, 0
  sltu a2, a0, a0
  CHECK a2, 0
  li a0, 0x8000000000000000
  li a1, 0x7fffffffffffffff
  slt a2, a0, a1
  CHECK a2, 1
  sltu a2, a0, a1
  CHECK a2, 0
  sltu a2, x0, a1
  CHECK a2, 1
  # xor / or / and
  li a0, 0xff00ff00ff00ff00
  li a1, 0x0ff00ff00ff00ff0
  xor a2, a0, a1
  CHECK a2, 0xf0f0f0f0f0f0f0f0
  or a2, a0, a1
  CHECK a2, 0xfff0fff0fff0fff0
  and a2, a0, a1
  CHECK a2, 0x0f000f000f000f00
  # *W operations: 32-bit result, sign-extended
  li a0, 0x7fffffff
  addiw a1, a0, 1
  CHECK a1, 0xffffffff80000000
  li a0, 0xffffffff
  addiw a1, a0, 0
  CHECK a1, -1
  li a0, 0x123456789
  addiw a1, a0, 0
  CHECK a1, 0x23456789
  li a0, 0xffffffff80000000
  addiw a1, a0, -1
  CHECK a1, 0x7fffffff
  li a0, 1
  slliw a1, a0, 31
  CHECK a1, 0xffffffff80000000
  li a0, 0x100000001
  slliw a1, a0, 4
  CHECK a1, 0x10
  li a0, 0xffffffff80000000
  srliw a1, a0, 31
  CHECK a1, 1
  srliw a1, a0, 0
  CHECK a1, 0xffffffff80000000
  li a0, -1
  srliw a1, a0, 4
  CHECK a1, 0x0fffffff
  li a0, 0x80000000
  sraiw a1, a0, 31
  CHECK a1, -1
  sraiw a1, a0, 4
  CHECK a1, 0xfffffffff8000000
  li a0, 0x17fffffff
  sraiw a1, a0, 0
  CHECK a1, 0x7fffffff
  li a0, 0x7fffffff
  li a1, 1
  addw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, 0xffffffff00000001
  li a1, 0xffffffff
  addw a2, a0, a1
  CHECK a2, 0
  li a0, 0x80000000
  li a1, 1
  subw a2, a0, a1
  CHECK a2, 0x7fffffff
  li a0, 0
  subw a2, a0, a1
  CHECK a2, -1
  li a1, 0x80000000
  subw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, 1
  li a1, 31
  sllw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a1, 32
  sllw a2, a0, a1
  CHECK a2, 1
  li a1, 33
  sllw a2, a0, a1
  CHECK a2, 2
  li a0, 0xffffffff80000000
  li a1, 31
  srlw a2, a0, a1
  CHECK a2, 1
  li a1, 32
  srlw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, -1
  li a1, 4
  srlw a2, a0, a1
  CHECK a2, 0x0fffffff
  li a0, 0x80000000
  li a1, 31
  sraw a2, a0, a1
  CHECK a2, -1
  li a1, 63
  sraw a2, a0, a1
  CHECK a2, -1
  li a0, 0xf7fffffff
  li a1, 35
  sraw a2, a0, a1
  CHECK a2, 0x0fffffff
  PASS
"""

# RV64I: control transfer (unprivileged spec 2.5)
RV64I_CONTROL = r"""
  .option norvc
  # jal: link is pc + 4, forward and backward
  jal ra, 1f
0: FAIL
1: lla t0, 0b
  CHECK_EQ ra, t0
  jal x0, 1f
  FAIL
1: j 3f
2: lla t0, 4f
  CHECK_EQ a0, t0
  j 5f
3: jal a0, 2b
4: FAIL
5:
  # jalr: target (rs1 + imm) & ~1, link pc + 4
  lla t0, 1f
  jalr ra, 0(t0)
0: FAIL
1: lla t1, 0b
  CHECK_EQ ra, t1
  lla t0, 1f - 12
  jalr ra, 12(t0)
  FAIL
1: lla t0, 1f + 100
  jalr ra, -100(t0)
  FAIL
1: lla t0, 1f + 1
  jalr ra, 0(t0)
  FAIL
1: lla t0, 1f
  jalr x0, 1(t0)
  FAIL
1: lla a0, 1f
  jalr a0, 0(a0)
0: FAIL
1: lla t1, 0b
  CHECK_EQ a0, t1
  lla ra, 1f
  jalr ra, 0(ra)
0: FAIL
1: lla t1, 0b
  CHECK_EQ ra, t1
  jal x0, 1f
  FAIL
1: lla t0, 1f
  jalr x0, 0(t0)
  FAIL
1: lla t0, 1f
  jalr zero, 0(t0)
  FAIL
1: jal ra, 1f
1: lla t1, 1b
  CHECK_EQ ra, t1
  # A call and return through a subroutine
  li a0, 0
  call add_three
  call add_three
  CHECK a0, 6
  # Branches: every condition taken / not taken, forward and backward
  BR_T beq, 5, 5
  BR_N beq, 5, 6
  BR_N beq, -1, 0xffffffff
  BR_BT beq, -1, -1
  BR_BN beq, 0, 1
  BR_T bne, 5, 6
  BR_T bne, 0x100000000, 0
  BR_N bne, 7, 7
  BR_BT bne, -1, 1
  BR_BN bne, -1, -1
  BR_T blt, -1, 0
  BR_T blt, 0x8000000000000000, 0x7fffffffffffffff
  BR_N blt, 0, -1
  BR_N blt, 5, 5
  BR_BT blt, -5, -4
  BR_BN blt, 1, -1
  BR_T bge, 0, -1
  BR_T bge, 5, 5
  BR_T bge, 0x7fffffffffffffff, 0x8000000000000000
  BR_N bge, -1, 0
  BR_BT bge, -4, -5
  BR_BN bge, -1, 1
  BR_T bltu, 0, -1
  BR_T bltu, 1, 2
  BR_N bltu, -1, 0
  BR_N bltu, 5, 5
  BR_BT bltu, 1, 0x8000000000000000
  BR_BN bltu, 0x8000000000000000, 1
  BR_T bgeu, -1, 0
  BR_T bgeu, 5, 5
  BR_N bgeu, 0, -1
  BR_N bgeu, 1, 2
  BR_BT bgeu, 0x8000000000000000, 1
  BR_BN bgeu, 1, 0x8000000000000000
  # Branches against x0 and a loop counting down
  beq x0, x0, 1f
  FAIL
1: bltu x0, x0, 2f
  j 3f
2: FAIL
3: li a0, 0
  li a1, 1000
4: addi a0, a0, 3
  addi a1, a1, -1
  bne a1, x0, 4b
  CHECK a0, 3000
  PASS
add_three:
  addi a0, a0, 3
  ret
"""

# RV64I: loads and stores of every width (unprivileged spec 2.6). The body runs twice: on data
# in the tohost page (stores take the watched slow path) and on a page of its own (fast path).
RV64I_MEM = r"""
  .option norvc
  lla s0, area0
  li s1, 0
body:
  mv a0, s0
  lb a1, 0(a0)
  CHECK a1, 0xffffffffffffff81
  lb a1, 1(a0)
  CHECK a1, 0x7f
  lbu a1, 0(a0)
  CHECK a1, 0x81
  lbu a1, 7(a0)
  CHECK a1, 0xf0
  lh a1, 0(a0)
  CHECK a1, 0x7f81
  lh a1, 2(a0)
  CHECK a1, -2
  lhu a1, 2(a0)
  CHECK a1, 0xfffe
  lh a1, 4(a0)
  CHECK a1, 0xffffffffffff8001
  lhu a1, 4(a0)
  CHECK a1, 0x8001
  lw a1, 0(a0)
  CHECK a1, 0xfffffffffffe7f81
  lwu a1, 0(a0)
  CHECK a1, 0xfffe7f81
  lw a1, 4(a0)
  CHECK a1, 0xfffffffff0008001
  lwu a1, 4(a0)
  CHECK a1, 0xf0008001
  lw a1, 8(a0)
  CHECK a1, 0x7fffffff
  lwu a1, 8(a0)
  CHECK a1, 0x7fffffff
  ld a1, 0(a0)
  CHECK a1, 0xf0008001fffe7f81
  # Negative and large offsets, rd = rs1, rd = x0
  addi a2, s0, 8
  lb a1, -8(a2)
  CHECK a1, 0xffffffffffffff81
  ld a1, -8(a2)
  CHECK a1, 0xf0008001fffe7f81
  addi a2, s0, -2000
  lhu a1, 2002(a2)
  CHECK a1, 0xfffe
  li a2, 2048
  add a2, a2, s0
  ld a1, -2048(a2)
  CHECK a1, 0xf0008001fffe7f81
  mv a2, s0
  ld a2, 0(a2)
  CHECK a2, 0xf0008001fffe7f81
  lw x0, 0(a0)
  CHECK x0, 0
  # Stores of every width, read back at other widths; neighbours untouched
  addi a0, s0, 32
  li a1, 0x1122334455667788
  sd a1, 0(a0)
  ld a2, 0(a0)
  CHECK a2, 0x1122334455667788
  li a1, -1
  sb a1, 0(a0)
  ld a2, 0(a0)
  CHECK a2, 0x11223344556677ff
  sh a1, 2(a0)
  ld a2, 0(a0)
  CHECK a2, 0x11223344ffff77ff
  li a1, 0x12345678abcdef01
  sw a1, 4(a0)
  ld a2, 0(a0)
  CHECK a2, 0xabcdef01ffff77ff
  li a1, 0x5a
  sb a1, 7(a0)
  lbu a2, 7(a0)
  CHECK a2, 0x5a
  lw a2, 4(a0)
  CHECK a2, 0x5acdef01
  li a1, 0x8765
  sh a1, 0(a0)
  lh a2, 0(a0)
  CHECK a2, 0xffffffffffff8765
  ld a2, -8(a0)
  CHECK a2, 0
  ld a2, 8(a0)
  CHECK a2, 0
  addi a3, a0, 16
  li a1, 0x99
  sb a1, -1(a3)
  ld a2, 8(a0)
  CHECK a2, 0x9900000000000000
  sd x0, 8(a0)
  ld a2, 8(a0)
  CHECK a2, 0
  li a1, 0xcafe
  sh a1, -2040(a3)
  addi a3, a3, -2040
  lhu a2, 0(a3)
  CHECK a2, 0xcafe
  # Store then load in a loop (same block, repeatedly)
  li a1, 0
  li a3, 100
1: sd a1, 0(a0)
  ld a2, 0(a0)
  addi a1, a2, 1
  addi a3, a3, -1
  bnez a3, 1b
  ld a2, 0(a0)
  CHECK a2, 99
  bnez s1, 2f
  li s1, 1
  lla s0, area1
  j body
2: PASS
  .macro AREA
  .byte 0x81, 0x7f, 0xfe, 0xff, 0x01, 0x80, 0x00, 0xf0
  .word 0x7fffffff, 0
  .dword 0, 0
  .dword 0, 0, 0
  .fill 2048, 1, 0
  .endm
  .data
  .align 4
  .fill 2048, 1, 0
area0: AREA
  .align 12
  .fill 2048, 1, 0
area1: AREA
"""

# M: multiply and divide (unprivileged spec chapter 7, Table 7.1)
RV64M = r"""
  .option norvc
  li a0, -3
  li a1, 7
  mul a2, a0, a1
  CHECK a2, -21
  li a0, 0x100000000
  mul a2, a0, a0
  CHECK a2, 0
  mulhu a2, a0, a0
  CHECK a2, 1
  li a0, -1
  mul a2, a0, a0
  CHECK a2, 1
  mulh a2, a0, a0
  CHECK a2, 0
  mulhu a2, a0, a0
  CHECK a2, 0xfffffffffffffffe
  mulhsu a2, a0, a0
  CHECK a2, -1
  li a1, 2
  mulhu a2, a0, a1
  CHECK a2, 1
  mulhsu a2, a1, a0
  CHECK a2, 1
  mulhsu a2, a0, a1
  CHECK a2, -1
  li a0, 0x8000000000000000
  mulh a2, a0, a0
  CHECK a2, 0x4000000000000000
  li a1, -1
  mulh a2, a0, a1
  CHECK a2, 0
  mul a2, a0, a1
  CHECK a2, 0x8000000000000000
  mulhsu a2, a0, a1
  CHECK a2, 0x8000000000000000
  li a0, -2
  li a1, 3
  mulh a2, a0, a1
  CHECK a2, -1
  mulhu a2, a0, a1
  CHECK a2, 2
  li a0, -5
  mulhsu a2, a0, a1
  CHECK a2, -1
  # mulw: low 32 bits, sign-extended
  li a0, 0x7fffffff
  li a1, 2
  mulw a2, a0, a1
  CHECK a2, -2
  li a0, 0x100000003
  li a1, 0x100000005
  mulw a2, a0, a1
  CHECK a2, 15
  li a0, 0x8000
  li a1, 0x10000
  mulw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, 0x10000
  mulw a2, a0, a1
  CHECK a2, 0
  # div / rem: truncation toward zero, sign of the remainder follows the dividend
  li a0, 7
  li a1, 2
  div a2, a0, a1
  CHECK a2, 3
  rem a2, a0, a1
  CHECK a2, 1
  li a0, -7
  div a2, a0, a1
  CHECK a2, -3
  rem a2, a0, a1
  CHECK a2, -1
  li a0, 7
  li a1, -2
  div a2, a0, a1
  CHECK a2, -3
  rem a2, a0, a1
  CHECK a2, 1
  li a0, -7
  div a2, a0, a1
  CHECK a2, 3
  rem a2, a0, a1
  CHECK a2, -1
  li a0, -1
  li a1, 2
  divu a2, a0, a1
  CHECK a2, 0x7fffffffffffffff
  remu a2, a0, a1
  CHECK a2, 1
  li a0, 7
  li a1, 3
  remu a2, a0, a1
  CHECK a2, 1
  divu a2, a0, a1
  CHECK a2, 2
  # Division by zero
  li a0, 5
  div a2, a0, x0
  CHECK a2, -1
  divu a2, a0, x0
  CHECK a2, -1
  rem a2, a0, x0
  CHECK a2, 5
  remu a2, a0, x0
  CHECK a2, 5
  li a0, -5
  rem a2, a0, x0
  CHECK a2, -5
  # Signed overflow
  li a0, 0x8000000000000000
  li a1, -1
  div a2, a0, a1
  CHECK a2, 0x8000000000000000
  rem a2, a0, a1
  CHECK a2, 0
  divu a2, a0, a1
  CHECK a2, 0
  remu a2, a0, a1
  CHECK a2, 0x8000000000000000
  # *W forms ignore the upper 32 bits of the operands and sign-extend the result
  li a0, 0xffffffff00000007
  li a1, 0x100000002
  divw a2, a0, a1
  CHECK a2, 3
  remw a2, a0, a1
  CHECK a2, 1
  li a0, -7
  li a1, 2
  divw a2, a0, a1
  CHECK a2, -3
  remw a2, a0, a1
  CHECK a2, -1
  li a0, 0x80000000
  li a1, -1
  divw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  remw a2, a0, a1
  CHECK a2, 0
  li a1, 0x100000000
  divw a2, a0, a1
  CHECK a2, -1
  remw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  divuw a2, a0, a1
  CHECK a2, -1
  remuw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, 0xffffffff
  li a1, 2
  divuw a2, a0, a1
  CHECK a2, 0x7fffffff
  remuw a2, a0, a1
  CHECK a2, 1
  li a0, 0x80000000
  li a1, 1
  divuw a2, a0, a1
  CHECK a2, 0xffffffff80000000
  li a0, 0xfffffff9
  li a1, 2
  remuw a2, a0, a1
  CHECK a2, 1
  li a0, 5
  remw a2, a0, x0
  CHECK a2, 5
  PASS
"""

# A: AMOs and LR/SC (unprivileged spec chapter 8), run on the watched tohost page (slow path: load,
# compute, store through callouts) and on a page of its own (inline fast path).
RV64A = r"""
  .option norvc
  lla s0, mem0
  lla s2, far0
  li s1, 0
body:
  mv a0, s0
  # amoswap.w: old word sign-extended, upper word untouched
  li a1, 0x180000000
  sd a1, 0(a0)
  li a1, 0x12345678
  amoswap.w a2, a1, (a0)
  CHECK a2, 0xffffffff80000000
  ld a2, 0(a0)
  CHECK a2, 0x112345678
  # amoadd.w wraps at 32 bits
  li a1, 0x7fffffff
  sw a1, 0(a0)
  li a1, 1
  amoadd.w a2, a1, (a0)
  CHECK a2, 0x7fffffff
  lw a2, 0(a0)
  CHECK a2, 0xffffffff80000000
  lw a2, 4(a0)
  CHECK a2, 1
  li a1, 0xffffffff80000001
  amoadd.w a2, a1, (a0)
  CHECK a2, 0xffffffff80000000
  lwu a2, 0(a0)
  CHECK a2, 1
  # amoxor.w / amoand.w / amoor.w
  li a1, 0xf0f0f0f0
  sw a1, 0(a0)
  li a1, 0xff00ff00
  amoxor.w a2, a1, (a0)
  CHECK a2, 0xfffffffff0f0f0f0
  lwu a2, 0(a0)
  CHECK a2, 0x0ff00ff0
  li a1, 0xffff0000
  amoand.w a2, a1, (a0)
  CHECK a2, 0x0ff00ff0
  lwu a2, 0(a0)
  CHECK a2, 0x0ff00000
  li a1, 0x8000000f
  amoor.w a2, a1, (a0)
  CHECK a2, 0x0ff00000
  lwu a2, 0(a0)
  CHECK a2, 0x8ff0000f
  # amomin/amomax .w compare the low 32 bits, signed or unsigned
  li a1, -1
  sw a1, 0(a0)
  li a1, 0xffffffff00000005
  amomin.w a2, a1, (a0)
  CHECK a2, -1
  lw a2, 0(a0)
  CHECK a2, -1
  amominu.w a2, a1, (a0)
  CHECK a2, -1
  lw a2, 0(a0)
  CHECK a2, 5
  li a1, -5
  amomax.w a2, a1, (a0)
  CHECK a2, 5
  lw a2, 0(a0)
  CHECK a2, 5
  amomaxu.w a2, a1, (a0)
  CHECK a2, 5
  lw a2, 0(a0)
  CHECK a2, -5
  li a1, 0x80000000
  sw a1, 0(a0)
  li a1, 1
  amominu.w a2, a1, (a0)
  CHECK a2, 0xffffffff80000000
  lw a2, 0(a0)
  CHECK a2, 1
  li a1, 0x7fffffff
  sw a1, 0(a0)
  li a1, 0x80000000
  amomax.w a2, a1, (a0)
  CHECK a2, 0x7fffffff
  lw a2, 0(a0)
  CHECK a2, 0x7fffffff
  amomin.w a2, a1, (a0)
  CHECK a2, 0x7fffffff
  lw a2, 0(a0)
  CHECK a2, 0xffffffff80000000
  li a1, 0x7fffffff
  amomaxu.w a2, a1, (a0)
  CHECK a2, 0xffffffff80000000
  lw a2, 0(a0)
  CHECK a2, 0xffffffff80000000
  # .w on the upper word of a doubleword
  li a1, 0x1111111122222222
  sd a1, 0(a0)
  li a1, 1
  addi a3, a0, 4
  amoadd.w a2, a1, (a3)
  CHECK a2, 0x11111111
  ld a2, 0(a0)
  CHECK a2, 0x1111111222222222
  # .d forms
  li a1, 0x8000000000000000
  sd a1, 0(a0)
  li a1, 5
  amoswap.d a2, a1, (a0)
  CHECK a2, 0x8000000000000000
  ld a2, 0(a0)
  CHECK a2, 5
  li a1, -6
  amoadd.d a2, a1, (a0)
  CHECK a2, 5
  ld a2, 0(a0)
  CHECK a2, -1
  li a1, 0x00ff00ff00ff00ff
  amoxor.d a2, a1, (a0)
  CHECK a2, -1
  ld a2, 0(a0)
  CHECK a2, 0xff00ff00ff00ff00
  li a1, 0x0ff00ff00ff00ff0
  amoand.d a2, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, 0x0f000f000f000f00
  li a1, 0x1
  amoor.d a2, a1, (a0)
  CHECK a2, 0x0f000f000f000f00
  ld a2, 0(a0)
  CHECK a2, 0x0f000f000f000f01
  li a1, -1
  sd a1, 0(a0)
  li a1, 1
  amomin.d a2, a1, (a0)
  CHECK a2, -1
  ld a2, 0(a0)
  CHECK a2, -1
  amominu.d a2, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, 1
  li a1, -1
  amomax.d a2, a1, (a0)
  CHECK a2, 1
  ld a2, 0(a0)
  CHECK a2, 1
  amomaxu.d a2, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, -1
  li a1, 0x8000000000000000
  amomin.d a2, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, 0x8000000000000000
  li a1, 0x7fffffffffffffff
  amomax.d a2, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, 0x7fffffffffffffff
  # rd = x0 and rd = rs2; aq/rl variants
  li a1, 10
  sd a1, 0(a0)
  amoadd.d x0, a1, (a0)
  ld a2, 0(a0)
  CHECK a2, 20
  li a1, 7
  amoswap.d.aqrl a1, a1, (a0)
  CHECK a1, 20
  ld a2, 0(a0)
  CHECK a2, 7
  li a1, 1
  amoadd.w.aq a2, a1, (a0)
  amoadd.d.rl a2, a1, (a0)
  CHECK a2, 8
  ld a2, 0(a0)
  CHECK a2, 9
  # LR/SC: success writes and returns 0; SC without a reservation fails with 1
  lr.d a1, (a0)
  CHECK a1, 9
  li a2, 0x1234
  sc.d a3, a2, (a0)
  CHECK a3, 0
  ld a1, 0(a0)
  CHECK a1, 0x1234
  li a2, 0x5678
  sc.d a3, a2, (a0)
  CHECK a3, 1
  ld a1, 0(a0)
  CHECK a1, 0x1234
  li a1, 0x80000000
  sw a1, 0(a0)
  lr.w a1, (a0)
  CHECK a1, 0xffffffff80000000
  li a2, 0x1122334455667788
  sc.w a3, a2, (a0)
  CHECK a3, 0
  ld a1, 0(a0)
  CHECK a1, 0x55667788
  sc.w a3, a2, (a0)
  CHECK a3, 1
  # SC to an address in another page than the reservation fails
  mv a4, s2
  sd x0, 0(a4)
  lr.d.aq a1, (a0)
  sc.d.rl a3, a2, (a4)
  CHECK a3, 1
  ld a1, 0(a4)
  CHECK a1, 0
  # Any SC, even a failed one, invalidates the reservation
  sc.d a3, a2, (a0)
  CHECK a3, 1
  # An LR/SC increment loop
  sd x0, 0(a0)
  li a5, 50
1: lr.d a1, (a0)
  addi a1, a1, 3
  sc.d a3, a1, (a0)
  bnez a3, 1b
  addi a5, a5, -1
  bnez a5, 1b
  ld a1, 0(a0)
  CHECK a1, 150
  # rd = rs1
  mv a1, a0
  li a2, 77
  amoswap.d a1, a2, (a1)
  CHECK a1, 150
  ld a1, 0(a0)
  CHECK a1, 77
  mv a1, a0
  lr.d a1, (a1)
  CHECK a1, 77
  mv a1, a0
  sc.d a1, a2, (a1)
  CHECK a1, 0
  bnez s1, 2f
  li s1, 1
  lla s0, mem1
  lla s2, far1
  j body
2: PASS
  .data
  .align 6
mem0: .dword 0, 0
  .align 12
far0: .dword 0
  .align 12
mem1: .dword 0, 0
  .align 12
far1: .dword 0
"""

# C: every compressed instruction written with its c. mnemonic (unprivileged spec chapter 16)
RV64C = r"""
  .option norvc
  li t0, 0x2000
  csrs mstatus, t0
  lla sp, stack_top
  lla s0, cdata
  .option rvc
  # c.addi4spn, c.addi16sp
  c.addi4spn a0, sp, 16
  addi a1, sp, 16
  CHECK_EQ a0, a1
  c.addi4spn a0, sp, 1020
  addi a1, sp, 1020
  CHECK_EQ a0, a1
  mv a2, sp
  c.addi16sp sp, -512
  addi a1, a2, -512
  CHECK_EQ sp, a1
  c.addi16sp sp, 496
  addi a1, a2, -16
  CHECK_EQ sp, a1
  mv sp, a2
  # c.lw / c.ld / c.sw / c.sd (registers x8-x15), sign extension of c.lw
  c.lw a0, 0(s0)
  CHECK a0, 0xffffffff80000001
  c.lw a0, 4(s0)
  CHECK a0, 0x7ffffffe
  c.ld a1, 8(s0)
  CHECK a1, 0x0123456789abcdef
  c.lw a0, 124(s0)
  CHECK a0, 0x7c
  c.ld a0, 248(s0)
  CHECK a0, 0xf8
  lla s1, cscratch
  li a2, 0xaabbccdd11223344
  c.sd a2, 8(s1)
  ld a3, 8(s1)
  CHECK_EQ a3, a2
  c.sw a2, 0(s1)
  lwu a3, 0(s1)
  CHECK a3, 0x11223344
  c.sd a2, 248(s1)
  ld a3, 248(s1)
  CHECK_EQ a3, a2
  c.sw a2, 124(s1)
  lw a3, 124(s1)
  CHECK a3, 0x11223344
  # c.fld / c.fsd / c.fldsp / c.fsdsp (FS enabled above)
  c.fld fa0, 8(s0)
  fmv.x.d a3, fa0
  CHECK a3, 0x0123456789abcdef
  c.fsd fa0, 16(s1)
  ld a3, 16(s1)
  CHECK a3, 0x0123456789abcdef
  c.fsdsp fa0, 8(sp)
  ld a3, 8(sp)
  CHECK a3, 0x0123456789abcdef
  li a3, 0x55
  sd a3, 504(sp)
  c.fldsp fs1, 504(sp)
  fmv.x.d a4, fs1
  CHECK a4, 0x55
  # c.lwsp / c.ldsp / c.swsp / c.sdsp
  li a3, 0x80000000
  c.swsp a3, 0(sp)
  c.lwsp t1, 0(sp)
  CHECK t1, 0xffffffff80000000
  li a3, -3
  c.sdsp a3, 504(sp)
  c.ldsp t1, 504(sp)
  CHECK t1, -3
  c.swsp a3, 252(sp)
  c.lwsp t2, 252(sp)
  CHECK t2, -3
  lwu t2, 252(sp)
  CHECK t2, 0xfffffffd
  # c.nop, c.li, c.addi, c.addiw, c.lui
  li a0, 9
  c.nop
  CHECK a0, 9
  c.li a0, -32
  CHECK a0, -32
  c.li a0, 31
  CHECK a0, 31
  c.addi a0, -32
  CHECK a0, -1
  c.addi a0, 31
  CHECK a0, 30
  li t1, 0x7fffffff
  c.addiw t1, 1
  CHECK t1, 0xffffffff80000000
  li t1, 0x1ffffffff
  c.addiw t1, 0
  CHECK t1, -1
  c.lui t1, 1
  CHECK t1, 0x1000
  c.lui t1, 0x1f
  CHECK t1, 0x1f000
  c.lui t1, 0xfffe0
  CHECK t1, 0xfffffffffffe0000
  # c.slli / c.srli / c.srai / c.andi
  li t1, 1
  c.slli t1, 63
  CHECK t1, 0x8000000000000000
  li a0, -1
  c.srli a0, 1
  CHECK a0, 0x7fffffffffffffff
  c.srli a0, 62
  CHECK a0, 1
  li a0, 0x8000000000000000
  c.srai a0, 63
  CHECK a0, -1
  li a0, 0x8000000000000000
  c.srai a0, 32
  CHECK a0, 0xffffffff80000000
  li a0, -1
  c.andi a0, -32
  CHECK a0, -32
  li a0, 0xff
  c.andi a0, 31
  CHECK a0, 31
  # c.mv / c.add / c.sub / c.xor / c.or / c.and / c.subw / c.addw
  li a1, 0x123456789
  c.mv a0, a1
  CHECK a0, 0x123456789
  c.add a0, a1
  CHECK a0, 0x2468acf12
  li a0, 5
  li a1, 7
  c.sub a0, a1
  CHECK a0, -2
  li a0, 0xff00
  li a1, 0x0ff0
  c.xor a0, a1
  CHECK a0, 0xf0f0
  c.or a0, a1
  CHECK a0, 0xfff0
  c.and a0, a1
  CHECK a0, 0x0ff0
  li a0, 0
  li a1, 0x80000000
  c.subw a0, a1
  CHECK a0, 0xffffffff80000000
  li a0, 0x7fffffff
  li a1, 0x100000001
  c.addw a0, a1
  CHECK a0, 0xffffffff80000000
  # c.j, c.beqz, c.bnez (forward and backward, full 64-bit comparison)
  c.j 1f
  FAIL
1: li a0, 0
  c.beqz a0, 1f
  FAIL
1: li a0, 0x100000000
  c.beqz a0, 2f
  c.bnez a0, 1f
2: FAIL
1: li a0, 0
  c.bnez a0, 2f
  j 1f
2: FAIL
1: j 3f
2: j 4f
3: li a0, 0
  c.beqz a0, 2b
  FAIL
4: li a0, 1
  j 3f
2: j 4f
3: c.bnez a0, 2b
  FAIL
4: j 3f
2: c.j 4f
3: c.j 2b
  FAIL
4:
  # c.jr / c.jalr: link is pc + 2
  lla t0, 1f
  c.jr t0
  FAIL
1: lla t0, 1f
  c.jalr t0
0: FAIL
1: lla t1, 0b
  CHECK_EQ ra, t1
  lla ra, 1f
  c.jalr ra
0: FAIL
1: lla t1, 0b
  CHECK_EQ ra, t1
  lla ra, 1f
  c.jr ra
  FAIL
1: mv a2, sp
  c.addi sp, -16
  addi a1, a2, -16
  CHECK_EQ sp, a1
  c.mv a3, sp
  CHECK_EQ a3, a1
  c.mv sp, a2
  c.li a4, 0
  c.add a4, sp
  CHECK_EQ a4, a2
  # A 32-bit instruction at a 2-byte aligned address
  li a0, 1
  c.nop
  addi a0, a0, 41
  CHECK a0, 42
  # A 32-bit instruction that straddles a page boundary, reached by falling through and by a jump
  li a0, 0
  j 1f
  .balign 4096
1:
  .fill 2047, 2, 0x0001
straddle:
  .option norvc
  addi a0, a0, 1
  .option rvc
  li t1, 1
  bne a0, t1, 2f
  lla t0, straddle
  jr t0
2: CHECK a0, 2
  PASS
  .data
  .align 4
cdata: .word 0x80000001, 0x7ffffffe
  .dword 0x0123456789abcdef
  .fill 27, 4, 0
  .word 0x7c
  .fill 30, 4, 0
  .dword 0xf8
  .align 4
cscratch: .fill 64, 8, 0
  .align 4
stack: .fill 256, 8, 0
stack_top: .fill 64, 8, 0
"""

# Zicsr on the FP CSRs, FP loads/stores and moves (unprivileged spec chapters 9 and 11)
FP_CSRS = r"""
  .option norvc
  li t0, 0x2000
  csrs mstatus, t0
  csrw fcsr, x0
  csrr a0, fcsr
  CHECK a0, 0
  csrwi fflags, 0x1f
  csrr a0, fflags
  CHECK a0, 0x1f
  csrr a0, fcsr
  CHECK a0, 0x1f
  csrwi frm, 3
  csrr a0, frm
  CHECK a0, 3
  csrr a0, fcsr
  CHECK a0, 0x7f
  li a1, -1
  csrrw a0, fcsr, a1
  CHECK a0, 0x7f
  csrr a0, fcsr
  CHECK a0, 0xff
  csrr a0, frm
  CHECK a0, 7
  csrr a0, fflags
  CHECK a0, 0x1f
  li a1, 0x06
  csrrc a0, fflags, a1
  CHECK a0, 0x1f
  csrr a0, fflags
  CHECK a0, 0x19
  li a1, 0xe2
  csrrs a0, fflags, a1
  CHECK a0, 0x19
  csrr a0, fflags
  CHECK a0, 0x1b
  csrr a0, frm
  CHECK a0, 7
  csrrci a0, fflags, 0x1f
  CHECK a0, 0x1b
  csrr a0, fflags
  CHECK a0, 0
  csrrsi a0, fflags, 0x10
  CHECK a0, 0
  csrr a0, fflags
  CHECK a0, 0x10
  csrrwi a0, frm, 4
  CHECK a0, 7
  csrrci a0, frm, 1
  CHECK a0, 4
  csrrsi a0, frm, 1
  CHECK a0, 4
  csrr a0, fcsr
  CHECK a0, 0xb0
  csrrwi x0, fflags, 5
  csrr a0, fcsr
  CHECK a0, 0xa5
  li a1, 0xff
  csrw frm, a1
  csrr a0, fcsr
  CHECK a0, 0xe5
  csrw fflags, a1
  csrr a0, fcsr
  CHECK a0, 0xff
  li a1, 0x1ff
  csrw fcsr, a1
  csrr a0, fcsr
  CHECK a0, 0xff
  csrrs a0, fcsr, x0
  CHECK a0, 0xff
  csrrc a0, fcsr, x0
  CHECK a0, 0xff
  # Writing an FP CSR makes mstatus.FS dirty (and SD set)
  csrr a0, mstatus
  srli a1, a0, 13
  andi a1, a1, 3
  CHECK a1, 3
  srli a1, a0, 63
  CHECK a1, 1
  # FP loads, stores and moves; FS back to Initial first, a load makes it dirty
  li t0, 0x6000
  csrc mstatus, t0
  li t0, 0x2000
  csrs mstatus, t0
  lla a0, fdata
  fld fa0, 0(a0)
  csrr a2, mstatus
  srli a2, a2, 13
  andi a2, a2, 3
  CHECK a2, 3
  fmv.x.d a1, fa0
  CHECK a1, 0x123456789abcdef0
  li a2, 0xfedcba9876543210
  fmv.d.x fa1, a2
  fsd fa1, 8(a0)
  ld a1, 8(a0)
  CHECK_EQ a1, a2
  flw fa2, 16(a0)
  fmv.x.d a1, fa2
  CHECK a1, 0xffffffff3f800000
  fsw fa2, 20(a0)
  lwu a1, 20(a0)
  CHECK a1, 0x3f800000
  fsw fa1, 24(a0)
  lwu a1, 24(a0)
  CHECK a1, 0x76543210
  addi a3, a0, 40
  fld fa3, -40(a3)
  fmv.x.d a1, fa3
  CHECK a1, 0x123456789abcdef0
  fsd fa3, -8(a3)
  ld a1, 32(a0)
  CHECK a1, 0x123456789abcdef0
  fmv.d.x ft11, x0
  fmv.x.d a1, ft11
  CHECK a1, 0
  # fmv.w.x NaN-boxes; fmv.x.w takes bits 31:0 and sign-extends them
  li a2, 0x1234567880000000
  fmv.w.x ft1, a2
  fmv.x.d a1, ft1
  CHECK a1, 0xffffffff80000000
  fmv.x.w a1, ft1
  CHECK a1, 0xffffffff80000000
  li a2, 0x1122334455667788
  fmv.d.x ft2, a2
  fmv.x.w a1, ft2
  CHECK a1, 0x55667788
  PASS
  .data
  .align 12
fdata: .dword 0x123456789abcdef0, 0
  .word 0x3f800000, 0
  .dword 0, 0, 0
"""

# fence, fence.i and self-modifying code (unprivileged spec 2.7 and chapter 3)
FENCES_SMC = r"""
  .option norvc
  li a0, 3
  fence
  fence rw, rw
  fence r, w
  fence.tso
  .word 0x0100000f  # pause (fence w, 0)
  fence.i
  CHECK a0, 3
  # Patch a translated subroutine N times: addi a0, a0, 1 -> addi a0, a0, k
  li a0, 0
  li s4, 10
1: call patched
  addi s4, s4, -1
  bnez s4, 1b
  CHECK a0, 10
  lla s0, patched
  li s5, 2
  li s6, 0x00050513
2: slli t0, s5, 20
  or t0, t0, s6
  sw t0, 0(s0)
  fence.i
  li a0, 0
  call patched
  CHECK_EQ a0, s5
  call patched
  slli t1, s5, 1
  CHECK_EQ a0, t1
  addi s5, s5, 1
  li t0, 40
  blt s5, t0, 2b
  # Restore the original instruction
  li t0, 0x00150513
  sw t0, 0(s0)
  fence.i
  li a0, 0
  call patched
  CHECK a0, 1
  # A store over an instruction of the running block that it already executed
  lla t0, 3f
  li t1, 0x00250513
  li a0, 0
  li s1, 3
3: addi a0, a0, 1
  sw t1, 0(t0)
  fence.i
  addi s1, s1, -1
  bnez s1, 3b
  CHECK a0, 5
  # A store over a later instruction of the running block: that execution may see either
  # (no fence.i between), later ones must see the new instruction
  lla t0, 4f
  li t1, 0x00250513
  li a0, 0
  li s1, 3
5: sw t1, 0(t0)
4: addi a0, a0, 1
  fence.i
  addi s1, s1, -1
  bnez s1, 5b
  addi a0, a0, -5
  srli a1, a0, 1
  CHECK a1, 0
  # Patch a compressed instruction with a halfword store
  .option rvc
  li s2, 0
8: li a0, 0
  li s1, 4
6: c.addi a0, 1
  addi s1, s1, -1
  bnez s1, 6b
  bnez s2, 9f
  CHECK a0, 4
  lla t0, 6b
  li t1, 0x050d  # c.addi a0, 3
  sh t1, 0(t0)
  fence.i
  li s2, 1
  j 8b
9: CHECK a0, 12
  .option norvc
  # Code written to a data page (stores on the fast path), run, rewritten with stores of every
  # width and an AMO, run again after fence.i
  lla s0, codebuf
  li t0, 0x00550513  # addi a0, a0, 5
  sw t0, 0(s0)
  li t0, 0x00008067  # ret
  sw t0, 4(s0)
  sd x0, 8(s0)
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 5
  li t0, 0x00750513  # addi a0, a0, 7
  sw t0, 0(s0)
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 7
  li t0, 1
  sb t0, 3(s0)  # imm[11:4] = 1: addi a0, a0, 0x17
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 0x17
  li t0, 0x0095
  sh t0, 2(s0)  # imm = 9, rs1[4:1] kept: addi a0, a0, 9
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 9
  li t0, 0x0000806700b50513  # addi a0, a0, 11; ret
  sd t0, 0(s0)
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 11
  li t0, 0x00d50513  # addi a0, a0, 13
  amoswap.w x0, t0, (s0)
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK a0, 13
  # Many rewrites in a loop
  li s5, 1
  li s6, 0x00050513
1: slli t0, s5, 20
  or t0, t0, s6
  sw t0, 0(s0)
  fence.i
  li a0, 0
  jalr ra, 0(s0)
  CHECK_EQ a0, s5
  addi s5, s5, 1
  li t0, 30
  blt s5, t0, 1b
  PASS
patched:
  addi a0, a0, 1
  ret
  .data
  .align 12
codebuf: .fill 64, 8, 0
"""

# M-mode traps into the program's own handler (privileged spec 3.1.14-3.1.17, 3.3.2)
TRAPS = r"""
  .option norvc
  lla t0, handler
  csrw mtvec, t0
  li s11, 0
  li s7, 0
  # ecall: mcause 11, mepc = its address, mtval 0; MIE saved to MPIE and restored by mret
  li t0, 8
  csrs mstatus, t0
  li a5, 0x1234
1: ecall
  lla t0, 1b
  CHECK s5, 0x1234
  CHECK s8, 11
  CHECK_EQ s9, t0
  CHECK s10, 0
  CHECK s11, 1
  srli t0, s6, 3
  andi t0, t0, 1
  CHECK t0, 0
  srli t0, s6, 7
  andi t0, t0, 1
  CHECK t0, 1
  srli t0, s6, 11
  andi t0, t0, 3
  CHECK t0, 3
  csrr t0, mstatus
  andi t0, t0, 8
  CHECK t0, 8
  li t0, 8
  csrc mstatus, t0
  # ebreak and c.ebreak: mcause 3, mtval = pc
1: ebreak
  lla t0, 1b
  CHECK s8, 3
  CHECK_EQ s9, t0
  CHECK_EQ s10, t0
  .option rvc
1: c.ebreak
  .option norvc
  lla t0, 1b
  CHECK s8, 3
  CHECK_EQ s9, t0
  CHECK_EQ s10, t0
  CHECK s11, 3
  # Illegal instructions: mcause 2, mtval = the instruction bits
  li t0, 0x2000
  csrs mstatus, t0
1: .word 0x02b5d553  # fadd.d fa0, fa1, fa1 with the reserved rounding mode 5
  lla t0, 1b
  CHECK s8, 2
  CHECK_EQ s9, t0
  CHECK s10, 0x02b5d553
1: .word 0xdeadc07b  # custom-3 opcode
  CHECK s8, 2
  CHECK s10, 0xdeadc07b
  .option rvc
1: .half 0x4002  # c.lwsp with rd = 0
  .option norvc
  lla t0, 1b
  CHECK s8, 2
  CHECK_EQ s9, t0
  CHECK s10, 0x4002
1: .half 0x6101  # c.addi16sp with nzimm = 0
  .half 0x0001
  CHECK s8, 2
  CHECK s10, 0x6101
1: csrr a0, 0x7c0  # no such CSR
  CHECK s8, 2
  li t0, 0x7c002573
  CHECK_EQ s10, t0
1: csrw cycle, a0  # read-only CSR
  CHECK s8, 2
  li t0, 0xc0051073
  CHECK_EQ s10, t0
  li s8, 0
  csrr a0, cycle  # reading it does not write: no trap
  csrrc a0, cycle, x0
  csrrsi a0, cycle, 0
  csrrci a0, instret, 0
  CHECK s8, 0
1: csrrwi x0, cycle, 0
  CHECK s8, 2
  li t0, 0x6000
  csrc mstatus, t0
  li a0, 0x77
1: csrr a0, fflags  # FS is off
  CHECK s8, 2
  CHECK a0, 0x77
  li t0, 0x00102573
  CHECK_EQ s10, t0
  lla a0, tdata
1: fld fa0, 0(a0)  # FS is off
  CHECK s8, 2
  li t0, 0x00053507
  CHECK_EQ s10, t0
  li t0, 0x2000
  csrs mstatus, t0
  # Misaligned loads and stores: mcause 4 / 6, mtval = address, rd and memory unchanged
  lla a0, tdata
  li a1, 0x5555
1: lw a1, 1(a0)
  lla t0, 1b
  CHECK s8, 4
  CHECK_EQ s9, t0
  addi t0, a0, 1
  CHECK_EQ s10, t0
  CHECK a1, 0x5555
  addi a2, a0, 4
1: ld a1, 0(a2)
  CHECK s8, 4
  CHECK_EQ s10, a2
  addi a2, a0, 3
1: lh a1, 0(a2)
  CHECK s8, 4
  CHECK_EQ s10, a2
  CHECK a1, 0x5555
  li a3, -1
  addi a2, a0, 2
1: sw a3, 0(a2)
  lla t0, 1b
  CHECK s8, 6
  CHECK_EQ s9, t0
  CHECK_EQ s10, a2
  ld t0, 0(a0)
  CHECK t0, 0
  addi a2, a0, 7
1: sh a3, 0(a2)
  CHECK s8, 6
  CHECK_EQ s10, a2
  addi a2, a0, 4
1: sd a3, 0(a2)
  CHECK s8, 6
  CHECK_EQ s10, a2
  ld t0, 0(a0)
  CHECK t0, 0
  ld t0, 8(a0)
  CHECK t0, 0
  addi a2, a0, 4
  li s8, 0
1: fld fa0, 0(a2)
  CHECK s8, 4
  CHECK_EQ s10, a2
  # Misaligned AMO: store/AMO address-misaligned (or access fault)
  addi a2, a0, 2
  li a1, 0x5555
1: amoadd.w a1, a3, (a2)
  CHECK_EQ s10, a2
  CHECK a1, 0x5555
  addi t0, s8, -6
  srli t0, t0, 1
  CHECK t0, 0
  # Precise traps: earlier instructions of the block done, later ones not yet
  li a2, 1
  li a3, 0
  addi a4, a0, 1
  addi a2, a2, 1
1: lw a1, 0(a4)
  addi a3, a3, 1
  CHECK a2, 2
  CHECK a3, 1
  CHECK s8, 4
  # A store just before a faulting load of the same block has happened
  li a3, 0x77
  sd a3, 0(a0)
  ld a1, 0(x0)
  ld t0, 0(a0)
  CHECK t0, 0x77
  CHECK s8, 5
  sd x0, 0(a0)
  # A misaligned compressed load: mepc is its address, execution resumes 2 bytes later
  addi a2, a0, 2
  li a1, 0x5555
  .option rvc
1: c.lw a1, 0(a2)
  addi a3, a0, 0
  .option norvc
  lla t0, 1b
  CHECK_EQ s9, t0
  CHECK s8, 4
  CHECK_EQ s10, a2
  CHECK a1, 0x5555
  CHECK_EQ a3, a0
  # Access faults: unmapped addresses
  li a1, 0x5555
1: ld a1, 0(x0)
  lla t0, 1b
  CHECK s8, 5
  CHECK_EQ s9, t0
  CHECK s10, 0
  CHECK a1, 0x5555
  li a2, 0x100000000000
1: lw a1, 8(a2)
  CHECK s8, 5
  addi t0, a2, 8
  CHECK_EQ s10, t0
  li a2, -8
1: ld a1, 0(a2)
  CHECK s8, 5
  CHECK s10, -8
  li a2, 0x100000000000
1: sw a1, 16(x0)
  CHECK s8, 7
  CHECK s10, 16
1: amoswap.d a1, a1, (a2)
  CHECK s8, 7
  CHECK_EQ s10, a2
  # Instruction access fault: jump to address 0 (the handler resumes at s7)
  lla s7, 1f
  li t0, 0
  jalr ra, 0(t0)
1: CHECK s8, 1
  CHECK s9, 0
  # A 32-bit instruction in the last halfword of RAM (256 MiB): the fetch of its upper half
  # faults; mepc is the instruction, mtval the faulting part
  li s0, 0x8ffffffe
  li t0, 0x0513
  sh t0, 0(s0)
  fence.i
  lla s7, 1f
  jr s0
1: CHECK s8, 1
  CHECK_EQ s9, s0
  CHECK s10, 0x90000000
  li t0, 0x0001  # c.nop there: it runs, then the next fetch faults
  sh t0, 0(s0)
  fence.i
  lla s7, 1f
  li s8, 0
  jr s0
1: CHECK s8, 1
  CHECK s9, 0x90000000
  CHECK s10, 0x90000000
  # Vectored mtvec: exceptions still go to the base
  lla t0, handler
  ori t0, t0, 1
  csrw mtvec, t0
  li s11, 0
1: ecall
  CHECK s8, 11
  CHECK s11, 1
  PASS

  .align 2
handler:
  csrr s8, mcause
  csrr s9, mepc
  csrr s10, mtval
  csrr s6, mstatus
  mv s5, a5
  addi s11, s11, 1
  bnez s7, 2f
  lhu t0, 0(s9)
  andi t0, t0, 3
  li t1, 3
  addi t2, s9, 2
  bne t0, t1, 1f
  addi t2, s9, 4
1: csrw mepc, t2
  mret
2: csrw mepc, s7
  li s7, 0
  mret
  .data
  .align 4
tdata: .dword 0, 0
"""


# LR/SC on a misaligned address raise address-misaligned or access-fault exceptions (unprivileged
# spec 8.2), also an SC that would fail for lack of a reservation (as in Spike).
MISALIGNED_SC = r"""
  .option norvc
  lla t0, handler
  csrw mtvec, t0
  lla a0, tdata
  addi a2, a0, 2
  li a1, 0x5555
  li s8, 0
1: sc.w a1, a3, (a2)
  CHECK a1, 0x5555
  addi t0, s8, -6
  srli t0, t0, 1
  CHECK t0, 0
  CHECK_EQ s10, a2
  addi a2, a0, 4
  li s8, 0
1: sc.d a1, a3, (a2)
  CHECK a1, 0x5555
  addi t0, s8, -6
  srli t0, t0, 1
  CHECK t0, 0
  PASS
  .align 2
handler:
  csrr s8, mcause
  csrr s10, mtval
  csrr t0, mepc
  addi t0, t0, 4
  csrw mepc, t0
  mret
  .data
  .align 4
tdata: .dword 0, 0
"""


# minstret counts every retired instruction, including CSR accesses that the monitor emulates
# for the firmware (privileged spec 3.1.11; Zicntr).
MINSTRET = r"""
  .option norvc
  csrr a0, minstret
  csrr a1, minstret
  sub a2, a1, a0
  CHECK a2, 1
  csrr a0, minstret
  nop
  nop
  csrr a1, minstret
  sub a2, a1, a0
  CHECK a2, 3
  csrr a0, minstret
  csrr x0, mscratch
  csrr x0, mscratch
  csrr a1, minstret
  sub a2, a1, a0
  CHECK a2, 3
  PASS
"""


def test_rv64i_alu(asm):
    run(asm, RV64I_ALU)


def test_rv64i_control(asm):
    run(asm, RV64I_CONTROL)


def test_rv64i_loads_stores(asm):
    run(asm, RV64I_MEM)


def test_rv64m(asm):
    run(asm, RV64M)


def test_rv64a(asm):
    run(asm, RV64A)


def test_rv64c(asm):
    run(asm, RV64C)


def test_fp_csrs_and_moves(asm):
    run(asm, FP_CSRS)


def test_fences_and_self_modifying_code(asm):
    run(asm, FENCES_SMC)


def test_m_mode_traps(asm):
    run(asm, TRAPS)


def test_minstret_counts_every_instruction(asm):
    run(asm, MINSTRET)


def test_misaligned_sc_faults(asm):
    run(asm, MISALIGNED_SC)


def test_checks_are_numbered():
    text, where = _number("  CHECK a0, 5\n1: FAIL\n  FAIL 7\n  BR_T beq, 1, 1\n")
    assert text.endswith("  CHECK a0, 5, 1\n1: FAIL 2\n  FAIL 7\n  BR_T beq, 1, 1, 3\n")
    assert where == {1: "line 1: CHECK a0, 5", 2: "line 2: FAIL", 3: "line 4: BR_T beq, 1, 1"}
