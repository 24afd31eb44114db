"""F and D extensions (unprivileged spec, chapters 11-12).

FP registers hold raw 64-bit patterns; single values are NaN-boxed (upper 32 bits all ones,
spec 12.2) and an improperly boxed single reads as the canonical NaN. Every NaN result is the
canonical NaN (spec 11.3).

How arithmetic gets exact results and flags:

* Fast path, inline: when the effective rounding mode is RNE and fflags.NX is already set, the
  host computes the result in its default environment (Python's MXCSR: round to nearest, no
  FTZ/DAZ). If the result is normal (FLT/DBL_MIN < |r| < inf) the only flag the operation can
  raise is NX (NaN, infinity and tiny results are excluded), so nothing changes (QEMU's
  "hardfloat" idea). For add/sub any finite result qualifies: tiny sums are exact.
* Slow path, out of line: a strictfp function of a process-wide library (`_slowlib`) saves the
  host MXCSR, loads one with the guest rounding mode and clear flags, performs the operation with
  a constrained intrinsic, reads the flags, restores the host MXCSR and maps x86 flags to fflags.
  RMM (ties to max magnitude) has no x86 counterpart: it is computed by translator.softfloat.
  The host MXCSR is back before the slow function returns, so blocks, callouts and Python never
  see a guest MXCSR.
* Comparisons, min/max, sign injection, classification and conversions to integers are inline
  integer/FP logic with explicit flags (no MXCSR).

Within a block, fflags and the checked frm are kept in SSA values (reloaded after a join that can
bypass their definition); fflags is stored back whenever it changes, so every exit and callout
sees the current value. mstatus.FS becomes Dirty once per path through the block.
"""

from __future__ import annotations

import ctypes
import struct
import weakref
from dataclasses import dataclass, field

from translator import abi, softfloat
from translator.emit.registry import emits
from translator.ir import BlockBuilder, const
from translator.isa import Insn

# Extra declarations the FP emitters need in every module.
DECLS = """
declare double @llvm.fma.f64(double, double, double)
declare float @llvm.fma.f32(float, float, float)
declare double @llvm.sqrt.f64(double)
declare float @llvm.sqrt.f32(float)
declare double @llvm.roundeven.f64(double)
declare double @llvm.trunc.f64(double)
declare double @llvm.floor.f64(double)
declare double @llvm.ceil.f64(double)
declare double @llvm.round.f64(double)
declare i64 @llvm.ctlz.i64(i64, i1)
declare i64 @llvm.cttz.i64(i64, i1)
declare double @llvm.fabs.f64(double)
declare float @llvm.fabs.f32(float)
"""
# The slow-path functions are called by name and linked to the process-wide library when a module
# uses them (`import_slow_functions`): compiled blocks embed no address of this process, so their
# object code can be cached across runs (runtime/core/pcache.py).
SLOW_FUNCTIONS = [f"fps_{op}_{s}" for s in ("s", "d") for op in softfloat.OPS]
DECLS += "".join(f"declare i64 @{n}(ptr, i64, i64, i64, i64)\n" for n in SLOW_FUNCTIONS)
SLOW_CALL = "call i64 @fps_"  # How a module's text calls one (see import_slow_functions)

BOX = 0xFFFFFFFF00000000

# fflags bits (spec 11.2, Table 11.2)
NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16


@dataclass(frozen=True)
class _Fmt:
    """Per-precision spellings: LLVM types and bit patterns."""

    d: bool
    it: str  # Integer type of the raw value
    ft: str  # LLVM FP type
    sign: int
    inf: int  # Bits of +inf (also the exponent mask)
    qbit: int  # Quiet bit of a NaN
    min_normal: int
    canonical: int


_D = _Fmt(True, "i64", "double", 1 << 63, 0x7FF0000000000000, 1 << 51, 0x0010000000000000, 0x7FF8000000000000)
_S = _Fmt(False, "i32", "float", 1 << 31, 0x7F800000, 1 << 22, 0x00800000, 0x7FC00000)


def _fmt(name: str) -> _Fmt:
    return _D if name.endswith(".d") else _S


def _c(v: int, f: _Fmt) -> str:
    """An integer constant of the format's raw type (signed decimal)."""
    bits = 64 if f.d else 32
    v &= (1 << bits) - 1
    return str(v - (1 << bits) if v >> (bits - 1) else v)


def box32(b: BlockBuilder, v32_as_i64: str) -> str:
    return b.op("or", v32_as_i64, const(BOX))


def unbox32(b: BlockBuilder, v: str) -> str:
    """The i32 bits of a single operand; canonical NaN if not NaN-boxed."""
    hi = b.op("lshr", v, "32")
    ok = b.icmp("eq", hi, "4294967295")
    lo = b.cast("trunc", v, "i64", "i32")
    return b.select(ok, lo, "2143289344", "i32")


def _src(b: BlockBuilder, r: int, f: _Fmt) -> str:
    """Operand bits of FP register r in format f (i64 or i32)."""
    v = b.f(r)
    if f.d:
        return v
    # A value this block boxed is known to be properly boxed.
    return _st(b).unboxed.get(v) or unbox32(b, v)


def _set_dst(b: BlockBuilder, r: int, v: str, f: _Fmt) -> None:
    """Writes a result of format f to FP register r (NaN-boxing singles, spec 12.2)."""
    if f.d:
        b.set_f(r, v)
    else:
        boxed = box32(b, b.cast("zext", v, "i32", "i64"))
        _st(b).unboxed[boxed] = v
        b.set_f(r, boxed)
    mark_dirty(b)


# Per-block state. Blocks may contain forward branches that rejoin later (BlockBuilder.pending):
# a value defined now is only reused before the first join that can merge a path bypassing it.
_NEVER = -1  # "Valid until" of a value not yet defined


def _valid_until(b: BlockBuilder) -> int | None:
    """Instruction index where a value defined now stops dominating (None: the block's end)."""
    pending = getattr(b, "pending", None)
    return min(pending) if pending else None


