"""Security policies (vfm/policy/) against attack firmwares.

An M-mode firmware hands over to an S-mode payload that holds a secret (in memory, in s1, a2 and
sscratch) and maps its memory through Sv39 page tables. The payload then makes one SBI call per
attack (vendor extension ATTACK_EID, function = the attack), during which the firmware tries to:
 1 read the secret            2 overwrite it           3 jump into OS code
 4 read it through MPRV and the OS's page tables       5 lock a vPMP entry granting itself RWX, then read it
 6 point mtvec into OS code and trap                   7 point mepc into OS code (the OS resumes there)
 8 read registers the call does not pass, and sscratch 9 overwrite the OS's registers and sscratch
10 keep the CPU forever, after moving the machine timer away from the OS's deadline
The payload checks after each call whether the attack worked, prints one digit per attack 1-9
("attack results: 000000000": none worked), runs attack 10 and expects the call to come back
failed with its timer interrupt taken ("timer ok"), then powers off (success iff nothing worked).

Without a policy every attack works (so the tests show the policy, not a broken attack); under
protect-payload none does, and each is reported; under audit every one works and the firmware's
accesses to OS memory are in the log.
"""

from __future__ import annotations

import json
import re

import pytest
from elftools.elf.elffile import ELFFile

from tests.conftest import mirage
from tests.guest import build as guest_build

ATTACK_EID = 0x09000A77  # SBI vendor-specific range
SECRET = 0x5EC7E75EC7E75EC7
GIGA = 1 << 30
N_ATTACKS = 9  # Reported as digits; attack 10 (the CPU) is reported by "timer ok"

