"""IEEE 754 binary32/binary64 arithmetic in Python integers, with RISC-V rounding modes and flags.

Generated code does F/D arithmetic on the host FPU; this module covers what the host cannot do,
round-to-nearest-ties-to-max-magnitude (RMM, unprivileged spec 11.2, Table 11.1), and serves as
a reference. Values are raw bit patterns; every NaN result is the canonical NaN (spec 11.3).
Tininess is detected after rounding (spec 11.2: "tininess is detected after rounding").
"""

from __future__ import annotations

import math
from typing import NamedTuple

# Rounding modes (spec 11.2, Table 11.1) and fflags bits (Table 11.2)
RNE, RTZ, RDN, RUP, RMM = 0, 1, 2, 3, 4
NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16


class Fmt:
    """An IEEE 754 binary format (attributes precomputed: this code runs per instruction)."""

    __slots__ = ("bits", "mbits", "ebits", "bias", "p", "emin", "emax", "emask", "canonical_nan", "inf",
                 "max_finite")

    def __init__(self, bits: int, mbits: int) -> None:
        self.bits = bits
        self.mbits = mbits  # Stored fraction bits
        self.ebits = bits - 1 - mbits
        self.bias = (1 << (self.ebits - 1)) - 1
        self.p = mbits + 1
        self.emin = 1 - self.bias
        self.emax = self.bias
        self.emask = (1 << self.ebits) - 1
        self.canonical_nan = (self.emask << mbits) | (1 << (mbits - 1))
        self.inf = self.emask << mbits
        self.max_finite = ((self.emask - 1) << mbits) | ((1 << mbits) - 1)


F32 = Fmt(32, 23)
F64 = Fmt(64, 52)

ZERO, FINITE, INF, QNAN, SNAN = range(5)


class Val(NamedTuple):
    sign: int
    kind: int
    mant: int = 0  # Finite values: (-1)^sign * mant * 2^exp
    exp: int = 0


def unpack(bits: int, f: Fmt) -> Val:
    sign = bits >> (f.bits - 1) & 1
    e = bits >> f.mbits & f.emask
    m = bits & ((1 << f.mbits) - 1)
    if e == f.emask:
        if m == 0:
            return Val(sign, INF)
        return Val(sign, QNAN if m >> (f.mbits - 1) else SNAN)
    if e == 0:
        if m == 0:
            return Val(sign, ZERO)
        return Val(sign, FINITE, m, f.emin - f.mbits)
    return Val(sign, FINITE, m | (1 << f.mbits), e - f.bias - f.mbits)


def _is_nan(v: Val) -> bool:
    return v.kind in (QNAN, SNAN)


def _round_int(m: int, shift: int, sticky: bool, sign: int, rm: int) -> tuple[int, bool]:
    """Rounds (m + sticky fraction) / 2^shift to an integer; returns (value, inexact)."""
    if shift <= 0:
        assert not sticky, "sticky input needs guard bits"
        return m << -shift, False
    q = m >> shift
    rem = m & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    inexact = rem != 0 or sticky
    if not inexact:
        return q, False
    above = rem > half or (rem == half and sticky)
    tie = rem == half and not sticky
    if rm == RNE:
        inc = above or (tie and q & 1)
    elif rm == RMM:
        inc = above or tie
    elif rm == RTZ:
        inc = False
    elif rm == RDN:
        inc = bool(sign)
    else:
        inc = not sign
    return q + inc, True


def round_pack(sign: int, m: int, e: int, f: Fmt, rm: int, sticky: bool = False) -> tuple[int, int]:
    """Rounds (-1)^sign * (m + sticky) * 2^e to format f; m > 0. Returns (bits, flags)."""
    assert m > 0
    if sticky and m.bit_length() < f.p + 3:
        # Guard bits so the sticky part stays below the rounding bit.
        k = f.p + 3 - m.bit_length()
        m <<= k
        e -= k
    top = e + m.bit_length() - 1  # Exponent of the leading bit
    # Tininess after rounding: round to p bits with an unbounded exponent range.
    qu, _ = _round_int(m, m.bit_length() - f.p, sticky, sign, rm)
    top_u = top + (1 if qu >> f.p else 0)
    tiny = top_u < f.emin
    qe = max(top, f.emin) - (f.p - 1)  # Exponent of the result's last place
    q, inexact = _round_int(m, qe - e, sticky, sign, rm)
    if q >> f.p:
        q >>= 1
        qe += 1
    flags = NX if inexact else 0
    if q and q.bit_length() - 1 + qe > f.emax:
        flags |= OF | NX
        if rm == RTZ or (rm == RDN and not sign) or (rm == RUP and sign):
            mag = f.max_finite
        else:
            mag = f.inf
        return (sign << (f.bits - 1)) | mag, flags
    if tiny and inexact:
        flags |= UF
    if q >> f.mbits:
        mag = ((qe + f.mbits + f.bias) << f.mbits) | (q & ((1 << f.mbits) - 1))
    else:
        mag = q  # Subnormal or zero
    return (sign << (f.bits - 1)) | mag, flags