def _valid(b: BlockBuilder, until: int | None) -> bool:
    return until is None or b.index < until


@dataclass
class _State:
    fflags: str = ""  # i32, current accrued flags (also stored in the hart on every change)
    fflags_until: int | None = _NEVER
    frm: str = ""  # i64, dynamic rounding mode checked valid
    frm_rne: str = ""  # i1, frm == RNE
    frm_until: int | None = _NEVER
    dirty_until: int | None = _NEVER  # mstatus.FS set to Dirty
    unboxed: dict[str, str] = field(default_factory=dict)  # Boxed i64 SSA value -> its i32 value
    fpval: dict[str, str] = field(default_factory=dict)  # Bits SSA value -> the same value FP-typed


_states: weakref.WeakKeyDictionary[BlockBuilder, _State] = weakref.WeakKeyDictionary()


def forget_state(b: BlockBuilder) -> None:
    """Starts a new member of a region: values kept so far do not dominate it."""
    _states.pop(b, None)


def _st(b: BlockBuilder) -> _State:
    s = _states.get(b)
    if s is None:
        s = _states[b] = _State()
    return s


def mark_dirty(b: BlockBuilder) -> None:
    """Sets mstatus.FS = Dirty and SD (privileged spec 3.1.6.6), once per path through the block."""
    s = _st(b)
    if _valid(b, s.dirty_until):
        return
    b.uses_fp = True
    m = b.load_field(abi.OFF_MSTATUS)
    m = b.op("or", m, const((3 << 13) | (1 << 63)))
    b.store_field(abi.OFF_MSTATUS, m)
    s.dirty_until = _valid_until(b)


def _fflags(b: BlockBuilder) -> str:
    s = _st(b)
    if not _valid(b, s.fflags_until):
        _set_fflags(b, b.load_field(abi.OFF_FFLAGS, "i32"))
    return s.fflags


def _set_fflags(b: BlockBuilder, v: str) -> None:
    """Records the current fflags value (the caller has stored it in the hart)."""
    s = _st(b)
    s.fflags = v
    s.fflags_until = _valid_until(b)


def _accrue(b: BlockBuilder, flags: str) -> None:
    """fflags |= flags (an i32 value); stored at once so exits and callouts see it."""
    v = b.op("or", _fflags(b), flags, "i32")
    b.store_field(abi.OFF_FFLAGS, v, "i32")
    _set_fflags(b, v)
    mark_dirty(b)


def _rm(b: BlockBuilder, i: Insn) -> tuple[str, str] | None:
    """The effective rounding mode (i64) and whether it is RNE (i1). Reserved modes raise illegal
    instruction (spec 11.2: "If frm is set to an invalid value (101-111), any subsequent attempt to
    execute a floating-point operation with a dynamic rounding mode will raise an illegal
    instruction exception"; rm 101/110 are reserved encodings). Returns None if the block ended."""
    if i.rm in (5, 6):
        b.sys_callout(i.raw, abi.SYS_ILLEGAL)
        return None
    if i.rm != 7:
        return str(i.rm), "true" if i.rm == 0 else "false"
    s = _st(b)
    if not _valid(b, s.frm_until):
        # frm only changes through CSR instructions, which end blocks: one check per path.
        v = b.load_field(abi.OFF_FRM, "i32")
        bad = b.icmp("ugt", v, "4", "i32")
        ill, ok = b.label("frmbad"), b.label("frmok")
        b.emit(f"br i1 {bad}, label %{ill}, label %{ok}, !prof !1")
        b.start_block(ill)
        b.sys_callout(i.raw, abi.SYS_ILLEGAL)
        b.terminated = False
        b.start_block(ok)
        s.frm = b.cast("zext", v, "i32", "i64")
        s.frm_rne = b.icmp("eq", v, "0", "i32")
        s.frm_until = _valid_until(b)
    return s.frm, s.frm_rne


# The slow-path library: one strictfp function per (operation, format), compiled once per process.
_X86_RC = 0x9C  # RISC-V rm (0-3) -> MXCSR.RC as 2-bit fields: RNE 00, RTZ 11, RDN 01, RUP 10
_MXCSR_BASE = 0x1F80  # All exceptions masked, flags clear, RC nearest, FTZ/DAZ off
_MXCSR_CONTROL = 0xE040  # FTZ, RC, DAZ
_OPNUM = {n: k for k, n in enumerate(softfloat.OPS)}
_FMA_NEG = {"fmadd": (False, False), "fmsub": (False, True), "fnmsub": (True, False), "fnmadd": (True, True)}

_SOFT_CB = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64,
                            ctypes.c_uint64, ctypes.c_int64, ctypes.c_void_p)


def _soft(op: int, dst64: int, a: int, b: int, c: int, rm: int, out: int) -> None:
    """Slow-path operations the host cannot do (RMM), in Python."""
    try:
        r, fl = softfloat.compute(op, bool(dst64), a, b, c, rm)
    except Exception:  # noqa: BLE001 (never unwind into generated code; report and go on)
        import traceback

        traceback.print_exc()
        r, fl = (0x7FF8000000000000 if dst64 else 0x7FC00000), softfloat.NV
    res = (ctypes.c_uint64 * 2).from_address(out)
    res[0] = r
    res[1] = fl


_soft_cb = _SOFT_CB(_soft)


