"""Runs a generated program on Mirage (runtime.frontends.snippet.run_code) and on unicorn's RISC-V 64 from the
same initial state, compares the final states and, on a divergence, finds the first diverging
instruction by bisecting over prefix lengths.

unicorn 2.1 is built on QEMU 5.0, which predates three ratified F/D rules. Its runs go through an
adapter (`_FpAdapter`, a hook before every instruction) that applies them, so the reference is the
current spec:
  - NaN-boxing (unprivileged spec 12.2): single results are boxed, and a single operand that is not
    properly boxed reads as the canonical NaN (QEMU 5.0 neither boxes nor checks).
  - fmin/fmax (spec 11.6, minimumNumber/maximumNumber since F 2.2): one signaling NaN operand gives
    the other operand, not the canonical NaN.
  - fmadd family (spec 11.6): inf * 0 + qNaN raises the invalid flag.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.diff.gen import (
    BOX,
    C_EBREAK,
    DATA_ADDR,
    DATA_SIZE,
    EBREAK,
    FpInfo,
    GenInsn,
    Program,
    generate,
)
from translator import isa

MASK32 = 0xFFFFFFFF
CANON_S = 0x7FC00000
FS_DIRTY = 3 << 13
NV = 0x10


@dataclass
class State:
    """The architectural state at the stop, as one emulator saw it."""

    x: list[int]
    f: list[int]
    fflags: int
    frm: int
    pc: int
    stop: str  # "ebreak", or how the run ended otherwise
    data: bytes
    retired: int = 0


def _crashed(stop: str) -> State:
    return State([0] * 32, [0] * 32, 0, 0, 0, stop, b"")


def run_mirage(prog: Program, prefix: int | None = None, opt: int = 2) -> State:
    from runtime.frontends.snippet import run_code

    # Every tier, by seed: the interpreter alone, the cold compiled tier, optimized code at once.
    warm, hot = ((1 << 30, 1 << 30), (0, 1 << 30), (0, 0))[prog.seed % 3]
    try:
        r = run_code(prog.code(prefix), x=prog.x, f=prog.f, fcsr=prog.fcsr, data=prog.data, data_addr=DATA_ADDR,
                     code_addr=prog.code_addr, max_insns=8 * len(prog.insns) + 64, opt=opt,
                     hot_threshold=hot, warm_threshold=warm)
    except Exception as e:  # A crash of the translator or runtime is a divergence like any other
        return _crashed(f"mirage raised {type(e).__name__}: {e}")
    if r.cause == 3:
        stop = "ebreak"
    elif r.cause is None:
        stop = "instruction limit"
    else:
        stop = f"trap cause={r.cause} tval={r.tval:#x}"
    return State(list(r.x), list(r.f), r.fflags, r.frm, r.pc, stop, r.mem(DATA_ADDR, DATA_SIZE), r.retired)


# Reference-model corrections for unicorn (see the module docstring)
def _unbox(v: int) -> int:
    return v & MASK32 if v >> 32 == MASK32 else CANON_S


def _fields(v: int, width: int) -> tuple[int, int]:
    """(exponent, mantissa) of a float bit pattern."""
    if width == 32:
        return (v >> 23) & 0xFF, v & 0x7FFFFF
    return (v >> 52) & 0x7FF, v & 0xFFFFFFFFFFFFF


def _is_nan(v: int, width: int) -> bool:
    e, m = _fields(v, width)
    return e == (0xFF if width == 32 else 0x7FF) and m != 0


def _is_snan(v: int, width: int) -> bool:
    quiet = 1 << (22 if width == 32 else 51)
    return _is_nan(v, width) and not v & quiet


def _is_inf(v: int, width: int) -> bool:
    e, m = _fields(v, width)
    return e == (0xFF if width == 32 else 0x7FF) and m == 0


def _is_zero(v: int, width: int) -> bool:
    return _fields(v, width) == (0, 0)


class _FpAdapter:
    """Keeps the architectural FP registers (`shadow`) and presents unicorn's QEMU 5.0 helpers with
    what the current spec says they see, then fixes up what they produce."""

    def __init__(self, prog: Program, prefix: int | None) -> None:
        n = len(prog.insns) if prefix is None else prefix
        self.meta = {prog.code_addr + off: i.fp
                     for off, i, _k in zip(prog.offsets(), prog.insns, range(n), strict=False)
                     if i.fp is not None}
        self.shadow = list(prog.f)
        self.pending: tuple[FpInfo, list[int], list[int]] | None = None

    def hook(self, uc, addr: int, size: int, _data) -> None:
        from unicorn.riscv_const import UC_RISCV_REG_F0

        self.finish(uc)
        info = self.meta.get(addr)
        if info is None:
            return
        subs: list[int] = []
        ops: list[int] = []
        for s in info.srcs:
            v = self.shadow[s]
            if info.src_s:
                if v >> 32 != MASK32 and s not in subs:
                    uc.reg_write(UC_RISCV_REG_F0 + s, CANON_S)
                    subs.append(s)
                v = _unbox(v)
            ops.append(v)
        self.pending = (info, subs, ops)

    def finish(self, uc) -> None:
        from unicorn.riscv_const import UC_RISCV_REG_F0, UC_RISCV_REG_FFLAGS

        if self.pending is None:
            return
        info, subs, ops = self.pending
        self.pending = None
        v = None if info.dst is None else uc.reg_read(UC_RISCV_REG_F0 + info.dst)
        for s in subs:  # Put back what the substitution hid (the result first: dst may be one of them)
            uc.reg_write(UC_RISCV_REG_F0 + s, self.shadow[s])
        w = info.width
        if info.dst is not None:
            if info.kind == "minmax" and (_is_snan(ops[0], w) or _is_snan(ops[1], w)):
                a, b = ops
                if not (_is_nan(a, w) and _is_nan(b, w)):
                    v = b if _is_nan(a, w) else a
            if info.dst_s:
                v = BOX | (v & MASK32)
            self.shadow[info.dst] = v
            uc.reg_write(UC_RISCV_REG_F0 + info.dst, v)
        if info.kind == "fma":
            a, b, c = ops
            inf_zero = (_is_inf(a, w) and _is_zero(b, w)) or (_is_zero(a, w) and _is_inf(b, w))
            if inf_zero and _is_nan(c, w) and not _is_snan(c, w):
                uc.reg_write(UC_RISCV_REG_FFLAGS, uc.reg_read(UC_RISCV_REG_FFLAGS) | NV)


def run_unicorn(prog: Program, prefix: int | None = None, perturb: tuple[int, int, int] | None = None,
                hooks: list | None = None) -> State:
    """Runs on unicorn. `perturb` = (index, x register, xor mask) flips bits of that register right
    after instruction `index` executes (for the harness's self-test)."""
    from unicorn import UC_ARCH_RISCV, UC_ERR_INSN_INVALID, UC_HOOK_CODE, UC_MODE_RISCV64, Uc, UcError
    from unicorn import riscv_const as R

    code = prog.code(prefix)
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    page = prog.code_addr & ~0xFFF
    uc.mem_map(page, (prog.code_addr + len(code) - page + 0xFFF) & ~0xFFF)
    uc.mem_map(DATA_ADDR - 0x10000, 0x20000)  # Around the compared buffer: a perturbed run may stray
    uc.mem_write(prog.code_addr, code)
    uc.mem_write(DATA_ADDR, prog.data)
    uc.reg_write(R.UC_RISCV_REG_MSTATUS, uc.reg_read(R.UC_RISCV_REG_MSTATUS) | FS_DIRTY)
    for r in range(1, 32):
        uc.reg_write(R.UC_RISCV_REG_X0 + r, prog.x[r])
    for r in range(32):
        uc.reg_write(R.UC_RISCV_REG_F0 + r, prog.f[r])
    uc.reg_write(R.UC_RISCV_REG_FCSR, prog.fcsr)
    start, end = prog.code_addr, prog.code_addr + len(code)
    if prog.category in ("f", "d"):
        adapter = _FpAdapter(prog, prefix)
        uc.hook_add(UC_HOOK_CODE, adapter.hook, begin=start, end=end)
    if perturb is not None:
        index, reg, mask = perturb
        at = start + prog.offsets()[index]
        armed = []

        def flip(uc, addr, size, _data) -> None:
            if len(armed) == 1:  # The instruction after `index`, whichever it is
                armed.append(1)
                uc.reg_write(R.UC_RISCV_REG_X0 + reg, uc.reg_read(R.UC_RISCV_REG_X0 + reg) ^ mask)
            if addr == at and not armed:
                armed.append(1)

        uc.hook_add(UC_HOOK_CODE, flip, begin=start, end=end)
    for kind, fn in hooks or []:
        uc.hook_add(kind, fn, begin=start, end=end)
    stop = "instruction limit"
    try:
        uc.emu_start(start, end, count=8 * len(prog.insns) + 64)
    except UcError as e:
        stop = f"unicorn error: {e}"
        pc = uc.reg_read(R.UC_RISCV_REG_PC)
        if e.errno == UC_ERR_INSN_INVALID and start <= pc < end:
            raw = bytes(uc.mem_read(pc, 4 if pc + 4 <= end else 2))
            half = struct.unpack("<H", raw[:2])[0]
            if half == C_EBREAK or (len(raw) == 4 and struct.unpack("<I", raw)[0] == EBREAK):
                stop = "ebreak"
    return State([0] + [uc.reg_read(R.UC_RISCV_REG_X0 + r) for r in range(1, 32)],
                 [uc.reg_read(R.UC_RISCV_REG_F0 + r) for r in range(32)], uc.reg_read(R.UC_RISCV_REG_FFLAGS),
                 uc.reg_read(R.UC_RISCV_REG_FRM), uc.reg_read(R.UC_RISCV_REG_PC), stop,
                 bytes(uc.mem_read(DATA_ADDR, DATA_SIZE)))


def executed_indices(prog: Program) -> list[int]:
    """Indices of the instructions a run of the whole program executes (on unicorn)."""
    from unicorn import UC_HOOK_CODE

    index = {prog.code_addr + off: n for n, off in enumerate(prog.offsets())}
    seen: list[int] = []

    def hook(uc, addr, size, _data) -> None:
        if addr in index:
            seen.append(index[addr])

    run_unicorn(prog, hooks=[(UC_HOOK_CODE, hook)])
    return seen


def compare(m: State, u: State) -> list[tuple[str, str, str]]:
    """Differences as (what, Mirage's value, unicorn's value)."""
    out: list[tuple[str, str, str]] = []
    if m.stop != u.stop:
        out.append(("stop", m.stop, u.stop))
        if not m.data or not u.data:
            return out
    if m.pc != u.pc:
        out.append(("pc", f"{m.pc:#x}", f"{u.pc:#x}"))
    for r in range(1, 32):
        if m.x[r] != u.x[r]:
            out.append((f"x{r}/{isa.ABI_NAMES[r]}", f"{m.x[r]:#018x}", f"{u.x[r]:#018x}"))
    for r in range(32):
        if m.f[r] != u.f[r]:
            out.append((f"f{r}/{isa.FP_NAMES[r]}", f"{m.f[r]:#018x}", f"{u.f[r]:#018x}"))
    if m.fflags != u.fflags:
        out.append(("fflags", _flags(m.fflags), _flags(u.fflags)))
    if m.frm != u.frm:
        out.append(("frm", str(m.frm), str(u.frm)))
    for off in range(0, DATA_SIZE, 8):
        a, b = m.data[off:off + 8], u.data[off:off + 8]
        if a != b:
            out.append((f"mem[{DATA_ADDR + off:#x}]", f"{struct.unpack('<Q', a)[0]:#018x}",
                        f"{struct.unpack('<Q', b)[0]:#018x}"))
    return out


def _flags(v: int) -> str:
    names = [n for n, bit in (("NV", 16), ("DZ", 8), ("OF", 4), ("UF", 2), ("NX", 1)) if v & bit]
    return f"{v:#x}({'|'.join(names) or '-'})"


def reproduce_command(category: str, seed: int, length: int, opt: int = 2) -> str:
    return (f"MIRAGE_DIFF={category}:{seed}:{length}:{opt} python3 -m pytest -q "
            "tests/test_diff_unicorn.py::test_reproduce")


@dataclass
class Divergence:
    category: str
    seed: int
    length: int
    opt: int  # Mirage's codegen optimization level
    index: int  # First diverging instruction (-1: the initial states already differ)
    pc: int
    insn: GenInsn | None
    diffs: list[tuple[str, str, str]]
    before: State | None = None  # The (agreeing) state just before the instruction
    names: tuple[str, str] = ("mirage", "unicorn")
    extra: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"divergence: category={self.category} seed={self.seed} length={self.length} opt={self.opt} "
                 f"index={self.index} pc={self.pc:#x}"]
        if self.insn is not None:
            i = self.insn
            d = isa.decode(i.word)
            mirage = isa.disasm(d, self.pc) if d is not None else "(illegal for Mirage's decoder)"
            hexw = f"{i.word:08x}" if i.length == 4 else f"{i.word:04x}"
            lines.append(f"  insn {hexw}: {mirage}    [generated as: {' '.join(i.asm.split())}]")
            if self.before is not None and d is not None:
                lines.append("  operands before: " + _operands(d, self.before))
        a, b = self.names
        for what, m, u in self.diffs[:24]:
            lines.append(f"  {what}: {a}={m} {b}={u}")
        if len(self.diffs) > 24:
            lines.append(f"  ... {len(self.diffs) - 24} more differences")
        lines += self.extra
        if self.names == ("mirage", "unicorn"):
            lines.append("  reproduce: " + reproduce_command(self.category, self.seed, self.length, self.opt))
        return "\n".join(lines)


