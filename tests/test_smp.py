"""Several harts (`-smp N`): bare-metal firmware on every hart at once, and OpenSBI starting and
stopping an S-mode payload's harts through SBI HSM.

Every hart starts at the program's entry in (virtual) M-mode with a0 = its hart id, as on QEMU's
virt board. The harts take turns in one host thread (runtime/core/machine.py, `SMP_SLICE`), so what
these programs check is what real harts running at once must see: IPIs through the CLINT's msip,
LR/SC and AMOs shared by all harts, and an SC that fails after another hart stored to the
reserved word (unprivileged spec, "A" extension, LR/SC).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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

# An IPI ring through the CLINT: hart h, holding the token, logs its id and raises msip of hart
# h + 1 (mod N), for ROUNDS rounds from hart 0. Even harts wait in wfi with mstatus.MIE clear and
# poll mip.MSIP (wfi resumes on a pending enabled interrupt whatever MIE says, privileged spec
# 3.3.3); odd harts take the machine software interrupt in their handler. The receiver clears
# its own msip, which clears mip.MSIP (privileged spec 3.1.9: MSIP is written by "accesses to
# memory-mapped control registers, which are used by remote harts to provide machine-level
# interprocessor interrupts").
IPI_RING = r"""
  csrr s0, mhartid
  li s1, NHARTS
  la t0, trap
  csrw mtvec, t0
  li t0, 8
  csrs mie, t0              # mie.MSIE
  li s2, CLINT
  slli t0, s0, 2
  add s3, s2, t0            # This hart's msip
  addi t1, s0, 1
  bne t1, s1, 1f
  li t1, 0
1: slli t1, t1, 2
  add s4, s2, t1            # The next hart's msip
  li s5, ROUNDS
  li s6, 0                  # Set by the interrupt handler (odd harts)
  andi s7, s0, 1
  beqz s0, pass_on
wait:
  bnez s7, wait_irq
2: wfi
  csrr t0, mip
  andi t0, t0, 8
  beqz t0, 2b
  sw zero, 0(s3)            # Acknowledge: clear this hart's msip
  j got
wait_irq:
3: csrci mstatus, 8         # Check the flag with interrupts off, then wfi (it wakes on the
  bnez s6, 4f               # pending MSI) and take the interrupt with MIE set
  wfi
  csrsi mstatus, 8
  j 3b
4: csrsi mstatus, 8
  li s6, 0
got:
  csrr t0, mip
  andi t0, t0, 8
  beqz t0, 5f
  FAIL 2                    # mip.MSIP still set after clearing msip
5: bnez s0, pass_on
  addi s5, s5, -1
  beqz s5, check
pass_on:
  la t0, logidx
  li t1, 1
  amoadd.w t2, t1, (t0)
  la t0, log
  add t0, t0, t2
  sb s0, 0(t0)
  li t0, 1
  sw t0, 0(s4)              # IPI to the next hart
  j wait
check:
  la t0, logidx
  lw t1, 0(t0)
  li t2, NHARTS * ROUNDS
  beq t1, t2, 6f
  FAIL 3
6: la t0, log
  li t3, 0                  # Expected id
7: lbu t4, 0(t0)
  beq t4, t3, 8f
  FAIL 4                    # Out of order: the token skipped a hart
8: addi t3, t3, 1
  bne t3, s1, 9f
  li t3, 0
9: addi t0, t0, 1
  addi t2, t2, -1
  bnez t2, 7b
  PASS
trap:
  csrr t0, mcause
  li t1, (1 << 63) | 3      # Machine software interrupt
  bne t0, t1, trap_fail
  beqz s7, trap_fail        # Only odd harts enable it
  sw zero, 0(s3)
  li s6, 1
  mret
""" + TRAP_FAIL + r"""
  .data
  .align 3
logidx: .word 0
log: .space 256
"""

# An LR/SC spin-lock shared by all harts: each takes it ITERS times and, holding it, increments a
# counter with a plain load and store around a delay loop (so that harts are switched inside the
# critical section as well as outside it). Hart 0 waits for every hart to finish (AMO counter) and checks the total; the
# order in which harts took the lock is the signature. LOCKED=0 leaves the lock out: updates must
# then be lost (FAIL 2), which shows that harts do interleave inside the critical section.
SPINLOCK = r"""
  csrr s0, mhartid
  la t0, trap_fail
  csrw mtvec, t0
  li s1, NHARTS
  li s2, ITERS
  la s3, lock
  la s4, counter
  la s5, begin_signature    # Acquisition order, one byte each
  la s6, order_idx
  la s7, amo_counter