def _slow_fn_ir(op: str, f: _Fmt) -> str:
    """IR of `i64 @fps_<op>_<s|d>(ptr h, i64 a, i64 b, i64 c, i64 rm)`: the result bits; the
    operation's flags are accrued into the hart's fflags."""
    name = f"fps_{op}_{'d' if f.d else 's'}"
    sfx = "f64" if f.d else "f32"
    lines: list[str] = []
    n = [0]

    def t() -> str:
        n[0] += 1
        return f"%v{n[0]}"

    def emit(s: str) -> None:
        lines.append("  " + s)

    def fp_arg(v: str, negate: bool = False) -> str:
        x = v
        if not f.d:
            x = t()
            emit(f"{x} = trunc i64 {v} to i32")
        if negate:
            y = t()
            emit(f"{y} = xor {f.it} {x}, {_c(f.sign, f)}")
            x = y
        y = t()
        emit(f"{y} = bitcast {f.it} {x} to {f.ft}")
        return y

    strict = 'metadata !"round.dynamic", metadata !"fpexcept.strict"'
    # Operands are converted before the MXCSR switch (pure bit moves).
    extra_nv = None
    if op in ("add", "sub", "mul", "div"):
        x, y = fp_arg("%a"), fp_arg("%b")
        opname = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[op]
        body = f"call {f.ft} @llvm.experimental.constrained.{opname}.{sfx}({f.ft} {x}, {f.ft} {y}, {strict}) #0"
    elif op == "sqrt":
        x = fp_arg("%a")
        body = f"call {f.ft} @llvm.experimental.constrained.sqrt.{sfx}({f.ft} {x}, {strict}) #0"
    elif op in _FMA_NEG:
        neg_p, neg_c = _FMA_NEG[op]
        x, y, z = fp_arg("%a", neg_p), fp_arg("%b"), fp_arg("%c", neg_c)
        body = (f"call {f.ft} @llvm.experimental.constrained.fma.{sfx}({f.ft} {x}, {f.ft} {y}, {f.ft} {z}, "
                f"{strict}) #0")
        # Spec 11.6: "The fused multiply-add instructions must set the invalid operation exception
        # flag when the multiplicands are infinity and zero, even when the addend is a quiet NaN."
        mag = _c(f.sign - 1, f)
        ab = []
        for v in ("%a", "%b"):
            raw = v
            if not f.d:
                raw = t()
                emit(f"{raw} = trunc i64 {v} to i32")
            m = t()
            emit(f"{m} = and {f.it} {raw}, {mag}")
            ab.append(m)
        conds = []
        for p, q in ((ab[0], ab[1]), (ab[1], ab[0])):
            i1, z1, both = t(), t(), t()
            emit(f"{i1} = icmp eq {f.it} {p}, {_c(f.inf, f)}")
            emit(f"{z1} = icmp eq {f.it} {q}, 0")
            emit(f"{both} = and i1 {i1}, {z1}")
            conds.append(both)
        extra_nv = t()
        emit(f"{extra_nv} = or i1 {conds[0]}, {conds[1]}")
    elif op == "cvt_f":
        if f.d:
            x = t()
            emit(f"{x} = trunc i64 %a to i32")
            xf = t()
            emit(f"{xf} = bitcast i32 {x} to float")
            body = f'call double @llvm.experimental.constrained.fpext.f64.f32(float {xf}, metadata !"fpexcept.strict") #0'
        else:
            xf = t()
            emit(f"{xf} = bitcast i64 %a to double")
            body = f"call float @llvm.experimental.constrained.fptrunc.f32.f64(double {xf}, {strict}) #0"
    else:  # cvt_w, cvt_wu, cvt_l, cvt_lu: from an integer
        src = "i32" if op in ("cvt_w", "cvt_wu") else "i64"
        conv = "uitofp" if op.endswith("u") else "sitofp"
        x = "%a"
        if src == "i32":
            x = t()
            emit(f"{x} = trunc i64 %a to i32")
        body = f"call {f.ft} @llvm.experimental.constrained.{conv}.{sfx}.{src}({src} {x}, {strict}) #0"
    pre = "\n".join(lines)
    lines.clear()
    r = t()
    emit(f"{r} = {body}")
    op_line = "\n".join(lines)
    lines.clear()
    # x86 MXCSR flags (IE 0, DE 1, ZE 2, OE 3, UE 4, PE 5) to fflags (NX 0, UF 1, OF 2, DZ 3, NV 4)
    st = "%st"
    parts = []
    for shift_kind, mask, amount in (("shl", 1, 4), ("shl", 4, 1), ("lshr", 8, 1), ("lshr", 16, 3),
                                     ("lshr", 32, 5)):
        m, s = t(), t()
        emit(f"{m} = and i64 {st}, {mask}")
        emit(f"{s} = {shift_kind} i64 {m}, {amount}")
        parts.append(s)
    acc = parts[0]
    for p in parts[1:]:
        o = t()
        emit(f"{o} = or i64 {acc}, {p}")
        acc = o
    if extra_nv is not None:
        e1, e2 = t(), t()
        emit(f"{e1} = select i1 {extra_nv}, i64 16, i64 0")
        emit(f"{e2} = or i64 {acc}, {e1}")
        acc = e2
    ri = t()
    emit(f"{ri} = bitcast {f.ft} {r} to {f.it}")
    mag, isnan, res = t(), t(), t()
    emit(f"{mag} = and {f.it} {ri}, {_c(f.sign - 1, f)}")
    emit(f"{isnan} = icmp ugt {f.it} {mag}, {_c(f.inf, f)}")
    emit(f"{res} = select i1 {isnan}, {f.it} {_c(f.canonical, f)}, {f.it} {ri}")
    if not f.d:
        z = t()
        emit(f"{z} = zext i32 {res} to i64")
        res = z
    post = "\n".join(lines)
    return f"""
define i64 @{name}(ptr %h, i64 %a, i64 %b, i64 %c, i64 %rm) #0 {{
entry:
  %out = alloca [2 x i64], align 8
  %save = alloca i32, align 4
  %tmp = alloca i32, align 4
  %isrmm = icmp eq i64 %rm, 4
  br i1 %isrmm, label %soft, label %hw
soft:
  call void @mirage_fp_soft(i64 {_OPNUM[op]}, i64 {int(f.d)}, i64 %a, i64 %b, i64 %c, i64 %rm, ptr %out) #0
  %sr = load i64, ptr %out
  %sfp = getelementptr inbounds i64, ptr %out, i64 1
  %sf = load i64, ptr %sfp
  %sflp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_FFLAGS}
  %sfl0 = load i32, ptr %sflp
  %sfl = trunc i64 %sf to i32
  %sfl1 = or i32 %sfl0, %sfl
  store i32 %sfl1, ptr %sflp
  ret i64 %sr
hw:
{pre}
  %sh = shl i64 %rm, 1
  %rc0 = lshr i64 {_X86_RC}, %sh
  %rc = and i64 %rc0, 3
  %rc13 = shl i64 %rc, 13
  %mx0 = or i64 %rc13, {_MXCSR_BASE}
  %mx = trunc i64 %mx0 to i32
  call void @llvm.x86.sse.stmxcsr(ptr %save) #0
  store i32 %mx, ptr %tmp
  call void @llvm.x86.sse.ldmxcsr(ptr %tmp) #0
{op_line}
  call void @llvm.x86.sse.stmxcsr(ptr %tmp) #0
  %st32 = load i32, ptr %tmp
  call void @llvm.x86.sse.ldmxcsr(ptr %save) #0
  %st = zext i32 %st32 to i64
{post}
  %flp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_FFLAGS}
  %fl0 = load i32, ptr %flp
  %fla = trunc i64 {acc} to i32
  %fl1 = or i32 %fl0, %fla
  store i32 %fl1, ptr %flp
  ret i64 {res}
}}
"""