def _zero(sign: int, f: Fmt) -> int:
    return sign << (f.bits - 1)


def _inf(sign: int, f: Fmt) -> int:
    return (sign << (f.bits - 1)) | f.inf


def _nan_flags(*vs: Val) -> int:
    return NV if any(v.kind == SNAN for v in vs) else 0


def _exact_sum(s1: int, m1: int, e1: int, s2: int, m2: int, e2: int) -> tuple[int, int, int]:
    """Signed exact sum of two finite values: (sign, mant, exp) with mant >= 0."""
    e = min(e1, e2)
    v = (-1) ** s1 * (m1 << (e1 - e)) + (-1) ** s2 * (m2 << (e2 - e))
    return (1 if v < 0 else 0), abs(v), e


def _zero_sum_sign(s1: int, s2: int, rm: int) -> int:
    """Sign of an exact zero sum (IEEE 754 6.3): equal signs keep it, else +0 except in RDN."""
    if s1 == s2:
        return s1
    return 1 if rm == RDN else 0


def add(a: int, b: int, f: Fmt, rm: int, negate_b: bool = False) -> tuple[int, int]:
    x, y = unpack(a, f), unpack(b, f)
    if _is_nan(x) or _is_nan(y):
        return f.canonical_nan, _nan_flags(x, y)
    ys = y.sign ^ negate_b
    if x.kind == INF or y.kind == INF:
        if x.kind == INF and y.kind == INF and x.sign != ys:
            return f.canonical_nan, NV
        return _inf(x.sign if x.kind == INF else ys, f), 0
    if x.kind == ZERO and y.kind == ZERO:
        return _zero(_zero_sum_sign(x.sign, ys, rm), f), 0
    if x.kind == ZERO:
        return round_pack(ys, y.mant, y.exp, f, rm)
    if y.kind == ZERO:
        return round_pack(x.sign, x.mant, x.exp, f, rm)
    s, m, e = _exact_sum(x.sign, x.mant, x.exp, ys, y.mant, y.exp)
    if m == 0:
        return _zero(1 if rm == RDN else 0, f), 0
    return round_pack(s, m, e, f, rm)


def sub(a: int, b: int, f: Fmt, rm: int) -> tuple[int, int]:
    return add(a, b, f, rm, negate_b=True)


def mul(a: int, b: int, f: Fmt, rm: int) -> tuple[int, int]:
    x, y = unpack(a, f), unpack(b, f)
    if _is_nan(x) or _is_nan(y):
        return f.canonical_nan, _nan_flags(x, y)
    s = x.sign ^ y.sign
    if x.kind == INF or y.kind == INF:
        if x.kind == ZERO or y.kind == ZERO:
            return f.canonical_nan, NV
        return _inf(s, f), 0
    if x.kind == ZERO or y.kind == ZERO:
        return _zero(s, f), 0
    return round_pack(s, x.mant * y.mant, x.exp + y.exp, f, rm)


def div(a: int, b: int, f: Fmt, rm: int) -> tuple[int, int]:
    x, y = unpack(a, f), unpack(b, f)
    if _is_nan(x) or _is_nan(y):
        return f.canonical_nan, _nan_flags(x, y)
    s = x.sign ^ y.sign
    if x.kind == INF:
        return (f.canonical_nan, NV) if y.kind == INF else (_inf(s, f), 0)
    if y.kind == INF:
        return _zero(s, f), 0
    if y.kind == ZERO:
        return (f.canonical_nan, NV) if x.kind == ZERO else (_inf(s, f), DZ)
    if x.kind == ZERO:
        return _zero(s, f), 0
    k = f.p + 3 + y.mant.bit_length()
    q, r = divmod(x.mant << k, y.mant)
    return round_pack(s, q, x.exp - y.exp - k, f, rm, sticky=r != 0)


