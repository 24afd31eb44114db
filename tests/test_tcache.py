"""Translation-cache invalidation, counted by cause, on an in-process machine: stores into
translated code ("code-write", one per block dropped), satp switches ("satp") and sfence.vma
("sfence.vma"), the two jump-cache flushes of the S/U machine."""

from __future__ import annotations

from pathlib import Path

from platforms import qemu_virt
from runtime.boot import board
from runtime.boot.loader import load
from runtime.core.machine import Machine
from runtime.devices.htif import Htif
from tests.test_smode import program
from vfm.monitor import Monitor


class _Sink:
    def write(self, b: bytes) -> None:
        pass

    def flush(self) -> None:
        pass


def run_machine(elf: Path, max_insns: int = 5_000_000, setup=None) -> Machine:
    """Runs an HTIF test program as firmware on a qemu-virt machine in this process, every block
    translated on its first execution (no interpreter); returns the machine once it passed.
    `setup(machine)` runs before the program is loaded."""
    m = board.build(qemu_virt, ram_size=64 << 20, icount=True, out=_Sink())
    m.warm_threshold = 0
    if setup is not None:
        setup(m)
    img = load(m.mem, elf, qemu_virt.RAM_BASE)
    Htif(m, img.symbols["tohost"], img.symbols.get("fromhost"), out=_Sink())
    mon = Monitor()
    mon.attach(m)
    mon.reset(m.harts[0], img.entry, 0, 0)
    m.max_insns = max_insns
    result = m.run()
    assert result.code == 0, result.message
    return m


# Firmware code rewriting one instruction N times: each store drops the one block holding it.
FIRMWARE_REWRITES = r"""
  .option norvc
  la t0, trap
  csrw mtvec, t0
  la s1, patch
  li s2, 1
  li s3, 13
1: jal ra, patch
  addi t1, s2, -1
  bne a0, t1, bad
  slli t0, s2, 20
  li t1, 0x00000513
  or t0, t0, t1
  sw t0, 0(s1)              # patch: addi a0, zero, s2
  fence.i
  addi s2, s2, 1
  bne s2, s3, 1b
  jal ra, patch
  li t1, 12
  bne a0, t1, bad
  # An instruction inside two blocks (entered at entry_a and at entry_b): one store drops both.
  li a0, 0
  jal ra, entry_a
  li a0, 0
  jal ra, entry_b
  li t0, 0x00a50513         # entry_b: addi a0, a0, 10
  la t1, entry_b
  sw t0, 0(t1)
  fence.i
  li a0, 0
  jal ra, entry_a
  li t1, 11
  bne a0, t1, bad
  PASS
bad: FAIL 2
trap: FAIL 3
patch:
  addi a0, zero, 0
  ret
entry_a:
  addi a0, a0, 1
entry_b:
  addi a0, a0, 2
  ret
"""


def test_code_writes_counted_per_dropped_block(asm):
    m = run_machine(asm(FIRMWARE_REWRITES))
    assert m.tcache.invalidations["code-write"] == 12 + 2
    assert m.tcache.fence_i == 13
    assert m.tcache.invalidations["satp"] == 0
    assert m.tcache.invalidations["sfence.vma"] == 0


# S-mode under Sv39: code at X rewritten N times through the alias Y, M changing satp switches
# (plus one that writes the current value), K sfence.vma.
N, M, K = 7, 5, 9
S_MODE_COUNTS = rf"""
  VM_ON
  la t2, code_frame
  PTE pt_l0, 32, t2, PTE_V | PTE_R | PTE_X | PTE_A
  PTE pt_l0, 33, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li s1, TEST_VA + 0x20000
  li s2, TEST_VA + 0x21000
  li s3, {N}
10: jalr s1
  slli t0, s3, 20
  li t1, 0x00000513
  or t0, t0, t1
  sw t0, 0(s2)
  fence.i
  addi s3, s3, -1
  bnez s3, 10b
  jalr s1
  CHECK a0, 1
  csrr s4, satp
  li s3, {M}
11: csrw satp, zero
  csrw satp, s4
  csrw satp, s4
  addi s3, s3, -1
  bnez s3, 11b
  li s3, {K}
12: sfence.vma
  addi s3, s3, -1
  bnez s3, 12b
  li t0, TEST_VA + 0x21000
  CHECK_EQ s2, t0
  j 90f
  .align 12
code_frame:
  addi a0, zero, 0
  ret
  .align 12
90:
"""


def test_satp_and_sfence_vma_and_code_writes_in_s_mode(asm):
    text, _ = program(S_MODE_COUNTS)
    m = run_machine(asm(text))
    # The firmware's boot programs PMP (flushes counted as "pmp"); the rest is S-mode's doing.
    inv = {k: v for k, v in m.tcache.invalidations.items() if k != "pmp"}
    # VM_ON writes satp once and runs one sfence.vma; mapping the frames runs another.
    assert inv == {"code-write": N, "satp": 1 + 2 * M, "sfence.vma": 2 + K}, inv
    assert m.tcache.fence_i == N


# S-mode rewrites the immediate of a translated instruction with a misaligned store, which the
# monitor's offload path performs (medeleg[6] clear): the machine's store drops the block.
MISALIGNED_CODE_WRITE = r"""
  VM_ON
  li a0, MEDELEG_DEFAULT & ~(1 << 6)
  SBI SBI_MEDELEG
  la t2, code_frame
  PTE pt_l0, 32, t2, PTE_V | PTE_R | PTE_X | PTE_A
  PTE pt_l0, 33, t2, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma
  li s1, TEST_VA + 0x20000
  li s2, TEST_VA + 0x21000
  jalr s1
  CHECK a0, 0
  li t0, 0x7005             # Bytes 1-2 of `addi a0, zero, 7` (0x00700513)
  sh t0, 5(s2)              # Misaligned: bytes 5 and 6 of the frame
  fence.i
  jalr s1
  CHECK a0, 7
  j 90f
  .align 12
code_frame:
  nop
  addi a0, zero, 0
  ret
  .align 12
90:
"""


def test_a_misaligned_store_the_monitor_performs_drops_the_code_it_overwrites(asm):
    text, _ = program(MISALIGNED_CODE_WRITE)
    m = run_machine(asm(text))
    assert m.monitor.stats["offloaded"]["misaligned_store"] == 1
    assert m.tcache.invalidations["code-write"] == 1