_SLOW_OPS = softfloat.OPS


def slowlib_ir() -> str:
    fns = [_slow_fn_ir(op, f) for f in (_S, _D) for op in _SLOW_OPS]
    decls = "\n".join(
        [
            "declare void @mirage_fp_soft(i64, i64, i64, i64, i64, i64, ptr)",
            "declare void @llvm.x86.sse.ldmxcsr(ptr)",
            "declare void @llvm.x86.sse.stmxcsr(ptr)",
        ]
        + [f"declare {ft} @llvm.experimental.constrained.{o}.{s}({ft}, {ft}, metadata, metadata)"
           for ft, s in (("float", "f32"), ("double", "f64")) for o in ("fadd", "fsub", "fmul", "fdiv")]
        + [f"declare {ft} @llvm.experimental.constrained.sqrt.{s}({ft}, metadata, metadata)"
           for ft, s in (("float", "f32"), ("double", "f64"))]
        + [f"declare {ft} @llvm.experimental.constrained.fma.{s}({ft}, {ft}, {ft}, metadata, metadata)"
           for ft, s in (("float", "f32"), ("double", "f64"))]
        + ["declare float @llvm.experimental.constrained.fptrunc.f32.f64(double, metadata, metadata)",
           "declare double @llvm.experimental.constrained.fpext.f64.f32(float, metadata)"]
        + [f"declare {ft} @llvm.experimental.constrained.{c}.{s}.{src}({src}, metadata, metadata)"
           for ft, s in (("float", "f32"), ("double", "f64")) for c in ("sitofp", "uitofp")
           for src in ("i32", "i64")]
    )
    probe = """
define i32 @mirage_fp_mxcsr() {
  %p = alloca i32, align 4
  call void @llvm.x86.sse.stmxcsr(ptr %p)
  %v = load i32, ptr %p
  ret i32 %v
}
"""
    return "\n".join([decls, *fns, probe, "attributes #0 = { strictfp nounwind }"])


_lib: dict[str, int] | None = None
_lib_engine = None  # Keeps the library's code alive for the life of the process


def _slowlib(object_cache=None) -> dict[str, int]:
    """Addresses of the slow-path functions (compiled on first use, through `object_cache` if
    one is given: see translator.jit.Engine.object_cache)."""
    global _lib, _lib_engine
    if _lib is None:
        from translator.jit import Engine

        eng = Engine()
        eng.object_cache = object_cache
        eng.add_import("mirage_fp_soft", ctypes.cast(_soft_cb, ctypes.c_void_p).value or 0)
        names = [f"fps_{op}_{s}" for s in ("s", "d") for op in _SLOW_OPS] + ["mirage_fp_mxcsr"]
        addrs, _obj = eng.compile(slowlib_ir(), names, len(names))
        eng.object_cache = None
        _lib_engine = eng
        _lib = addrs
        # The inline fast paths compute in the host's environment: it must be IEEE's default.
        mx = host_mxcsr()
        if mx & _MXCSR_CONTROL != _MXCSR_BASE & _MXCSR_CONTROL:
            raise RuntimeError(f"host MXCSR {mx:#x} is not round-to-nearest without FTZ/DAZ")
    return _lib


def host_mxcsr() -> int:
    """The calling thread's MXCSR (for tests: generated code must leave its control bits alone)."""
    fn = ctypes.CFUNCTYPE(ctypes.c_uint32)(_slowlib()["mirage_fp_mxcsr"])
    return int(fn())


def _slow_call(b: BlockBuilder, op: str, f: _Fmt, args: list[str], rm: str) -> str:
    """Calls the slow path (args are i64 values); returns the result bits as i64. The callee
    accrues fflags in the hart: the cached value is stale afterwards."""
    name = f"fps_{op}_{'d' if f.d else 's'}"
    a = (args + ["0", "0", "0"])[:3]
    r = b.tmp()
    b.emit(f"{r} = call i64 @{name}(ptr %h, i64 {a[0]}, i64 {a[1]}, i64 {a[2]}, i64 {rm})")
    return r


def import_slow_functions(engine, text: str) -> None:
    """Lets `engine` link modules that call the slow path (`text` is the module's IR): registers
    the library's addresses as imports, compiling it on first use."""
    if SLOW_CALL not in text or SLOW_FUNCTIONS[0] in engine.imports:
        return
    lib = _slowlib(engine.object_cache)
    for n in SLOW_FUNCTIONS:
        engine.add_import(n, lib[n])