def _operands(d: isa.Insn, s: State) -> str:
    parts = []
    for slot in ("rs1", "rs2", "rs3"):
        if slot == "rs3" and d.fmt != "R4":
            continue
        if slot == "rs2" and d.fmt in ("I", "L", "FL", "SH5", "SH6", "U", "J", "R1", "R1F", "LR", "CSR", "CSRI", "N",
                                       "FENCE"):
            continue
        if slot == "rs1" and d.fmt in ("U", "J", "CSRI", "N", "FENCE"):
            continue
        r = getattr(d, slot)
        if isa._is_fp_reg(d.name, slot):
            parts.append(f"{isa.FP_NAMES[r]}={s.f[r]:#018x}")
        else:
            parts.append(f"{isa.ABI_NAMES[r]}={s.x[r]:#x}")
    if d.name.startswith("f") and d.name not in ("fence", "fence.i"):
        parts.append(f"frm={s.frm} fflags={_flags(s.fflags)}")
    return " ".join(parts) or "-"


def check(prog: Program, perturb: tuple[int, int, int] | None = None, opt: int = 2
          ) -> tuple[int, Divergence | None]:
    """(instructions Mirage executed, the first divergence or None)."""
    m, u = run_mirage(prog, opt=opt), run_unicorn(prog, perturb=perturb)
    diffs = compare(m, u)
    if not diffs:
        return m.retired, None
    div = bisect(prog, diffs, lambda p, k: run_mirage(p, k, opt), lambda p, k: run_unicorn(p, k, perturb), opt)
    return m.retired, div


