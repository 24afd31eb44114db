"""QEMU-style trace logging: -d categories and -D FILE."""

from __future__ import annotations

from elftools.elf.elffile import ELFFile

from tests.conftest import mirage
from tests.guest import build as guest_build


def symbol(elf, name: str) -> int:
    with open(elf, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]

PROG = r"""
  la t0, handler
  csrw mtvec, t0
  li a0, 0
  li a1, 5
1: add a0, a0, a1
  addi a1, a1, -1
  bnez a1, 1b
ecall_at: ecall
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
    assert "0x0000000080000008:  30529073  csrrw zero, mtvec, t0\n" in text
    # The loop's c.bnez, shown as the instruction it expands to, with its absolute target.
    assert "0x0000000080000014:  fdf5  bne a1, zero, 0x80000010\n" in text


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
    elf = asm(PROG)
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "int,vfm", "-D", str(log), str(elf))
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    handler = symbol(elf, "handler")
    ecall = symbol(elf, "ecall_at")
    assert f"exception hart=0 cause=8 tval=0x0 epc={ecall:#x} from=vM\n" in text  # Physically from U
    assert f"inject cause=11 tval=0x0 epc={ecall:#x} into firmware\n" in text  # An ecall from M to it
    assert f"emulate csrrs mcause at {handler:#x}\n" in text


def test_trace_off_by_default_and_bad_category(asm):
    r = mirage("jit-run", "--max-insns", "1000000", str(asm(PROG)))
    assert r.returncode == 0 and r.stderr == b""
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "bogus", str(asm(PROG)))
    assert r.returncode == 2
    assert b"unknown -d category bogus" in r.stderr


# S-mode under Sv39 (one 1 GiB identity page over RAM): fetches and a load are walked, a load from
# an address no entry maps faults (load page fault, 13) and goes to the firmware.
SV39 = guest_build.to_s_mode() + guest_build.SV39_ON + r"""
  la t2, value
  ld a0, 0(t2)
  li t2, 0x100000000
  ld a0, 0(t2)
  FAIL 2
  .align 2
trap:
  csrr t1, mcause
  li t2, 13
  bne t1, t2, bad
  csrr t1, mtval
  li t2, 0x100000000
  bne t1, t2, bad
  PASS
bad: FAIL 3
  .data
  .align 12
pt:
  .dword 0, 0, 0x200000CF
  .fill 509, 8, 0
value: .dword 7
"""


def test_mmu_logs_walks_and_faults(asm, tmp_path):
    log = tmp_path / "t.log"
    elf = asm(SV39)
    r = mirage("jit-run", "--max-insns", "1000000", "-d", "mmu", "-D", str(log), str(elf))
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    value, satp = symbol(elf, "value"), (8 << 60) | (symbol(elf, "pt") >> 12)
    # Identity mapped: every walk gives back its address; only the OS's accesses under Sv39 appear.
    walks = [ln for ln in lines if ln.startswith("mmu: walk ")]
    assert walks and all(ln.split()[3] == "va=" + ln.split()[5][3:] for ln in walks), walks
    assert any(ln.startswith("mmu: walk x ") for ln in walks)
    assert f"mmu: walk r va={value:#x} -> pa={value:#x}" in walks
    assert lines[-1] == f"mmu: fault r va=0x100000000 cause=13 satp={satp:#x}"
    assert all(ln.startswith("mmu: ") for ln in lines)