def _fflags_changed(b: BlockBuilder) -> None:
    """fflags may have changed in the hart: the next use reloads it."""
    _st(b).fflags_until = _NEVER


def _to_i64(b: BlockBuilder, v: str, f: _Fmt) -> str:
    return v if f.d else b.cast("zext", v, "i32", "i64")


def _bits_to_fp(b: BlockBuilder, v: str, f: _Fmt) -> str:
    known = _st(b).fpval.get(v)
    return known if known is not None else b.cast("bitcast", v, f.it, f.ft)


def _fp_in_range(b: BlockBuilder, v: str, f: _Fmt, any_finite: bool) -> str:
    """i1: MIN_NORMAL < |v| < inf (or just |v| < inf), false for NaN."""
    sfx = "f64" if f.d else "f32"
    a = b.call(f.ft, f"@llvm.fabs.{sfx}", f"{f.ft} {v}")
    # |v| <= MAX_FINITE rather than < inf: LLVM turns the latter into an integer is-finite test.
    lt = b.tmp()
    b.emit(f"{lt} = fcmp ole {f.ft} {a}, {_fp_hex(f.inf - 1, f)}")
    if any_finite:
        return lt
    gt = b.tmp()
    b.emit(f"{gt} = fcmp ogt {f.ft} {a}, {_fp_hex(f.min_normal, f)}")
    return b.op("and", lt, gt, "i1")


def _fp_hex(bits: int, f: _Fmt) -> str:
    """An FP constant as LLVM spells it (hex of the double value, also for float)."""
    if not f.d:
        bits = struct.unpack("<Q", struct.pack("<d", struct.unpack("<f", struct.pack("<I", bits))[0]))[0]
    return f"0x{bits:016X}"


def _with_fast_path(b: BlockBuilder, op: str, f: _Fmt, args: list[str], rm: tuple[str, str],
                    host, any_finite: bool = False, zero_ok: tuple[int, ...] | None = None) -> str:
    """Result bits (format type) of an arithmetic operation: fast host path when rm is RNE and NX
    is set and the result is normal (or any finite result, for sums), or zero with one of the
    operands `zero_ok` zero (empty: any zero result); else the slow path."""
    rmv, rne = rm
    slow, join = b.label("fpslow"), b.label("fpjoin")
    fast_val = None
    fast_preds: list[str] = []
    if rne != "false":
        nx = b.op("and", _fflags(b), "1", "i32")
        go = b.icmp("ne", nx, "0", "i32")
        if rne != "true":
            go = b.op("and", go, rne, "i1")
        fast = b.label("fpfast")
        b.emit(f"br i1 {go}, label %{fast}, label %{slow}, !prof !0")
        b.start_block(fast)
        fargs = [_bits_to_fp(b, a, f) for a in args]
        fr = host(b, fargs)
        ok = _fp_in_range(b, fr, f, any_finite)
        fast_val, fast_preds = fr, [fast]
        if zero_ok is None:
            b.emit(f"br i1 {ok}, label %{join}, label %{slow}, !prof !0")
        else:
            # A zero result is exact (no flags) when a multiplicand, the dividend or the square
            # root's operand is zero; otherwise it is an underflow for the slow path.
            zero = b.label("fpzero")
            b.emit(f"br i1 {ok}, label %{join}, label %{zero}, !prof !0")
            b.start_block(zero)
            z = b.tmp()
            b.emit(f"{z} = fcmp oeq {f.ft} {fr}, 0.0")
            conds = [z]
            for k in zero_ok:
                c = b.tmp()
                b.emit(f"{c} = fcmp oeq {f.ft} {fargs[k]}, 0.0")
                conds.append(c)
            any_zero = conds[1] if len(conds) > 1 else "true"
            for c in conds[2:]:
                any_zero = b.op("or", any_zero, c, "i1")
            both = b.op("and", z, any_zero, "i1")
            b.emit(f"br i1 {both}, label %{join}, label %{slow}")
            fast_preds.append(zero)
    else:
        b.emit(f"br label %{slow}")
    b.start_block(slow)
    sv = _slow_call(b, op, f, [_to_i64(b, a, f) for a in args], rmv)
    if not f.d:
        sv = b.cast("trunc", sv, "i64", "i32")
    sfp = b.cast("bitcast", sv, f.it, f.ft)
    b.emit(f"br label %{join}")
    b.start_block(join)
    _fflags_changed(b)
    if fast_val is None:
        return sv
    # The phi is FP-typed so that chained operations keep their values in FP registers.
    fp = b.tmp()
    arms = "".join(f"[ {fast_val}, %{p} ], " for p in fast_preds)
    b.emit(f"{fp} = phi {f.ft} {arms}[ {sfp}, %{slow} ]")
    res = b.cast("bitcast", fp, f.ft, f.it)
    _st(b).fpval[res] = fp
    return res


@emits("fadd.s", "fsub.s", "fmul.s", "fdiv.s", "fadd.d", "fsub.d", "fmul.d", "fdiv.d")
def farith(b: BlockBuilder, i: Insn) -> None:
    f = _fmt(i.name)
    rm = _rm(b, i)
    if rm is None:
        return
    op = i.name.split(".")[0][1:]
    opcode = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[op]

    def host(b: BlockBuilder, xs: list[str]) -> str:
        t = b.tmp()
        b.emit(f"{t} = {opcode} {f.ft} {xs[0]}, {xs[1]}")
        return t

    zero_ok = {"mul": (0, 1), "div": (0,)}.get(op)
    r = _with_fast_path(b, op, f, [_src(b, i.rs1, f), _src(b, i.rs2, f)], rm, host,
                        any_finite=op in ("add", "sub"), zero_ok=zero_ok)
    _set_dst(b, i.rd, r, f)