loop:
.if LOCKED
1: lr.w t0, (s3)
  bnez t0, 1b               # Held: spin
  li t1, 1
  sc.w t0, t1, (s3)
  bnez t0, 1b
  fence r, rw
.endif
  ld t0, 0(s4)
  li t1, DELAY
2: addi t1, t1, -1
  bnez t1, 2b
  addi t0, t0, 1
  sd t0, 0(s4)
  lw t2, 0(s6)              # Log the taker (under the lock: no AMO needed)
  add t3, s5, t2
  sb s0, 0(t3)
  addi t2, t2, 1
  sw t2, 0(s6)
.if LOCKED
  fence rw, w
  sw zero, 0(s3)            # Release
.endif
  li t1, 1
  amoadd.d zero, t1, (s7)
  li t1, DELAY              # Outside the lock as long as inside: switches land in both
6: addi t1, t1, -1
  bnez t1, 6b
  addi s2, s2, -1
  bnez s2, loop
  la t0, done
  li t1, 1
  amoadd.w zero, t1, (t0)
  bnez s0, park
3: lw t1, 0(t0)
  bne t1, s1, 3b
  ld t0, 0(s4)
  li t1, NHARTS * ITERS
  beq t0, t1, 4f
  FAIL 2                    # Lost updates: the lock did not exclude
4: ld t0, 0(s7)
  beq t0, t1, 5f
  FAIL 3                    # Lost AMO increments
5: PASS
park:
  wfi
  j park
""" + TRAP_FAIL + r"""
  .data
  .align 3
counter: .dword 0
amo_counter: .dword 0
lock: .word 0
done: .word 0
order_idx: .word 0
  .align 6
  .globl begin_signature
begin_signature:
  .space NHARTS * ITERS
  .align 3
  .globl end_signature
end_signature:
"""

# "The SC must fail if a store to the reservation set from another hart can be observed to occur
# between the LR and SC" (unprivileged spec, "A" extension, LR/SC). Hart 0 reserves a word, lets
# hart 1 store to it and waits until it has; its SC must then fail and leave hart 1's value.
# An LR/SC pair with nothing in between succeeds. The other harts park.
SC_AFTER_FOREIGN_STORE = r"""
  csrr s0, mhartid
  la t0, trap_fail
  csrw mtvec, t0
  la s1, word
  la s2, go
  la s3, stored
  li t0, 1
  beq s0, t0, hart1
  bnez s0, park
  lr.w t0, (s1)
  li t1, 1
  sw t1, 0(s2)              # Hart 1 may store now
1: lw t1, 0(s3)
  beqz t1, 1b
  li t1, 5
  sc.w t2, t1, (s1)
  bnez t2, 2f
  FAIL 2                    # The SC succeeded after hart 1's store
2: lw t0, 0(s1)
  li t1, 7
  beq t0, t1, 3f
  FAIL 3                    # The failed SC wrote memory
3: lr.w t0, (s1)
  li t1, 9
  sc.w t2, t1, (s1)
  beqz t2, 4f
  FAIL 4                    # An undisturbed LR/SC pair failed
4: lw t0, 0(s1)
  li t1, 9
  beq t0, t1, 5f
  FAIL 5
5: PASS
hart1:
1: lw t0, 0(s2)
  beqz t0, 1b
  li t0, 7
  sw t0, 0(s1)
  li t0, 1
  sw t0, 0(s3)
park:
  wfi
  j park
""" + TRAP_FAIL + r"""
  .data
  .align 3
word: .word 0
go: .word 0
stored: .word 0
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