PAYLOAD = rf"""
  .option norvc
  .equ EID, {ATTACK_EID:#x}
  .equ SECRET, {SECRET:#x}
  .equ GIGA, {GIGA:#x}
  .section .text.init, "ax"
  .globl _start
_start:
  lla sp, stack_top
  lla t0, strap
  csrw stvec, t0
  # Sv39: VA 0 -> devices, VA 1 GiB -> RAM (the attack through MPRV), VA 2 GiB -> RAM identity.
  lla t0, pt
  li t1, 0xC7
  sd t1, 0(t0)
  li t1, ((0x80000000 >> 12) << 10) | 0xCF
  sd t1, 8(t0)
  sd t1, 16(t0)
  srli t0, t0, 12
  li t1, 8 << 60
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
  li s1, SECRET
  lla t0, secret
  sd s1, 0(t0)
  csrw sscratch, s1
  # The monitor's emulation for the OS still works: a misaligned store and load (offloaded).
  lla t0, scratch
  sd s1, 3(t0)
  ld t1, 3(t0)
  beq t1, s1, 1f
  li t1, 0x100000
  li t0, (0x66 << 16) | 0x3333
  sw t0, 0(t1)
1: li s0, 0
  # 1: read
  li a6, 1
  call attack
  li t0, SECRET
  bne a1, t0, 1f
  ori s0, s0, 1 << 0
1: # 2: write
  li a6, 2
  call attack
  lla t1, secret
  ld t0, 0(t1)
  beq t0, s1, 1f
  ori s0, s0, 1 << 1
  sd s1, 0(t1)
1: # 3: jump into OS code
  li a6, 3
  call attack
  call pwned_check
  beqz a0, 1f
  ori s0, s0, 1 << 2
1: # 4: MPRV through the page tables (the OS itself reads the secret there first: TLB filled)
  lla t0, secret
  li t1, GIGA
  sub t0, t0, t1
  ld t0, 0(t0)
  li a6, 4
  call attack
  li t0, SECRET
  bne a1, t0, 1f
  ori s0, s0, 1 << 3
1: # 5: vPMP with the lock bit
  li a6, 5
  call attack
  li t0, SECRET
  bne a1, t0, 1f
  ori s0, s0, 1 << 4
1: # 6: mtvec into OS code
  li a6, 6
  call attack
  call pwned_check
  beqz a0, 1f
  ori s0, s0, 1 << 5
1: # 7: mepc into OS code
  li a6, 7
  call attack
  call pwned_check
  beqz a0, 1f
  ori s0, s0, 1 << 6
1: # 8: registers the call does not pass (it takes none) and sscratch
  li a2, SECRET
  li a6, 8
  call attack
  li t0, SECRET
  bne a1, t0, 1f
  ori s0, s0, 1 << 7
1: # 9: the firmware overwrites the OS's registers
  li a2, 0x1202
  li a3, 0x1303
  li a4, 0x1404
  li a5, 0x1505
  li s2, 0x2202
  li s3, 0x2303
  li s4, 0x2404
  li s5, 0x2505
  li s6, 0x2606
  li s7, 0x2707
  li s8, 0x2808
  li s9, 0x2909
  li s10, 0x2A0A
  li s11, 0x2B0B
  li t3, 0x3303
  li t4, 0x3404
  li t5, 0x3505
  li t6, 0x3606
  li a6, 9
  call attack
  li t0, 0x1202
  bne a2, t0, 2f
  li t0, 0x1303
  bne a3, t0, 2f
  li t0, 0x1404
  bne a4, t0, 2f
  li t0, 0x1505
  bne a5, t0, 2f
  li t0, 0x2202
  bne s2, t0, 2f
  li t0, 0x2303
  bne s3, t0, 2f
  li t0, 0x2404
  bne s4, t0, 2f
  li t0, 0x2505
  bne s5, t0, 2f
  li t0, 0x2606
  bne s6, t0, 2f
  li t0, 0x2707
  bne s7, t0, 2f
  li t0, 0x2808
  bne s8, t0, 2f
  li t0, 0x2909
  bne s9, t0, 2f
  li t0, 0x2A0A
  bne s10, t0, 2f
  li t0, 0x2B0B
  bne s11, t0, 2f
  li t0, 0x3303
  bne t3, t0, 2f
  li t0, 0x3404
  bne t4, t0, 2f
  li t0, 0x3505
  bne t5, t0, 2f
  li t0, 0x3606
  bne t6, t0, 2f
  csrr t0, sscratch
  bne t0, s1, 2f
  li t0, SECRET
  bne s1, t0, 2f
  j 1f
2: ori s0, s0, 1 << 8
1: lla a0, results
  call puts
  li s2, 0
3: srl t0, s0, s2
  andi a0, t0, 1
  addi a0, a0, '0'
  call putc
  addi s2, s2, 1
  li t0, {N_ATTACKS}
  blt s2, t0, 3b
  li a0, '\n'
  call putc
  # 10: the CPU. The OS's timer fires 10 ms from now (SBI TIME, served by the monitor), with its
  # interrupt enabled; the firmware then never returns from the attack call.
  li s3, 0
  rdtime a0
  li t0, 100000
  add a0, a0, t0
  li a6, 0
  li a7, 0x54494D45
  call sbi
  li t0, 0x20
  csrs sie, t0
  csrsi sstatus, 2
  li a6, 10
  call attack
  mv s4, a0
  li t1, 1000000
4: bnez s3, 5f
  addi t1, t1, -1
  bnez t1, 4b
5: li t0, -1
  bne s4, t0, 6f
  beqz s3, 6f
  lla a0, timer_ok
  call puts
  bnez s0, 6f
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
6: slli t1, s0, 16
  li t0, 0x3333 | (1 << 31)
  or t1, t1, t0
  li t0, 0x100000
  sw t1, 0(t0)
7: j 7b

attack:
  li a7, EID
sbi:
  ecall
  ret

pwned_check:
  lla t1, pwned
  ld a0, 0(t1)
  sd zero, 0(t1)
  ret

  # OS code the firmware must never run, in any mode: it marks that it ran.
  .globl gadget
gadget:
  li t0, 1
  lla t1, pwned
  sd t0, 0(t1)
  ret

putc:
  li t0, 0x10000000
  sb a0, 0(t0)
  ret
puts:
  mv t2, ra
  mv t3, a0
1: lbu a0, 0(t3)
  beqz a0, 2f
  call putc
  addi t3, t3, 1
  j 1b
2: mv ra, t2
  ret

  .align 2
strap:
  csrr t0, scause
  bgez t0, 1f
  addi s3, s3, 1
  li t0, 0x20
  csrc sie, t0
  sret
1: li t1, 0x100000
  li t0, (0x77 << 16) | 0x3333
  sw t0, 0(t1)
  j 1b

results: .asciz "attack results: "
timer_ok: .asciz "timer ok\n"
  .data
  .align 12
  .globl pt
pt: .zero 4096
  .globl secret
secret: .dword 0
pwned: .dword 0
scratch: .zero 16
  .align 4
  .zero 4096
stack_top:
"""