@emits("fsqrt.s", "fsqrt.d")
def fsqrt(b: BlockBuilder, i: Insn) -> None:
    f = _fmt(i.name)
    rm = _rm(b, i)
    if rm is None:
        return

    def host(b: BlockBuilder, xs: list[str]) -> str:
        return b.call(f.ft, f"@llvm.sqrt.{'f64' if f.d else 'f32'}", f"{f.ft} {xs[0]}")

    r = _with_fast_path(b, "sqrt", f, [_src(b, i.rs1, f)], rm, host, zero_ok=())
    _set_dst(b, i.rd, r, f)


@emits("fmadd.s", "fmsub.s", "fnmsub.s", "fnmadd.s", "fmadd.d", "fmsub.d", "fnmsub.d", "fnmadd.d")
def ffma(b: BlockBuilder, i: Insn) -> None:
    f = _fmt(i.name)
    rm = _rm(b, i)
    if rm is None:
        return
    op = i.name.split(".")[0]
    neg_p, neg_c = _FMA_NEG[op]

    def host(b: BlockBuilder, xs: list[str]) -> str:
        x, y, z = xs
        # Spec 11.6: fnmsub computes -(rs1*rs2)+rs3 and so on; negating an operand is exact.
        if neg_p:
            x = b.tmp()
            b.emit(f"{x} = fneg {f.ft} {xs[0]}")
        if neg_c:
            z = b.tmp()
            b.emit(f"{z} = fneg {f.ft} {xs[2]}")
        return b.call(f.ft, f"@llvm.fma.{'f64' if f.d else 'f32'}", f"{f.ft} {x}, {f.ft} {y}, {f.ft} {z}")

    args = [_src(b, i.rs1, f), _src(b, i.rs2, f), _src(b, i.rs3, f)]
    r = _with_fast_path(b, op, f, args, rm, host, zero_ok=(0, 1))
    _set_dst(b, i.rd, r, f)


# Bit-level operations (no rounding, no MXCSR)
def _mag(b: BlockBuilder, v: str, f: _Fmt) -> str:
    return b.op("and", v, _c(f.sign - 1, f), f.it)


def _is_nan(b: BlockBuilder, v: str, f: _Fmt) -> str:
    return b.icmp("ugt", _mag(b, v, f), _c(f.inf, f), f.it)


def _is_snan(b: BlockBuilder, v: str, f: _Fmt) -> str:
    nan = _is_nan(b, v, f)
    q = b.op("and", v, _c(f.qbit, f), f.it)
    notq = b.icmp("eq", q, "0", f.it)
    return b.op("and", nan, notq, "i1")


def _flag_if(b: BlockBuilder, cond: str, flag: int) -> None:
    _accrue(b, b.select(cond, str(flag), "0", "i32"))


