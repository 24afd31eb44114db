"""M extension: multiply and divide (unprivileged spec, chapter 7)."""

from __future__ import annotations

from translator.emit.registry import emits
from translator.ir import BlockBuilder
from translator.isa import Insn


@emits("mul")
def mul(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.op("mul", b.x(i.rs1), b.x(i.rs2)))


@emits("mulw")
def mulw(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.sext32(b.op("mul", b.x(i.rs1), b.x(i.rs2))))


_HIGH = {"mulh": ("sext", "sext"), "mulhsu": ("sext", "zext"), "mulhu": ("zext", "zext")}


@emits(*_HIGH)
def mulh(b: BlockBuilder, i: Insn) -> None:
    ea, eb = _HIGH[i.name]
    a = b.cast(ea, b.x(i.rs1), "i64", "i128")
    c = b.cast(eb, b.x(i.rs2), "i64", "i128")
    p = b.op("lshr", b.op("mul", a, c, "i128"), "64", "i128")
    b.set_x(i.rd, b.cast("trunc", p, "i128", "i64"))


def _divrem(b: BlockBuilder, i: Insn, ty: str, a: str, d: str) -> str:
    """Division with the RISC-V rules for zero divisors and signed overflow (Table 7.1)."""
    bits = int(ty[1:])
    signed = i.name.rstrip("w") in ("div", "rem")
    is_rem = i.name.startswith("rem")
    zero = b.icmp("eq", d, "0", ty)
    bad = zero
    if signed:
        minv = str(-(1 << (bits - 1)))
        ov = b.op("and", b.icmp("eq", a, minv, ty), b.icmp("eq", d, "-1", ty), "i1")
        bad = b.op("or", zero, ov, "i1")
    safe = b.select(bad, "1", d, ty)
    opcode = ("s" if signed else "u") + ("rem" if is_rem else "div")
    r = b.op(opcode, a, safe, ty)
    if signed:
        # Overflow: quotient is the dividend (MIN), remainder 0.
        r = b.select(ov, a if not is_rem else "0", r, ty)
    return b.select(zero, a if is_rem else "-1", r, ty)


@emits("div", "divu", "rem", "remu")
def divrem(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, _divrem(b, i, "i64", b.x(i.rs1), b.x(i.rs2)))


@emits("divw", "divuw", "remw", "remuw")
def divrem_w(b: BlockBuilder, i: Insn) -> None:
    a = b.cast("trunc", b.x(i.rs1), "i64", "i32")
    d = b.cast("trunc", b.x(i.rs2), "i64", "i32")
    r = _divrem(b, i, "i32", a, d)
    b.set_x(i.rd, b.cast("sext", r, "i32", "i64"))