# mcounteren is each hart's own (privileged spec 3.1.11): even harts let S-mode read time, odd
# harts do not. Every hart writes its own before any reads (a barrier), then reads time in S-mode:
# only odd harts must trap (illegal instruction).
COUNTEREN_PER_HART = r"""
  csrr s0, mhartid
  la t0, m_trap
  csrw mtvec, t0
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
  andi s2, s0, 1            # 1: this hart must trap
  li t0, 2                  # mcounteren.TM for even harts, 0 for odd ones
  beqz s2, 1f
  li t0, 0
1: csrw mcounteren, t0
  la t0, ready
  li t1, 1
  amoadd.w zero, t1, (t0)
  li t2, NHARTS
2: lw t1, 0(t0)
  bne t1, t2, 2b
  li s1, 0
  li t0, 3 << 11
  csrc mstatus, t0
  li t0, 1 << 11
  csrs mstatus, t0          # MPP = S
  la t0, s_code
  csrw mepc, t0
  mret
s_code:
  rdtime t0
  ecall
  .align 2
m_trap:
  csrr t0, mcause
  li t1, 2
  bne t0, t1, 3f
  li s1, 1                  # Illegal instruction: the rdtime trapped
  csrr t0, mepc
  addi t0, t0, 4
  csrw mepc, t0
  mret
3: li t1, 9
  bne t0, t1, trap_fail
  beq s1, s2, 4f
  FAIL 2                    # rdtime trapped on an even hart, or not on an odd one
4: la t0, done
  li t1, 1
  amoadd.w zero, t1, (t0)
  bnez s0, park
  li t2, NHARTS
5: lw t1, 0(t0)
  bne t1, t2, 5b
  PASS
park:
  wfi
  j park
""" + TRAP_FAIL + r"""
  .data
  .align 3
ready: .word 0
done: .word 0
"""


def program(body: str, **symbols: int) -> Path:
    """The program with `.equ` lines for its symbols."""
    equs = "".join(f"  .equ {k}, {v}\n" for k, v in sorted(symbols.items()))
    return guest_build.build(equs + body)


def run_checked(elf: Path, *args: str, where: dict[int, str] | None = None):
    r = mirage("jit-run", str(elf), "--max-insns", MAX_INSNS, *args, timeout=300)
    if r.returncode != 0:
        fail_checked_run(r, where or {})
    return r


@pytest.mark.parametrize("harts", [2, 4])
def test_ipi_ring_through_clint_msip(toolchain, harts):
    elf = program(IPI_RING, NHARTS=harts, ROUNDS=3, CLINT=CLINT)
    run_checked(elf, "-smp", str(harts), where={2: "mip.MSIP cleared with msip", 3: "token count",
                                                4: "token order"})


@pytest.mark.parametrize("harts", [2, 4])
def test_lr_sc_spinlock_counts_exactly(toolchain, harts, tmp_path):
    iters = 1500
    elf = program(SPINLOCK, NHARTS=harts, ITERS=iters, DELAY=20, LOCKED=1)
    sig = tmp_path / "order.sig"
    run_checked(elf, "-smp", str(harts), "--signature", str(sig), "--signature-granularity", "8",
                where={2: "locked counter total", 3: "AMO counter total"})
    order = _signature_bytes(sig)[:harts * iters]
    # Every hart took the lock ITERS times, and the turns interleaved them.
    assert sorted(set(order)) == list(range(harts))
    assert all(order.count(h) == iters for h in range(harts))
    assert _runs(order) > 2 * harts


def test_unlocked_counter_loses_updates(toolchain):
    """Without the lock the same program loses increments: harts are switched inside the critical
    section, so the locked test above checks mutual exclusion."""
    elf = program(SPINLOCK, NHARTS=2, ITERS=1500, DELAY=20, LOCKED=0)
    r = mirage("jit-run", str(elf), "-smp", "2", "--max-insns", MAX_INSNS, timeout=300)
    assert r.returncode != 0 and b"test 2 failed" in r.stderr, r.stderr.decode()[-2000:]


@pytest.mark.parametrize("harts", [2, 4])
def test_sc_fails_after_another_harts_store(toolchain, harts):
    run_checked(program(SC_AFTER_FOREIGN_STORE), "-smp", str(harts),
                where={2: "SC after a foreign store", 3: "failed SC wrote", 4: "undisturbed SC", 5: "SC value"})