@emits("fsgnj.s", "fsgnjn.s", "fsgnjx.s", "fsgnj.d", "fsgnjn.d", "fsgnjx.d")
def fsgnj(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.6: the result takes all bits but the sign from rs1; the sign comes from rs2 (fsgnj),
    # its negation (fsgnjn) or the xor of both signs (fsgnjx).
    f = _fmt(i.name)
    x, y = _src(b, i.rs1, f), _src(b, i.rs2, f)
    sign = _c(f.sign, f)
    if i.name.startswith("fsgnjx"):
        s = b.op("and", y, sign, f.it)
        r = b.op("xor", x, s, f.it)
    else:
        s = b.op("and", y, sign, f.it)
        if i.name.startswith("fsgnjn"):
            s = b.op("xor", s, sign, f.it)
        r = b.op("or", _mag(b, x, f), s, f.it)
    _set_dst(b, i.rd, r, f)


@emits("fmin.s", "fmax.s", "fmin.d", "fmax.d")
def fminmax(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.6 (IEEE 754-2019 minimumNumber/maximumNumber): -0.0 < +0.0; if only one operand is a
    # NaN the result is the other; if both are NaNs it is the canonical NaN; sNaN inputs set NV.
    f = _fmt(i.name)
    x, y = _src(b, i.rs1, f), _src(b, i.rs2, f)
    fx, fy = _bits_to_fp(b, x, f), _bits_to_fp(b, y, f)
    is_min = i.name.startswith("fmin")
    first = b.tmp()
    b.emit(f"{first} = fcmp {'olt' if is_min else 'ogt'} {f.ft} {fx}, {fy}")
    eq = b.tmp()
    b.emit(f"{eq} = fcmp oeq {f.ft} {fx}, {fy}")
    # Equal operands differ at most in the sign of a zero: or/and of the bits picks -0 / +0.
    both = b.op("or" if is_min else "and", x, y, f.it)
    r = b.select(eq, both, y, f.it)
    r = b.select(first, x, r, f.it)
    nx_, ny_ = _is_nan(b, x, f), _is_nan(b, y, f)
    r = b.select(ny_, x, r, f.it)
    r = b.select(nx_, y, r, f.it)
    nn = b.op("and", nx_, ny_, "i1")
    r = b.select(nn, _c(f.canonical, f), r, f.it)
    sn = b.op("or", _is_snan(b, x, f), _is_snan(b, y, f), "i1")
    _flag_if(b, sn, NV)
    _set_dst(b, i.rd, r, f)


@emits("feq.s", "flt.s", "fle.s", "feq.d", "flt.d", "fle.d")
def fcmp(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.8: feq is a quiet comparison (NV only for sNaN inputs); flt and fle are signaling
    # (NV for any NaN input). NaN operands compare false.
    f = _fmt(i.name)
    x, y = _src(b, i.rs1, f), _src(b, i.rs2, f)
    fx, fy = _bits_to_fp(b, x, f), _bits_to_fp(b, y, f)
    cond = {"feq": "oeq", "flt": "olt", "fle": "ole"}[i.name.split(".")[0]]
    c = b.tmp()
    b.emit(f"{c} = fcmp {cond} {f.ft} {fx}, {fy}")
    if i.name.startswith("feq"):
        bad = b.op("or", _is_snan(b, x, f), _is_snan(b, y, f), "i1")
    else:
        bad = b.op("or", _is_nan(b, x, f), _is_nan(b, y, f), "i1")
    _flag_if(b, bad, NV)
    b.set_x(i.rd, b.zext_bool(c))


@emits("fclass.s", "fclass.d")
def fclass(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.9, Table 11.5: bit 0 -inf, 1 negative normal, 2 negative subnormal, 3 -0, 4 +0,
    # 5 positive subnormal, 6 positive normal, 7 +inf, 8 sNaN, 9 qNaN.
    f = _fmt(i.name)
    x = _src(b, i.rs1, f)
    mag = _mag(b, x, f)
    neg = b.icmp("ne", b.op("and", x, _c(f.sign, f), f.it), "0", f.it)
    zero = b.icmp("eq", mag, "0", f.it)
    sub = b.icmp("ult", mag, _c(f.min_normal, f), f.it)
    inf = b.icmp("eq", mag, _c(f.inf, f), f.it)
    nan = b.icmp("ugt", mag, _c(f.inf, f), f.it)
    quiet = b.icmp("ne", b.op("and", x, _c(f.qbit, f), f.it), "0", f.it)
    # kind: 0 zero, 1 subnormal, 2 normal, 3 infinity
    k = b.select(inf, "3", "2", "i64")
    k = b.select(sub, "1", k, "i64")
    k = b.select(zero, "0", k, "i64")
    pos_idx = b.op("add", k, "4")
    neg_idx = b.op("sub", "3", k)
    idx = b.select(neg, neg_idx, pos_idx, "i64")
    nan_idx = b.select(quiet, "9", "8", "i64")
    idx = b.select(nan, nan_idx, idx, "i64")
    b.set_x(i.rd, b.op("shl", "1", idx))


# Conversions
@emits("fcvt.d.s")
def fcvt_d_s(b: BlockBuilder, i: Insn) -> None:
    # Widening is exact; a NaN becomes the canonical NaN, NV for a signaling one (spec 12.5).
    if _rm(b, i) is None:
        return
    x = _src(b, i.rs1, _S)
    wide = b.cast("fpext", _bits_to_fp(b, x, _S), "float", "double")
    r = b.cast("bitcast", wide, "double", "i64")
    r = b.select(_is_nan(b, x, _S), const(_D.canonical), r, "i64")
    _flag_if(b, _is_snan(b, x, _S), NV)
    _set_dst(b, i.rd, r, _D)


@emits("fcvt.s.d")
def fcvt_s_d(b: BlockBuilder, i: Insn) -> None:
    rm = _rm(b, i)
    if rm is None:
        return
    rmv, rne = rm
    x = b.f(i.rs1)
    fx = _bits_to_fp(b, x, _D)
    fr = b.cast("fptrunc", fx, "double", "float")
    ri = b.cast("bitcast", fr, "float", "i32")
    back = b.cast("fpext", fr, "float", "double")
    exact = b.tmp()
    b.emit(f"{exact} = fcmp oeq double {back}, {fx}")
    # Exact (no flags in any mode), or RNE with NX already set and a normal result.
    go = exact
    if rne != "false":
        normal = _fp_in_range(b, fr, _S, False)
        nxs = b.icmp("ne", b.op("and", _fflags(b), "1", "i32"), "0", "i32")
        ok = b.op("and", normal, nxs, "i1")
        if rne != "true":
            ok = b.op("and", ok, rne, "i1")
        go = b.op("or", exact, ok, "i1")
    fast, slow, join = b.label("cvfast"), b.label("cvslow"), b.label("cvjoin")
    b.emit(f"br i1 {go}, label %{fast}, label %{slow}, !prof !0")
    b.start_block(fast)
    b.emit(f"br label %{join}")
    b.start_block(slow)
    sv = b.cast("trunc", _slow_call(b, "cvt_f", _S, [x], rmv), "i64", "i32")
    b.emit(f"br label %{join}")
    b.start_block(join)
    _fflags_changed(b)
    res = b.tmp()
    b.emit(f"{res} = phi i32 [ {ri}, %{fast} ], [ {sv}, %{slow} ]")
    _set_dst(b, i.rd, res, _S)


_ROUND_FNS = ("roundeven", "trunc", "floor", "ceil", "round")  # By rm: RNE, RTZ, RDN, RUP, RMM


def _fp_const(v: float) -> str:
    return f"0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016X}"


@emits("fcvt.w.s", "fcvt.wu.s", "fcvt.l.s", "fcvt.lu.s", "fcvt.w.d", "fcvt.wu.d", "fcvt.l.d", "fcvt.lu.d")
def fcvt_to_int(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.7: round per rm; out-of-range and NaN inputs saturate and set NV (Table 11.4), an
    # in-range inexact result sets NX. "For XLEN>32, FCVT.W[U].S sign-extends the 32-bit result to
    # the destination register width" (also for the unsigned variant).
    rm = _rm(b, i)
    if rm is None:
        return
    rmv, _rne = rm
    f = _fmt(i.name)
    kind = i.name.split(".")[1]
    x = _src(b, i.rs1, f)
    fx = _bits_to_fp(b, x, f)
    if not f.d:
        fx = b.cast("fpext", fx, "float", "double")
    if i.rm != 7:
        r = b.call("double", f"@llvm.{_ROUND_FNS[i.rm]}.f64", f"double {fx}")
    else:
        r = None
        for k in range(4, -1, -1):
            rk = b.call("double", f"@llvm.{_ROUND_FNS[k]}.f64", f"double {fx}")
            if r is None:
                r = rk
            else:
                sel = b.icmp("eq", rmv, str(k))
                r = b.select(sel, rk, r, "double")
    assert r is not None
    signed = kind in ("w", "l")
    wide = kind in ("l", "lu")
    if signed:
        lo = -(2.0 ** (63 if wide else 31))
        lo_cmp = "oge"
    else:
        lo = -1.0
        lo_cmp = "ogt"
    hi = 2.0 ** (64 if wide else 32) if not signed else 2.0 ** (63 if wide else 31)
    # hi is exclusive for 64-bit (2^63 and 2^64 are representable), inclusive max for 32-bit.
    hi_cmp = "olt"
    if not wide:
        hi = hi - 1
        hi_cmp = "ole"
    ge = b.tmp()
    b.emit(f"{ge} = fcmp {lo_cmp} double {r}, {_fp_const(lo)}")
    le = b.tmp()
    b.emit(f"{le} = fcmp {hi_cmp} double {r}, {_fp_const(hi)}")
    inr = b.op("and", ge, le, "i1")
    ity = "i64" if wide else "i32"
    conv = b.cast("fptosi" if signed else "fptoui", r, "double", ity)
    if not wide:
        conv = b.cast("sext", conv, "i32", "i64")
    bits = 64 if wide else 32
    if signed:
        vmax, vmin = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
    else:
        vmax, vmin = (1 << bits) - 1, 0
    if not wide:
        vmax = vmax - (1 << 32) if vmax >> 31 else vmax  # Sign-extended 32-bit pattern
    neg = b.tmp()
    b.emit(f"{neg} = fcmp olt double {fx}, 0.0")
    sat = b.select(neg, const(vmin), const(vmax))
    res = b.select(inr, conv, sat)
    inexact = b.tmp()
    b.emit(f"{inexact} = fcmp une double {r}, {fx}")
    nxf = b.select(inexact, str(NX), "0", "i32")
    fl = b.select(inr, nxf, str(NV), "i32")
    _accrue(b, fl)
    b.set_x(i.rd, res)


@emits("fcvt.s.w", "fcvt.s.wu", "fcvt.s.l", "fcvt.s.lu", "fcvt.d.w", "fcvt.d.wu", "fcvt.d.l", "fcvt.d.lu")
def fcvt_from_int(b: BlockBuilder, i: Insn) -> None:
    # Spec 11.7: integer to FP rounds per rm; NX when the integer is not representable.
    rm = _rm(b, i)
    if rm is None:
        return
    rmv, rne = rm
    f = _fmt(i.name[:6])
    kind = i.name.split(".")[2]
    signed = kind in ("w", "l")
    wide = kind in ("l", "lu")
    xv = b.x(i.rs1)
    if wide:
        v, ity = xv, "i64"
    else:
        v, ity = b.cast("trunc", xv, "i64", "i32"), "i32"
    conv = b.cast("sitofp" if signed else "uitofp", v, ity, f.ft)
    ri = b.cast("bitcast", conv, f.ft, f.it)
    p = 53 if f.d else 24
    if not wide and f.d:
        _set_dst(b, i.rd, ri, f)  # Always exact
        return
    # Exact iff the significant bits of |v| fit in the precision.
    v64 = xv if wide else b.cast("sext" if signed else "zext", v, "i32", "i64")
    if signed:
        isneg = b.icmp("slt", v64, "0")
        negv = b.op("sub", "0", v64)
        av = b.select(isneg, negv, v64)
    else:
        av = v64
    lz = b.call("i64", "@llvm.ctlz.i64", f"i64 {av}, i1 false")
    tz = b.call("i64", "@llvm.cttz.i64", f"i64 {av}, i1 false")
    width = b.op("sub", b.op("sub", "64", lz), tz)
    exact = b.icmp("sle", width, str(p))
    fl0 = _fflags(b)
    go = exact if rne == "false" else (b.op("or", exact, rne, "i1") if rne != "true" else "true")
    fast, slow, join = b.label("cifast"), b.label("cislow"), b.label("cijoin")
    b.emit(f"br i1 {go}, label %{fast}, label %{slow}, !prof !0")
    b.start_block(fast)
    nxf = b.select(exact, "0", str(NX), "i32")
    fl_fast = b.op("or", fl0, nxf, "i32")
    b.store_field(abi.OFF_FFLAGS, fl_fast, "i32")
    b.emit(f"br label %{join}")
    b.start_block(slow)
    sv = _slow_call(b, f"cvt_{kind}", f, [v64], rmv)
    if not f.d:
        sv = b.cast("trunc", sv, "i64", "i32")
    b.emit(f"br label %{join}")
    b.start_block(join)
    _fflags_changed(b)
    res = b.tmp()
    b.emit(f"{res} = phi {f.it} [ {ri}, %{fast} ], [ {sv}, %{slow} ]")
    _set_dst(b, i.rd, res, f)


# Loads, stores and moves
@emits("flw", "fld")
def fload(b: BlockBuilder, i: Insn) -> None:
    addr = b.op("add", b.x(i.rs1), const(i.imm))
    if i.name == "flw":
        b.set_f(i.rd, box32(b, b.load(addr, 4, False)))
    else:
        b.set_f(i.rd, b.load(addr, 8, False))
    mark_dirty(b)


@emits("fsw", "fsd")
def fstore(b: BlockBuilder, i: Insn) -> None:
    addr = b.op("add", b.x(i.rs1), const(i.imm))
    b.store(addr, b.f(i.rs2), 4 if i.name == "fsw" else 8)


@emits("fmv.x.w")
def fmv_x_w(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.sext32(b.f(i.rs1)))


@emits("fmv.x.d")
def fmv_x_d(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.f(i.rs1))


@emits("fmv.w.x")
def fmv_w_x(b: BlockBuilder, i: Insn) -> None:
    b.set_f(i.rd, box32(b, b.op("and", b.x(i.rs1), "4294967295")))
    mark_dirty(b)


@emits("fmv.d.x")
def fmv_d_x(b: BlockBuilder, i: Insn) -> None:
    b.set_f(i.rd, b.x(i.rs1))
    mark_dirty(b)
