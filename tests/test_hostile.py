"""A hostile-guest sweep: random privileged and memory instructions, random MMIO, random trap
vectors and handlers, random words, each program run under --max-insns. Whatever a program does,
the run must end (no hang), by the guest's own exit or one of Mirage's stops, with no host crash
and no traceback. `just test` runs a few seeds; `just fuzz` (marker slow) many."""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import mirage

MAX_INSNS = 20_000
RAM = 16 << 20  # -m 16M: guest RAM [0x80000000, 0x81000000), the monitor's memory above it
ADDRESSES = [
    0x0, 0x1000, 0x100000,  # Nothing, nothing, the test finisher
    0x2000000, 0x2004000, 0x200BFF8,  # CLINT: msip, mtimecmp, mtime
    0xC000000, 0xC002000, 0xC200000, 0xC200004,  # PLIC: priorities, enables, threshold, claim
    0x10000000, 0x10000005, 0x10000001,  # UART: RBR/THR, LSR, IER
    0x80000000, 0x80001000, 0x80002000, 0x80800000,  # Own code, tohost's page, data, RAM
    0x80000000 + RAM - 8, 0x80000000 + RAM, 0x80000000 + RAM + 0x1000,  # The end of RAM, monitor RAM
    0x7FFFFFFFF000, 0xFFFFFFFFFFFFF000, 0x8000000000000000,
]
CSRS = [0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x30A, 0x340, 0x341, 0x342, 0x343, 0x344,
        0x3A0, 0x3B0, 0x3B1, 0x100, 0x104, 0x105, 0x106, 0x140, 0x141, 0x142, 0x143, 0x144, 0x180,
        0xF11, 0xF14, 0xB00, 0xB02, 0xC00, 0xC01, 0xC02, 0x7A0, 0x7B0, 0x001, 0x003]
REGS = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "t0", "t1", "t2", "t3",
        "sp", "ra"]
LOADS = ["lb", "lh", "lw", "ld", "lbu", "lhu", "lwu", "flw", "fld"]
STORES = ["sb", "sh", "sw", "sd", "fsw", "fsd"]
AMOS = ["amoswap.w", "amoadd.d", "amoor.w", "amomaxu.d", "lr.w", "lr.d", "sc.w", "sc.d"]
PRIV = ["mret", "sret", "wfi", "ecall", "ebreak", "fence.i", "fence", "sfence.vma", "sfence.vma a0, a1"]
HANDLERS = {
    "skip": "  csrr t4, mepc\n  addi t4, t4, 4\n  csrw mepc, t4\n  mret\n",
    "fail": "  FAIL 9\n",
    "spin": "1: j 1b\n",
    "faults": "  ld t4, 0(zero)\n  mret\n",
    "return": "  mret\n",
}


def _value(rng: random.Random) -> int:
    v = rng.choice(ADDRESSES) if rng.random() < 0.7 else rng.getrandbits(64)
    return (v + rng.choice([0, 0, 0, 1, 2, 4, 8, -8])) & ((1 << 64) - 1)


def _insn(rng: random.Random) -> str:
    r = rng.random()
    reg, base = rng.choice(REGS), rng.choice(REGS)
    off = rng.choice([0, 0, 4, 8, -8, 1, 3, 2047, -2048])
    if r < 0.2:
        return f"  li {reg}, {_value(rng):#x}"
    if r < 0.35:
        op = rng.choice(LOADS)
        dst = "ft0" if op.startswith("f") else reg
        return f"  {op} {dst}, {off}({base})"
    if r < 0.5:
        op = rng.choice(STORES)
        src = "ft1" if op.startswith("f") else reg
        return f"  {op} {src}, {off}({base})"
    if r < 0.57:
        op = rng.choice(AMOS)
        return f"  {op} {reg}, ({base})" if op.startswith("lr") else f"  {op} {reg}, {rng.choice(REGS)}, ({base})"
    if r < 0.75:
        csr = rng.choice(CSRS) if rng.random() < 0.85 else rng.getrandbits(12)
        op = rng.choice(["csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci"])
        src = rng.choice(REGS) if not op.endswith("i") else str(rng.getrandbits(5))
        return f"  {op} {reg}, {csr:#x}, {src}"
    if r < 0.85:
        return f"  {rng.choice(PRIV)}"
    if r < 0.9:
        vec = rng.choice(["handler", "handler + 1", "handler + 2", "0", "0x1000", "0x10000000",
                          f"{_value(rng):#x}"])
        return f"  li t4, {vec}\n  csrw mtvec, t4" if not vec.startswith("handler") else \
            f"  la t4, {vec.split()[0]}\n  addi t4, t4, {vec.split()[-1] if '+' in vec else 0}\n  csrw mtvec, t4"
    if r < 0.97:
        return f"  .word {rng.getrandbits(32):#010x}"
    return f"  jalr {reg}"


def program(seed: int, length: int = 60) -> str:
    rng = random.Random(seed)
    lines = ["  la t4, handler", "  csrw mtvec, t4"]
    lines += [f"  li {r}, {_value(rng):#x}" for r in REGS if rng.random() < 0.8]
    lines += [_insn(rng) for _ in range(length)]
    lines.append("  PASS")
    lines.append("  .align 2\nhandler:")
    lines.append(HANDLERS[rng.choice(sorted(HANDLERS))])
    return "\n".join(lines) + "\n"


def run_seed(asm, seed: int) -> None:
    elf = asm(program(seed))
    try:
        r = mirage("jit-run", "-m", "16M", "--icount", "--max-insns", str(MAX_INSNS), str(elf), input=b"",
                   timeout=120)
    except Exception as e:  # noqa: BLE001 (a hang: subprocess.TimeoutExpired)
        pytest.fail(f"seed {seed}: {e}\n{program(seed)}", pytrace=False)
    err = r.stderr.decode(errors="replace")
    lines = err.strip().splitlines()
    ok = r.returncode >= 0 and "Traceback" not in err and all(ln.startswith("mirage:") for ln in lines)
    if not ok:
        pytest.fail(f"seed {seed}: exit {r.returncode}\n{err}\n{program(seed)}", pytrace=False)


@pytest.mark.parametrize("seed", range(int(os.environ.get("MIRAGE_HOSTILE_SEEDS", "6"))))
def test_hostile_guest(asm, seed):
    run_seed(asm, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1000 + int(os.environ.get("MIRAGE_HOSTILE_FUZZ", "300"))))
def test_hostile_guest_sweep(asm, seed):
    run_seed(asm, seed)
