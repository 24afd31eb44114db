"""Atomic instructions: an AMO or SC whose store raises an interrupt line still writes rd.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import fail_checked_run, mirage
from tests.guest import build as guest_build

CLINT = 0x200_0000
MAX_INSNS = "200000000"

# Unexpected traps fail with the cause (FAIL 1000000000 + mcause << 20 | mepc low bits, as
# tests/conftest.py decodes it).
TRAP_FAIL = r"""
trap_fail:
  csrr t0, mcause
  slli t0, t0, 20
  csrr t1, mepc
  li t2, 0xFFFFF
  and t1, t1, t2
  or t0, t0, t1
  li t1, 1000000000
  add t0, t0, t1
  slli t0, t0, 1
  ori t0, t0, 1
  la t1, tohost
  sd t0, 0(t1)
1: j 1b
"""

# An AMO or SC whose store raises an interrupt line (this hart's msip: the CLINT asks the run loop
# for the interrupt) still writes rd: the block stops after the instruction, not between its store
# and its rd write (the ticket spin-locks of an SMP Linux kernel take that path). Interpreted, then
# again translated (the loop runs past the warm threshold).
AMO_RD_ON_INTERRUPT = r"""
  la t0, trap_fail
  csrw mtvec, t0
  csrr t0, mhartid
  bnez t0, park             # Hart 0 alone
  li t0, 8
  csrs mie, t0              # mie.MSIE (mstatus.MIE stays clear: no trap)
  li s0, CLINT
  li s1, 3000
loop:
  li a5, 0x55
  li t1, 1
  amoswap.w a5, t1, (s0)    # msip 0 -> 1: MSIP rises
  beqz a5, 1f
  FAIL 2                    # rd kept its old value
1: li a5, 0x55
  amoswap.w a5, zero, (s0)  # 1 -> 0
  li t1, 1
  beq a5, t1, 2f
  FAIL 3
2: li a5, 0x55
  lr.w t2, (s0)
  li t1, 1
  sc.w a5, t1, (s0)         # Succeeds: MSIP rises again
  beqz a5, 3f
  FAIL 4                    # rd is not SC's success code
3: sw zero, 0(s0)
  addi s1, s1, -1
  bnez s1, loop
  PASS
park:
  wfi
  j park
""" + TRAP_FAIL


def program(body: str, **symbols: int) -> Path:
    """The program with `.equ` lines for its symbols."""
    equs = "".join(f"  .equ {k}, {v}\n" for k, v in sorted(symbols.items()))
    return guest_build.build(equs + body)


def run_checked(elf: Path, *args: str, where: dict[int, str] | None = None):
    r = mirage("jit-run", str(elf), "--max-insns", MAX_INSNS, *args, timeout=300)
    if r.returncode != 0:
        fail_checked_run(r, where or {})
    return r


def test_amo_and_sc_write_rd_when_their_store_raises_an_interrupt(toolchain):
    run_checked(program(AMO_RD_ON_INTERRUPT, CLINT=CLINT),
                where={2: "amoswap rd (MSIP rose)", 3: "amoswap rd (MSIP fell)", 4: "sc rd (MSIP rose)"})