Runner = Callable[[Program, "int | None"], State]


def bisect(prog: Program, diffs: list[tuple[str, str, str]], run_a: Runner, run_b: Runner, opt: int = 2,
           names: tuple[str, str] = ("mirage", "unicorn")) -> Divergence:
    """Finds the shortest diverging prefix: instructions from its end on are ebreaks, so prefixes of a
    straight-line program (with forward branches only) stop right after their last instruction."""
    n = len(prog.insns)
    a0 = run_a(prog, 0)
    d0 = compare(a0, run_b(prog, 0))
    if d0:
        return Divergence(prog.category, prog.seed, prog.length, opt, -1, prog.code_addr, None, d0, names=names,
                          extra=["  (the initial states already differ: a harness problem)"])
    lo, hi, bad, good = 0, n, diffs, a0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        aa = run_a(prog, mid)
        dd = compare(aa, run_b(prog, mid))
        if dd:
            hi, bad = mid, dd
        else:
            lo, good = mid, aa
    index = hi - 1
    return Divergence(prog.category, prog.seed, prog.length, opt, index, prog.code_addr + prog.offsets()[index],
                      prog.insns[index], bad, good, names=names)


@dataclass
class SweepResult:
    programs: int = 0
    executed: int = 0  # Instructions Mirage retired
    divergence: Divergence | None = None


