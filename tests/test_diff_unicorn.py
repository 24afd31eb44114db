"""Differential tests against unicorn's RISC-V 64 on random instruction sequences.

Per category (int, m, a, c, f, d) the default run executes at least 100,000 random instructions
with Mirage's codegen at opt=0 (the emitted IR is the same at every level; opt=0 compiles ~4x
faster), plus a sample at Mirage's default opt=2; `just fuzz` sweeps many more seeds at opt=2 and
longer sequences. A divergence report names the first diverging instruction and a one-line command
reproducing it (`MIRAGE_DIFF=category:seed:length:opt ... ::test_reproduce`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from tests.diff import gen, harness, qemu
from translator import isa

LENGTH = gen.DEFAULT_LENGTH
DEFAULT_INSNS = int(os.environ.get("MIRAGE_DIFF_INSNS", "100000"))  # Per category, at opt=0
OPT2_PROGRAMS = 10  # Per category, at opt=2
FUZZ_PROGRAMS = int(os.environ.get("MIRAGE_FUZZ_PROGRAMS", "1000"))  # Per category and `just fuzz` case


def _sweep(category: str, first_seed: int, insns: int, length: int, opt: int) -> harness.SweepResult:
    """Runs programs from first_seed on until `insns` instructions have executed (or one diverges)."""
    total = harness.SweepResult()
    seed = first_seed
    while total.executed < insns and total.divergence is None:
        programs = max(1, -(-(insns - total.executed) * 10 // (9 * length)))
        r = harness.parallel_sweep(category, seed, programs, length, opt)
        total.programs += r.programs
        total.executed += r.executed
        total.divergence = r.divergence
        seed += programs
    return total


@pytest.mark.parametrize("category", gen.CATEGORIES)
def test_diff(category: str) -> None:
    r = _sweep(category, 0, DEFAULT_INSNS, LENGTH, opt=0)
    if r.divergence is not None:
        pytest.fail(r.divergence.report(), pytrace=False)
    assert r.executed >= DEFAULT_INSNS
    r2 = harness.parallel_sweep(category, 500_000, OPT2_PROGRAMS, LENGTH, opt=2)
    if r2.divergence is not None:
        pytest.fail(r2.divergence.report(), pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("category", gen.CATEGORIES)
@pytest.mark.parametrize("length,opt", [(300, 2), (2000, 0)])
def test_fuzz(category: str, length: int, opt: int) -> None:
    programs = FUZZ_PROGRAMS if length <= 300 else max(1, FUZZ_PROGRAMS * 300 // length)
    r = harness.parallel_sweep(category, 1_000_000, programs, length, opt)
    if r.divergence is not None:
        pytest.fail(r.divergence.report(), pytrace=False)


def test_reproduce() -> None:
    """Re-runs one program: MIRAGE_DIFF=category:seed[:length[:opt]] (from a divergence report)."""
    spec = os.environ.get("MIRAGE_DIFF")
    if not spec:
        pytest.skip("set MIRAGE_DIFF=category:seed[:length[:opt]] to reproduce a divergence")
    parts = spec.split(":")
    category, seed = parts[0], int(parts[1])
    length = int(parts[2]) if len(parts) > 2 else LENGTH
    opt = int(parts[3]) if len(parts) > 3 else 2
    _executed, div = harness.check(gen.generate(category, seed, length), opt=opt)
    if div is not None:
        pytest.fail(div.report(), pytrace=False)


# The harness itself
def test_generation_is_reproducible() -> None:
    for category in gen.CATEGORIES:
        a, b = gen.generate(category, 42), gen.generate(category, 42)
        assert a.code() == b.code() and a.x == b.x and a.f == b.f and a.data == b.data and a.fcsr == b.fcsr
        assert gen.generate(category, 43).code() != a.code()


@pytest.mark.parametrize("category,at", [("int", 0.0), ("int", 0.5), ("a", 1.0), ("c", 0.15), ("m", 0.5)])
def test_harness_reports_injected_divergence(category: str, at: float) -> None:
    """Flipping a bit of unicorn's reserved base register right after an executed instruction must be
    reported as a divergence at exactly that instruction."""
    prog = gen.generate(category, 7)
    executed = harness.executed_indices(prog)
    index = executed[min(len(executed) - 1, int(at * len(executed)))]
    _n, div = harness.check(prog, perturb=(index, prog.base, 8), opt=0)
    assert div is not None
    assert div.index == index, div.report()
    assert div.pc == prog.code_addr + prog.offsets()[index]
    assert any(what.startswith(f"x{prog.base}/") for what, _m, _u in div.diffs), div.report()
    text = div.report()
    assert f"index={index} " in text and "seed=7 " in text
    assert f"MIRAGE_DIFF={category}:7:{LENGTH}:0 " in text


def test_harness_agrees_without_injection() -> None:
    prog = gen.generate("int", 7)
    executed, div = harness.check(prog, opt=0)
    assert div is None and executed > LENGTH // 2


def _unicorn_f(words: list[int], f: dict[int, int], fcsr: int = 0) -> harness.State:
    insns = [gen.GenInsn(w, 4, "", "", fp) for w, fp in words]
    prog = gen.Program("f", 0, len(insns), insns, [0] * 32, [f.get(i, 0) for i in range(32)], fcsr,
                       bytes(gen.DATA_SIZE), 1)
    return harness.run_unicorn(prog)


def test_reference_applies_current_fp_rules() -> None:
    """The unicorn adapter: NaN-boxing, fmin/fmax with a signaling NaN, and inf*0+qNaN."""
    box = gen.BOX
    fadd = (gen.encode("fadd.s", rd=3, rs1=1, rs2=2, rm=0), gen.FpInfo((1, 2), 3, True, True))
    # Properly boxed: 1 + 1 = 2, boxed
    s = _unicorn_f([fadd], {1: box | 0x3F800000, 2: box | 0x3F800000})
    assert s.f[3] == box | 0x40000000 and s.stop == "ebreak"
    # Improperly boxed operand reads as the canonical NaN
    s = _unicorn_f([fadd], {1: 0x3F800000, 2: box | 0x3F800000})
    assert s.f[3] == box | 0x7FC00000 and s.f[1] == 0x3F800000
    # ... also when it is the destination too
    fadd_rd = (gen.encode("fadd.s", rd=1, rs1=1, rs2=2, rm=0), gen.FpInfo((1, 2), 1, True, True))
    s = _unicorn_f([fadd_rd], {1: 0x3F800000, 2: box | 0x3F800000})
    assert s.f[1] == box | 0x7FC00000
    # Signaling NaN in fmin/fmax: the other operand, with NV
    fmin = (gen.encode("fmin.s", rd=3, rs1=1, rs2=2), gen.FpInfo((1, 2), 3, True, True, "minmax", 32))
    s = _unicorn_f([fmin], {1: box | 0x7F800001, 2: box | 0x3F800000})
    assert s.f[3] == box | 0x3F800000 and s.fflags == harness.NV
    fmax = (gen.encode("fmax.d", rd=3, rs1=1, rs2=2), gen.FpInfo((1, 2), 3, False, False, "minmax", 64))
    s = _unicorn_f([fmax], {1: 0x3FF0000000000000, 2: 0x7FF0000000000001})
    assert s.f[3] == 0x3FF0000000000000 and s.fflags == harness.NV
    # Multiply-add of inf * 0 + qNaN: the canonical NaN, with NV
    fma = (gen.encode("fmadd.d", rd=4, rs1=1, rs2=2, rs3=3, rm=0), gen.FpInfo((1, 2, 3), 4, False, False, "fma", 64))
    s = _unicorn_f([fma], {1: 0x7FF0000000000000, 2: 0, 3: 0x7FF8000000000000})
    assert s.f[4] == 0x7FF8000000000000 and s.fflags == harness.NV
    # Moves (fmv.x.w, like fsw) take the raw low bits of an improperly boxed register
    fmv = (gen.encode("fmv.x.w", rd=5, rs1=1), gen.FpInfo())
    s = _unicorn_f([fmv], {1: 0x3F800000})
    assert s.x[5] == 0x3F800000


def _objdump(code: bytes) -> dict[int, str]:
    with tempfile.NamedTemporaryFile(suffix=".bin") as fh:
        fh.write(code)
        fh.flush()
        out = subprocess.run(["riscv64-linux-gnu-objdump", "-D", "-b", "binary", "-m", "riscv:rv64",
                              "-M", "no-aliases,numeric", fh.name], capture_output=True, text=True, check=True).stdout
    lines = {}
    for ln in out.splitlines():
        parts = ln.split("\t")
        if len(parts) >= 3 and parts[0].strip().endswith(":"):
            text = "\t".join(parts[2:]).split("#")[0]
            lines[int(parts[0].strip()[:-1], 16)] = " ".join(text.split())
    return lines


@pytest.mark.parametrize("category", gen.CATEGORIES)
def test_encodings_match_binutils(category: str, toolchain) -> None:
    """The generator's encoder is checked against binutils, not against Mirage's decoder."""
    for seed in range(4):
        prog = gen.generate(category, seed)
        listing = _objdump(prog.code())
        for off, i in zip(prog.offsets(), prog.insns, strict=True):
            want = " ".join(i.asm.split())
            assert listing.get(off) == want, f"{category}:{seed} at {off:#x}: {i.word:#x}"


@pytest.mark.parametrize("category", gen.CATEGORIES)
def test_decoder_agrees_with_generator(category: str) -> None:
    """Mirage's decoder yields the base instruction each generated encoding stands for."""
    for seed in range(4):
        for i in gen.generate(category, seed).insns:
            d = isa.decode(i.word)
            assert d is not None and d.name == i.base and d.length == i.length, (i.asm, d)


# The reference model itself, against QEMU 7 (which has the current F/D rules built in)
@pytest.fixture(scope="session")
def qemu_system() -> None:
    if not qemu.available():
        pytest.fail("qemu-system-riscv64 is missing: run `just setup`")


def _check_reference(category: str, seeds: range) -> None:
    for seed in seeds:
        prog = gen.generate(category, seed)
        diffs = harness.compare(qemu.run_qemu(prog), harness.run_unicorn(prog))
        if diffs:
            div = harness.bisect(prog, diffs, lambda p, k: qemu.run_qemu(p, k), lambda p, k: harness.run_unicorn(p, k),
                                 names=("qemu", "unicorn"))
            pytest.fail(div.report(), pytrace=False)


@pytest.mark.parametrize("category", ["f", "d"])
def test_reference_matches_qemu(category: str, qemu_system) -> None:
    _check_reference(category, range(10))


@pytest.mark.slow
@pytest.mark.parametrize("category", gen.CATEGORIES)
def test_reference_matches_qemu_sweep(category: str, qemu_system) -> None:
    _check_reference(category, range(1_000_000, 1_000_000 + FUZZ_PROGRAMS // 3))