# The attack firmware: hands over to the payload, then serves the attack calls. Assembled with the
# payload's addresses (a vendor firmware knows its platform's layout). All instructions are 4 bytes.
FIRMWARE = r"""
  .option norvc
  .section .text.init, "ax"
  .globl _start
_start:
  lla sp, fw_stack_top
  csrw mscratch, sp
  lla t0, trap
  csrw mtvec, t0
  li t0, 0x222
  csrw mideleg, t0
  li t0, 7
  csrw mcounteren, t0
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0
  li t0, PAYLOAD
  csrw mepc, t0
  mret

  # Frame: x1..x31 at 8 * n, the OS's pc at 256.
  .align 2
trap:
  csrrw sp, mscratch, sp
  addi sp, sp, -272
  .irp n, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
  sd x\n, (8 * \n)(sp)
  .endr
  csrr t0, mscratch
  sd t0, 16(sp)
  csrr t0, mepc
  sd t0, 256(sp)
  csrr t0, mcause
  li t1, 9
  bne t0, t1, unexpected
  ld a7, 136(sp)
  ld a6, 128(sp)
  li a0, -2
  li a1, 0
  li t0, ATTACK_EID
  bne a7, t0, ret_ecall
  # Faults of the attacks come back to the attack (fault:)
  lla t0, fault
  csrw mtvec, t0
  li a0, 0
  .irp n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
  li t0, \n
  beq a6, t0, atk_\n
  .endr
done:
  lla t0, trap
  csrw mtvec, t0
ret_ecall:
  sd a0, 80(sp)
  sd a1, 88(sp)
  ld t0, 256(sp)
  addi t0, t0, 4
  csrw mepc, t0
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0
  .irp n, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
  ld x\n, (8 * \n)(sp)
  .endr
  addi sp, sp, 272
  csrrw sp, mscratch, sp
  mret

unexpected:
  li t0, 0x100000
  li t1, (0xEE << 16) | 0x3333
  sw t1, 0(t0)
1: j 1b

  # An access fault of an attack: back after the faulting instruction, or to ra for a fetch.
  .align 2
fault:
  csrr t6, mcause
  li t5, 1
  bne t6, t5, 1f
  csrw mepc, ra
  mret
1: csrr t6, mepc
  addi t6, t6, 4
  csrw mepc, t6
  mret

atk_1:  # Read the secret
  li t0, SECRET_PA
  ld a1, 0(t0)
  j done
atk_2:  # Overwrite it
  li t0, SECRET_PA
  li t1, 0xBAD
  sd t1, 0(t0)
  j done
atk_3:  # Run OS code
  li t0, GADGET
  jalr ra, 0(t0)
  j done
atk_4:  # MPRV with MPP = S through the OS's page tables (satp is hidden: the firmware sets it)
  li t0, PT_SATP
  csrw satp, t0
  li t1, 0x1800
  csrc mstatus, t1
  li t1, 0x800
  csrs mstatus, t1
  li t1, 0x20000
  csrs mstatus, t1
  li t0, SECRET_VA
  ld a1, 0(t0)
  csrc mstatus, t1
  j done
atk_5:  # A locked vPMP entry granting RWX everywhere
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x9f
  csrw pmpcfg0, t0
  li t0, SECRET_PA
  ld a1, 0(t0)
  j done
atk_6:  # mtvec into OS code, then a trap
  li t0, GADGET
  csrw mtvec, t0
  lla ra, 1f
  ebreak
1: j done
atk_7:  # The OS resumes in OS code of the firmware's choice
  li t0, GADGET - 4
  sd t0, 256(sp)
  j done
atk_8:  # Registers the call does not take (s1, a2) and sscratch
  ld t0, 72(sp)
  ld t1, 96(sp)
  csrr t2, sscratch
  or a1, t0, t1
  or a1, a1, t2
  j done
atk_9:  # Overwrite a2-a5, s2-s11, t3-t6 and sscratch
  li t0, 0xDEAD
  .irp n, 12, 13, 14, 15, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
  sd t0, (8 * \n)(sp)
  .endr
  csrw sscratch, t0
  j done
atk_10:  # Keep the CPU, with the timer taken from the OS's deadline first
  li t0, 0x2004000
  li t1, -1
  sd t1, 0(t0)
1: j 1b

  .data
  .align 4
  .zero 4096
fw_stack_top:
"""


