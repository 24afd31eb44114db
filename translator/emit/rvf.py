"""F and D extensions (unprivileged spec, chapters 11-12): loads, stores and moves.

FP registers hold raw 64-bit patterns; single values are NaN-boxed (upper 32 bits all ones,
spec 12.2) and an improperly boxed single reads as the canonical NaN.
"""

from __future__ import annotations

from translator import abi
from translator.emit import emits
from translator.ir import BlockBuilder, const
from translator.isa import Insn

# Extra declarations the FP emitters need in every module.
DECLS = ""

BOX = 0xFFFFFFFF00000000


def mark_dirty(b: BlockBuilder) -> None:
    """Sets mstatus.FS = Dirty and SD (privileged spec 3.1.6.6), once per block."""
    if b.uses_fp:
        return
    b.uses_fp = True
    m = b.load_field(abi.OFF_MSTATUS)
    m = b.op("or", m, const((3 << 13) | (1 << 63)))
    b.store_field(abi.OFF_MSTATUS, m)


def box32(b: BlockBuilder, v32_as_i64: str) -> str:
    return b.op("or", v32_as_i64, const(BOX))


def unbox32(b: BlockBuilder, v: str) -> str:
    """The i32 bits of a single operand; canonical NaN if not NaN-boxed."""
    hi = b.op("lshr", v, "32")
    ok = b.icmp("eq", hi, "4294967295")
    lo = b.cast("trunc", v, "i64", "i32")
    return b.select(ok, lo, "2143289344", "i32")


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