def sweep(category: str, seeds: range | list[int], length: int, opt: int = 2) -> SweepResult:
    """Checks the programs of `seeds` in order, stopping at the first divergence."""
    res = SweepResult()
    for seed in seeds:
        prog = generate(category, seed, length)
        executed, div = check(prog, opt=opt)
        res.programs += 1
        res.executed += executed
        if div is not None:
            res.divergence = div
            break
    return res


def _sweep_task(args: tuple[str, int, int, int, int]) -> SweepResult:
    category, first, count, length, opt = args
    return sweep(category, range(first, first + count), length, opt)


def parallel_sweep(category: str, first_seed: int, programs: int, length: int, opt: int, workers: int | None = None,
                   chunk: int = 8) -> SweepResult:
    """sweep() over seeds first_seed.. on a process pool; the divergence reported is the one of the
    lowest seed (chunks are consumed in order and the pool is stopped at the first one)."""
    import multiprocessing

    workers = workers or min(4, os.cpu_count() or 1)
    tasks = [(category, s, min(chunk, first_seed + programs - s), length, opt)
             for s in range(first_seed, first_seed + programs, chunk)]
    total = SweepResult()
    if workers <= 1:
        results = map(_sweep_task, tasks)
        return _merge(total, results)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.diff.harness", "runtime.frontends.snippet", "unicorn"])
    with ctx.Pool(workers) as pool:
        return _merge(total, pool.imap(_sweep_task, tasks))


def _merge(total: SweepResult, results) -> SweepResult:
    for r in results:
        total.programs += r.programs
        total.executed += r.executed
        if r.divergence is not None:
            total.divergence = r.divergence
            break
    return total


__all__ = ["Divergence", "State", "SweepResult", "bisect", "check", "compare", "reproduce_command", "run_mirage",
           "run_unicorn", "sweep", "parallel_sweep"]
