"""QEMU-style trace logging: -d categories and -D FILE."""

from __future__ import annotations

from tests.conftest import mirage

PROG = r"""
  la t0, handler
  csrw mtvec, t0
  li a0, 0
  li a1, 5
1: add a0, a0, a1
  addi a1, a1, -1
  bnez a1, 1b
  ecall
  FAIL 2
  .align 2
handler:
  csrr t1, mcause
  li t2, 11
  bne t1, t2, bad
  PASS
bad: FAIL 3
"""


def test_in_asm_shows_guest_disassembly(asm, tmp_path):
    log = tmp_path / "t.log"
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "in_asm", "-D", str(log), str(asm(PROG)))
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert "IN: " in text
    assert "0x0000000080000000:" in text
    assert "csrrw zero, mtvec, t0" in text
    assert "bnez" in text or "bne a1, zero" in text


def test_exec_logs_every_block(asm, tmp_path):
    log = tmp_path / "t.log"
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "exec", "-D", str(log), str(asm(PROG)))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("Trace 0:")]
    # The loop body runs 5 times: its block is logged at each execution (no chaining under -d exec).
    loop_pc = "[0000000080000010]"
    assert sum(loop_pc in ln for ln in lines) >= 4, lines
    assert all(ln.endswith(" vM") for ln in lines)


def test_int_and_vfm(asm, tmp_path):
    log = tmp_path / "t.log"
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "int,vfm", "-D", str(log), str(asm(PROG)))
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert "exception hart=0 cause=8" in text  # The ecall, physically from U
    assert "inject cause=11" in text  # Seen by the firmware as an ecall from M
    assert "emulate csrrs mcause" in text or "emulate csrrs" in text


def test_trace_off_by_default_and_bad_category(asm):
    r = mirage("jit-run", "--max-insns", "1000000", str(asm(PROG)))
    assert r.returncode == 0 and r.stderr == b""
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "bogus", str(asm(PROG)))
    assert r.returncode == 2
    assert b"unknown -d category bogus" in r.stderr
