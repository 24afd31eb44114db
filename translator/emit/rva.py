"""A extension: load-reserved/store-conditional and AMOs (unprivileged spec, chapter 8)."""

from __future__ import annotations

from translator import abi
from translator.emit.registry import emits
from translator.ir import BlockBuilder
from translator.isa import Insn


def _size(i: Insn) -> int:
    return 4 if i.name.endswith(".w") else 8


@emits("lr.w", "lr.d")
def lr(b: BlockBuilder, i: Insn) -> None:
    addr = b.x(i.rs1)
    v = b.load(addr, _size(i), True)
    b.store_field(abi.OFF_RESV, addr)
    b.set_x(i.rd, v)


@emits("sc.w", "sc.d")
def sc(b: BlockBuilder, i: Insn) -> None:
    addr = b.x(i.rs1)
    # Read rs2 before branching: a register first loaded inside the conditional block would be cached
    # there and reused by later instructions that block does not dominate.
    src = b.x(i.rs2)
    resv = b.load_field(abi.OFF_RESV)
    # A misaligned SC traps whatever the reservation (spec 8.2): send it down the store path.
    mis = b.icmp("ne", b.op("and", addr, str(_size(i) - 1)), "0")
    ok = b.op("or", b.icmp("eq", resv, addr), mis, "i1")
    yes, no, join = b.label("scy"), b.label("scn"), b.label("scj")
    b.emit(f"br i1 {ok}, label %{yes}, label %{no}")
    b.start_block(yes)
    # Stored as an AMO's store (DESC_AMO): a misaligned SC traps, never emulated, and the block
    # does not stop after the store before rd is written (Machine._stop_if_wanted).
    b.amo(addr, _size(i), lambda b, old: src)
    b.emit(f"br label %{join}")
    yes_end = b._last_label()
    b.start_block(no)
    b.emit(f"br label %{join}")
    b.start_block(join)
    r = b.tmp()
    b.emit(f"{r} = phi i64 [ 0, %{yes_end} ], [ 1, %{no} ]")
    b.store_field(abi.OFF_RESV, "-1")
    b.set_x(i.rd, r)


def _rmw(name: str, size: int, src: str):
    op = name.split(".")[0][3:]

    def rmw(b: BlockBuilder, old: str) -> str:
        s = src if size == 8 else b.sext32(src)
        if op == "swap":
            return s
        if op in ("add", "xor", "and", "or"):
            return b.op(op, old, s)
        if op in ("minu", "maxu") and size == 4:
            # Unsigned compare of the 32-bit values.
            o32 = b.op("and", old, "4294967295")
            s32 = b.op("and", s, "4294967295")
            c = b.icmp("ult" if op == "minu" else "ugt", o32, s32)
            return b.select(c, old, s)
        cond = {"min": "slt", "max": "sgt", "minu": "ult", "maxu": "ugt"}[op]
        return b.select(b.icmp(cond, old, s), old, s)
    return rmw


_AMOS = [f"amo{op}.{w}" for op in ("swap", "add", "xor", "and", "or", "min", "max", "minu", "maxu")
         for w in ("w", "d")]


@emits(*_AMOS)
def amo(b: BlockBuilder, i: Insn) -> None:
    size = _size(i)
    src = b.x(i.rs2)
    old = b.amo(b.x(i.rs1), size, _rmw(i.name, size, src))
    b.set_x(i.rd, old)