def sqrt(a: int, f: Fmt, rm: int) -> tuple[int, int]:
    x = unpack(a, f)
    if _is_nan(x):
        return f.canonical_nan, _nan_flags(x)
    if x.kind == ZERO:
        return a, 0
    if x.sign:
        return f.canonical_nan, NV
    if x.kind == INF:
        return a, 0
    m, e = x.mant, x.exp
    k = 2 * f.p + 6
    if (e - k) & 1:
        k += 1
    m <<= k
    e -= k
    r = math.isqrt(m)
    return round_pack(0, r, e // 2, f, rm, sticky=r * r != m)


def fma(a: int, b: int, c: int, f: Fmt, rm: int, negate_product: bool = False,
        negate_c: bool = False) -> tuple[int, int]:
    """(+-)(a*b) (+-) c with one rounding (spec 11.6: fmadd/fmsub/fnmsub/fnmadd)."""
    x, y, z = unpack(a, f), unpack(b, f), unpack(c, f)
    inf_zero = (x.kind == INF and y.kind == ZERO) or (x.kind == ZERO and y.kind == INF)
    if _is_nan(x) or _is_nan(y) or _is_nan(z) or inf_zero:
        # Spec 11.6: invalid when the multiplicands are infinity and zero, even if the addend is a qNaN.
        return f.canonical_nan, _nan_flags(x, y, z) | (NV if inf_zero else 0)
    ps = x.sign ^ y.sign ^ negate_product
    zs = z.sign ^ negate_c
    if x.kind == INF or y.kind == INF:
        if z.kind == INF and zs != ps:
            return f.canonical_nan, NV
        return _inf(ps, f), 0
    if z.kind == INF:
        return _inf(zs, f), 0
    if x.kind == ZERO or y.kind == ZERO:
        if z.kind == ZERO:
            return _zero(_zero_sum_sign(ps, zs, rm), f), 0
        return round_pack(zs, z.mant, z.exp, f, rm)
    pm, pe = x.mant * y.mant, x.exp + y.exp
    if z.kind == ZERO:
        return round_pack(ps, pm, pe, f, rm)
    s, m, e = _exact_sum(ps, pm, pe, zs, z.mant, z.exp)
    if m == 0:
        return _zero(1 if rm == RDN else 0, f), 0
    return round_pack(s, m, e, f, rm)


def convert(a: int, src: Fmt, dst: Fmt, rm: int) -> tuple[int, int]:
    """fcvt.s.d / fcvt.d.s."""
    x = unpack(a, src)
    if _is_nan(x):
        return dst.canonical_nan, _nan_flags(x)
    if x.kind == INF:
        return _inf(x.sign, dst), 0
    if x.kind == ZERO:
        return _zero(x.sign, dst), 0
    return round_pack(x.sign, x.mant, x.exp, dst, rm)


def from_int(v: int, width: int, signed: bool, f: Fmt, rm: int) -> tuple[int, int]:
    """fcvt.{s,d}.{w,wu,l,lu}: the low `width` bits of v as a (signed) integer."""
    v &= (1 << width) - 1
    if signed and v >> (width - 1):
        v -= 1 << width
    if v == 0:
        return 0, 0
    return round_pack(1 if v < 0 else 0, abs(v), 0, f, rm)


# Operation numbers shared with the generated slow paths (translator.emit.rvf).
OPS = ("add", "sub", "mul", "div", "sqrt", "fmadd", "fmsub", "fnmsub", "fnmadd", "cvt_f",
       "cvt_w", "cvt_wu", "cvt_l", "cvt_lu")


def compute(op: int, dst64: bool, a: int, b: int, c: int, rm: int) -> tuple[int, int]:
    """One F/D operation by number (OPS) on raw operands; single results are 32-bit patterns.
    cvt_f converts from the other format; cvt_<int> converts from an integer in `a`."""
    f = F64 if dst64 else F32
    name = OPS[op]
    if name == "add":
        return add(a, b, f, rm)
    if name == "sub":
        return sub(a, b, f, rm)
    if name == "mul":
        return mul(a, b, f, rm)
    if name == "div":
        return div(a, b, f, rm)
    if name == "sqrt":
        return sqrt(a, f, rm)
    if name == "fmadd":
        return fma(a, b, c, f, rm)
    if name == "fmsub":
        return fma(a, b, c, f, rm, negate_c=True)
    if name == "fnmsub":
        return fma(a, b, c, f, rm, negate_product=True)
    if name == "fnmadd":
        return fma(a, b, c, f, rm, negate_product=True, negate_c=True)
    if name == "cvt_f":
        return convert(a, F32 if dst64 else F64, f, rm)
    width = 32 if name in ("cvt_w", "cvt_wu") else 64
    return from_int(a, width, not name.endswith("u"), f, rm)