@pytest.mark.parametrize("harts", [2, 4])
def test_icount_runs_are_reproducible(toolchain, tmp_path, harts):
    """--icount: the same interleaving (the lock's acquisition order), output and instruction
    counts of every hart, run after run."""
    iters = 1500
    elf = program(SPINLOCK, NHARTS=harts, ITERS=iters, DELAY=20, LOCKED=1)
    runs = []
    for i in range(2):
        sig, stats = tmp_path / f"order{i}.sig", tmp_path / f"stats{i}.json"
        r = run_checked(elf, "-smp", str(harts), "--icount", "--signature", str(sig), "--stats", str(stats))
        doc = json.loads(stats.read_text())
        runs.append((r.stdout, sig.read_text(), doc["guest_insns"], doc["harts"]))
    assert runs[0] == runs[1]
    assert runs[0][3]["count"] == harts and all(n > iters for n in runs[0][3]["insns"])
    assert _runs(_signature_bytes(tmp_path / "order0.sig")[:harts * iters]) > 2 * harts


def _signature_bytes(path: Path) -> bytes:
    """The bytes of a --signature file (one little-endian hex word a line)."""
    out = b""
    for line in path.read_text().split():
        out += int(line, 16).to_bytes(len(line) // 2, "little")
    return out


def _runs(order: bytes) -> int:
    """Maximal runs of the same hart in the acquisition order."""
    return 1 + sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)


@pytest.mark.parametrize("harts", [2, 4])
def test_mcounteren_is_per_hart(toolchain, harts):
    run_checked(program(COUNTEREN_PER_HART, NHARTS=harts), "-smp", str(harts),
                where={2: "rdtime from S follows this hart's mcounteren.TM"})


@pytest.mark.parametrize("harts", [1, 2])
def test_amo_and_sc_write_rd_when_their_store_raises_an_interrupt(toolchain, harts):
    run_checked(program(AMO_RD_ON_INTERRUPT, CLINT=CLINT), "-smp", str(harts),
                where={2: "amoswap rd (MSIP rose)", 3: "amoswap rd (MSIP fell)", 4: "sc rd (MSIP rose)"})


# OpenSBI (Debian's, unmodified) in virtual M-mode on every hart: fw_jump's lottery picks the boot
# hart, the others wait in its HSM code (wfi, woken by msip). This S-mode payload, on the boot hart,
# starts every other hart through SBI HSM (hart_start with an opaque value), waits until they
# run, fences them (RFNC remote_sfence_vma), sends each an IPI (IPI send_ipi: sip.SSIP), sees
# them stop themselves (hart_stop, then hart_get_status = STOPPED), starts one again and powers
# off. SBI spec v2.0: HSM chapter 9, IPI chapter 7, RFNC chapter 8.
HSM_PAYLOAD = r"""
  .equ HSM, 0x48534D
  .equ IPI, 0x735049
  .equ RFNC, 0x52464E43
  .equ SRST, 0x53525354
  .macro SBI eid, fid
  li a7, \eid
  li a6, \fid
  ecall
  .endm
  .macro CHECK n
  beqz a0, 88f
  li s11, \n
  j fail
88:
  .endm
  .section .text.init, "ax"
  .globl _start
_start:
  mv s0, a0                 # The boot hart (the lottery's winner)
  li s1, NHARTS
  li s2, 0
1: beq s2, s0, 2f           # Start every other hart
  mv a0, s2
  la a1, secondary
  li a2, 0x1000
  add a2, a2, s2            # Opaque: 0x1000 + hart id
  SBI HSM, 0
  CHECK 1
2: addi s2, s2, 1
  blt s2, s1, 1b
  addi s3, s1, -1           # Harts to hear from
  la t0, started
3: lw t1, 0(t0)
  bne t1, s3, 3b
  li s2, 0                  # Each is STARTED (0) now
4: beq s2, s0, 5f
  mv a0, s2
  SBI HSM, 2
  CHECK 2
  mv a0, a1
  CHECK 3
5: addi s2, s2, 1
  blt s2, s1, 4b
  li a0, 0                  # remote_sfence_vma on every hart (hart_mask_base = -1)
  li a1, -1
  li a2, 0
  li a3, 0
  SBI RFNC, 1
  CHECK 4
  li s2, 0                  # An IPI to each other hart
6: beq s2, s0, 7f
  li a0, 1
  mv a1, s2
  SBI IPI, 0
  CHECK 5
7: addi s2, s2, 1
  blt s2, s1, 6b
  la t0, acked
8: lw t1, 0(t0)
  bne t1, s3, 8b
  call wait_stopped
  # Start the next hart again: it runs from the start address once more.
  addi s4, s0, 1
  bne s4, s1, 9f
  li s4, 0
9: mv a0, s4
  la a1, secondary
  li a2, 0x1000
  add a2, a2, s4
  SBI HSM, 0
  CHECK 6
  addi s3, s3, 1
  la t0, started
10: lw t1, 0(t0)
  bne t1, s3, 10b
  li a0, 1
  mv a1, s4
  SBI IPI, 0
  CHECK 7
  la t0, acked
11: lw t1, 0(t0)
  bne t1, s3, 11b
  call wait_stopped
  la a0, ok_msg
  call puts
  li a0, 0
  li a1, 0
  SBI SRST, 0
12: j 12b

# Waits until every hart but the boot hart is STOPPED (1).
wait_stopped:
  mv s5, ra
  li s2, 0
1: beq s2, s0, 3f
2: mv a0, s2
  SBI HSM, 2
  CHECK 8
  li t0, 1
  bne a1, t0, 2b
3: addi s2, s2, 1
  blt s2, s1, 1b
  mv ra, s5
  ret

fail:
  la a0, fail_msg
  call puts
  addi a0, s11, '0'
  SBI 1, 0
  li a0, '\n'
  SBI 1, 0
  li a0, 0
  li a1, 0
  SBI SRST, 0
1: j 1b

puts:
  mv t3, a0
1: lbu a0, 0(t3)
  beqz a0, 2f
  SBI 1, 0
  addi t3, t3, 1
  j 1b
2: ret

# A started hart: a0 = its id, a1 = the opaque value (SBI HSM hart_start).
secondary:
  li t0, 0x1000
  add t0, t0, a0
  beq a1, t0, 1f
  li s11, 9
  j fail
1: csrsi sie, 2             # SSIE; sstatus.SIE stays clear: wfi wakes, nothing traps
  la t0, started
  li t1, 1
  amoadd.w zero, t1, (t0)
2: wfi
  csrr t0, sip
  andi t0, t0, 2
  beqz t0, 2b
  csrci sip, 2
  la t0, acked
  li t1, 1
  amoadd.w zero, t1, (t0)
  SBI HSM, 1                # hart_stop: does not return
  li s11, 7
  j fail

  .data
  .align 3
started: .word 0
acked: .word 0
ok_msg: .asciz "smp payload: harts started, fenced, interrupted, stopped and restarted\n"
fail_msg: .asciz "smp payload: FAIL "
"""

OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic")


@pytest.mark.parametrize("harts", [2, 4])
@pytest.mark.parametrize("offload", ["--offload", "--no-offload"])
def test_opensbi_hsm_ipi_and_rfence(toolchain, harts, offload, tmp_path):
    """--offload answers IPI and RFNC in the monitor; --no-offload sends them through OpenSBI,
    which interrupts the other harts' firmware with msip."""
    firmware = OPENSBI / "fw_jump.elf"
    if not firmware.exists():
        pytest.fail("Debian's opensbi package is missing: run `just setup`")
    payload = guest_build.build(f".equ NHARTS, {harts}\n" + HSM_PAYLOAD, prelude=False,
                                ld=guest_build.PAYLOAD_LD)
    stats = tmp_path / "stats.json"
    r = mirage("jit-run", str(firmware), "--kernel", str(payload), "-smp", str(harts), offload,
               "--max-insns", MAX_INSNS, "--stats", str(stats), timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out[-2000:] + r.stderr.decode(errors="replace")[-2000:]
    assert f"Platform HART Count       : {harts}" in out, out[-3000:]
    assert "smp payload: harts started, fenced, interrupted, stopped and restarted" in out, out[-2000:]
    vfm = json.loads(stats.read_text())["vfm"]
    # Two hart_start calls reached the firmware for each restarted hart, one for the others.
    assert vfm["sbi"]["HSM"]["hart_start"] == harts and vfm["sbi"]["HSM"]["hart_stop"] == harts
    assert vfm["sbi"]["IPI"]["send_ipi"] == harts and vfm["sbi"]["RFNC"]["remote_sfence_vma"] == 1
    offloaded = vfm["offloaded"]
    if offload == "--offload":
        assert offloaded["send_ipi"] == harts and offloaded["remote_sfence_vma"] == 1
    else:
        assert "send_ipi" not in offloaded and "remote_sfence_vma" not in offloaded
        # OpenSBI's own IPIs between firmware harts: machine software interrupts.
        assert vfm["interrupts"]["MSI"] >= harts