def _symbols(elf) -> dict[str, int]:
    with open(elf, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


@pytest.fixture(scope="module")
def attack(toolchain):
    payload = guest_build.build(PAYLOAD, prelude=False, ld=guest_build.PAYLOAD_LD)
    sym = _symbols(payload)
    defs = {"PAYLOAD": 0x80200000, "ATTACK_EID": ATTACK_EID, "SECRET_PA": sym["secret"],
            "SECRET_VA": sym["secret"] - GIGA, "GADGET": sym["gadget"], "PT_SATP": (8 << 60) | (sym["pt"] >> 12)}
    firmware = guest_build.build("".join(f"  .equ {k}, {v:#x}\n" for k, v in defs.items()) + FIRMWARE,
                                 prelude=False)
    return firmware, payload, sym


def _run(attack, tmp_path, *policy: str):
    firmware, payload, _ = attack
    stats = tmp_path / "stats.json"
    # --icount: the timer deadlines are instruction counts, so every run is the same. --offload:
    # the firmware serves only the attack calls; the monitor's fast path serves the OS's timer.
    r = mirage("jit-run", str(firmware), "--kernel", str(payload), "--icount", "--max-insns", "20000000",
               "--offload", "--stats", str(stats), *policy)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    return r.returncode, out, err, json.loads(stats.read_text())["vfm"]


def _results(out: str) -> str:
    m = re.search(rf"attack results: ([01]{{{N_ATTACKS}}})", out)
    assert m, out
    return m.group(1)


def test_attacks_succeed_without_a_policy(attack, tmp_path):
    code, out, err, vfm = _run(attack, tmp_path)
    assert _results(out) == "1" * N_ATTACKS, out + err
    # The firmware keeps the CPU: the run ends at the instruction limit, the OS never resumes.
    assert code == 3 and "instruction limit reached" in err, err
    assert "timer ok" not in out
    assert "policies" not in vfm


def test_protect_payload_stops_every_attack(attack, tmp_path):
    code, out, err, vfm = _run(attack, tmp_path, "--policy", "protect-payload")
    assert _results(out) == "0" * N_ATTACKS, out + err
    assert "timer ok" in out, out + err
    assert code == 0, err
    sym = attack[2]
    during = f"during {ATTACK_EID:#x}."
    # Each blocked attempt is reported on stderr, with the address, the firmware pc and the call.
    reports = [line for line in err.splitlines() if line.startswith("mirage: protect-payload: blocked:")]
    expect = [
        rf"firmware read of OS memory at {sym['secret']:#x} \(8 bytes, pc 0x8000[0-9a-f]+, {during}1\)",
        rf"firmware write of OS memory at {sym['secret']:#x} \(8 bytes, pc 0x8000[0-9a-f]+, {during}2\)",
        rf"firmware execute of OS memory at {sym['gadget']:#x} \({during}3\)",
        # Attack 4: the walk of the OS's page table is the first access the firmware makes.
        rf"firmware read of OS memory at {sym['pt'] + 8:#x} \(8 bytes through MPRV, pc 0x8000[0-9a-f]+, {during}4\)",
        rf"firmware read of OS memory at {sym['secret']:#x} \(8 bytes, pc 0x8000[0-9a-f]+, {during}5\)",
        rf"firmware set mtvec to {sym['gadget']:#x}, in OS memory \(write dropped\)",
        rf"firmware returned to the OS at {sym['gadget']:#x}, not 0x[0-9a-f]+ \(after {ATTACK_EID:#x}\.7\)",
        rf"firmware still running {ATTACK_EID:#x}\.10 with an OS interrupt pending",
    ]
    assert len(reports) == len(expect), "\n".join(reports)
    for line, pattern in zip(reports, expect, strict=True):
        assert re.search(pattern, line), (pattern, line)
    assert vfm["policies"]["protect-payload"]["blocked"] == {
        "read": 3, "write": 1, "execute": 1, "mtvec": 1, "resume": 1, "cpu": 1}
    # The OS's timer was the monitor's (offloaded), and taken by the OS after the call was ended;
    # the monitor emulated the OS's misaligned accesses.
    assert vfm["offloaded"] == {"set_timer": 1, "timer_interrupt": 1, "misaligned_store": 1,
                                "misaligned_load": 1}
    # `mirage cache stats` lists the counters with the monitor's.
    r = mirage("cache", "stats", str(tmp_path / "stats.json"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"policies protect-payload\.blocked\.read\s.*\b3\b", r.stdout.decode()), r.stdout.decode()


def test_audit_logs_each_access_and_blocks_nothing(attack, tmp_path):
    log = tmp_path / "audit.jsonl"
    code, out, err, vfm = _run(attack, tmp_path, "--policy", "audit", "--audit-log", str(log))
    assert _results(out) == "1" * N_ATTACKS, out + err
    assert code == 3, err
    sym = attack[2]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0] == {"mirage_audit": 1, "os_memory": [0x80200000, 0x80000000 + (256 << 20)]}
    seen = {(r["call"], r["addr"], r["access"], r["mprv"]) for r in lines[1:]}
    call = f"{ATTACK_EID:#x}."
    secret_va_pte = sym["pt"] + 8  # Level-2 entry of VA 1 GiB
    for want in [(call + "1", sym["secret"], "r", False), (call + "2", sym["secret"], "w", False),
                 (call + "3", sym["gadget"], "x", False), (call + "4", secret_va_pte, "r", True),
                 (call + "4", sym["secret"], "r", True), (call + "5", sym["secret"], "r", False),
                 (call + "6", sym["gadget"], "x", False)]:
        assert want in seen, (want, sorted(seen))
    # Attacks 7-9 touch no OS memory from the firmware; nothing else is there.
    assert {c for c, *_ in seen} == {call + str(i) for i in range(1, 7)}, sorted(seen)
    assert vfm["policies"]["audit"]["accesses"] == sum(r["n"] for r in lines[1:])
    # The summary: pages by call.
    r = mirage("audit", str(log))
    assert r.returncode == 0, r.stderr
    summary = r.stdout.decode()
    page = sym["secret"] & ~0xFFF
    assert re.search(rf"^  {re.escape(call)}2: 1 pages, 1 accesses$", summary, re.M), summary
    assert re.search(rf"^    {page:#x} -w- +1 accesses  pc 0x8000", summary, re.M), summary


# Real firmware: Debian's OpenSBI 1.1 serves an S-mode payload that uses the timer, an IPI, a remote
# fence and the console (tests/test_vfm.py), with or without the monitor's fast path.
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_opensbi_serves_the_os_under_protect_payload(toolchain, offload, tmp_path):
    from tests.test_opensbi import FW_DIR
    from tests.test_vfm import OPENSBI_PAYLOAD

    payload = guest_build.build(OPENSBI_PAYLOAD, prelude=False, ld=guest_build.PAYLOAD_LD)
    stats = tmp_path / "stats.json"
    r = mirage("jit-run", str(FW_DIR / "fw_jump.elf"), "--kernel", str(payload), "--max-insns", "300000000",
               "--stats", str(stats), "--policy", "protect-payload", *(() if offload else ("--no-offload",)))
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "payload: sbi ok" in out, out[-2000:] + err[-2000:]
    assert "blocked" not in err, err
    vfm = json.loads(stats.read_text())["vfm"]
    assert vfm["policies"]["protect-payload"] == {"blocked": {}}
    if not offload:  # OpenSBI's own timer and IPI interrupts crossed the policy too
        assert vfm["interrupts"]["MTI"] >= 1 and vfm["interrupts"]["MSI"] >= 1


# OpenSBI emulates a misaligned store and load of the OS when the monitor's fast path is off: it
# reads the instruction and the data through MPRV. audit shows it; protect-payload refuses it, and
# the OS gets the misaligned exception itself (what OpenSBI does when it cannot emulate).
MISALIGNED_PAYLOAD = r"""
  .option norvc
  .section .text.init, "ax"
  .globl _start
_start:
  lla t0, strap
  csrw stvec, t0
  lla t0, buf
  li t1, 0x1122334455667788
  sd t1, 3(t0)
  ld t2, 3(t0)
  bne t1, t2, bad
  lla s0, ok
  call puts
shutdown:
  li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 0
  ecall
1: j 1b
bad:
  lla s0, badmsg
  call puts
  j shutdown
puts:
  mv s1, ra
1: lbu a0, 0(s0)
  beqz a0, 2f
  li a7, 1
  ecall
  addi s0, s0, 1
  j 1b
2: mv ra, s1
  ret
  .align 2
strap:
  csrr t0, scause
  li t1, 6
  bne t0, t1, bad
  csrr t0, stval
  lla t1, buf
  addi t1, t1, 3
  bne t0, t1, bad
  lla s0, trapmsg
  call puts
  j shutdown
ok: .asciz "payload: misaligned ok\n"
badmsg: .asciz "payload: WRONG\n"
trapmsg: .asciz "payload: store_misaligned at buf+3 taken in S\n"
  .data
  .align 4
  .globl buf
buf: .zero 32
"""


def test_opensbi_misaligned_emulation_audited_then_refused(toolchain, tmp_path):
    from tests.test_opensbi import FW_DIR

    payload = guest_build.build(MISALIGNED_PAYLOAD, prelude=False, ld=guest_build.PAYLOAD_LD)
    sym = _symbols(payload)
    base = ("jit-run", str(FW_DIR / "fw_jump.elf"), "--kernel", str(payload), "--max-insns", "300000000",
            "--no-offload")
    log = tmp_path / "audit.jsonl"
    r = mirage(*base, "--policy", "audit", "--audit-log", str(log))
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and "payload: misaligned ok" in out, out[-2000:]
    recs = [json.loads(x) for x in log.read_text().splitlines()[1:]]
    # OpenSBI fetched the store through MPRV and wrote the data bytes into buf, ...
    store = [x for x in recs if x["call"] == "trap store_misaligned"]
    assert store and all(x["mprv"] for x in store)
    assert {x["addr"] for x in store if x["access"] == "w"} == {sym["buf"] + 3 + i for i in range(8)}
    # ... then read them back for the load.
    load = [x for x in recs if x["call"] == "trap load_misaligned"]
    assert {x["addr"] for x in load if x["access"] == "r" and x["size"] == 1} == {sym["buf"] + 3 + i for i in range(8)}
    r = mirage(*base, "--policy", "protect-payload")
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "payload: store_misaligned at buf+3 taken in S" in out, out[-2000:] + err
    assert re.search(r"blocked: firmware read of OS memory at 0x802[0-9a-f]+ \(2 bytes through MPRV, "
                     r"pc 0x800[0-9a-f]+, during trap store_misaligned\)", err), err


def test_policy_and_audit_options_errors(tmp_path):
    for args, msg in [(("--policy", "nope"), "unknown policy 'nope' (known: audit, protect-payload)"),
                      (("--policy", "audit"), "--policy audit needs --audit-log FILE"),
                      (("--audit-log", str(tmp_path / "a")), "--audit-log needs --policy audit"),
                      (("--policy", "audit", "--audit-log", str(tmp_path / "no" / "a")), "No such file")]:
        r = mirage("jit-run", "demo", *args)
        err = r.stderr.decode()
        assert r.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, (args, err)
    bad = tmp_path / "bad.log"
    bad.write_text("hello\n")
    for path, msg in [(bad, "not an audit log"), (tmp_path / "missing", "No such file")]:
        r = mirage("audit", str(path))
        err = r.stderr.decode()
        assert r.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, err
