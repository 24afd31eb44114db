"""RV64I base integer instructions (unprivileged spec, chapters 2 and 5)."""

from __future__ import annotations

from translator.emit.registry import emits
from translator.ir import BlockBuilder, const
from translator.isa import Insn

_ALU = {"add": "add", "sub": "sub", "xor": "xor", "or": "or", "and": "and"}
_ALUI = {"addi": "add", "xori": "xor", "ori": "or", "andi": "and"}


@emits("lui")
def lui(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, const(i.imm))


@emits("auipc")
def auipc(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, const(b.insn_pc + i.imm))


@emits(*_ALU)
def alu(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.op(_ALU[i.name], b.x(i.rs1), b.x(i.rs2)))


@emits(*_ALUI)
def alui(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.op(_ALUI[i.name], b.x(i.rs1), const(i.imm)))


@emits("slt", "sltu")
def slt(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.zext_bool(b.icmp("slt" if i.name == "slt" else "ult", b.x(i.rs1), b.x(i.rs2))))


@emits("slti", "sltiu")
def slti(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.zext_bool(b.icmp("slt" if i.name == "slti" else "ult", b.x(i.rs1), const(i.imm))))


_SHIFT = {"sll": "shl", "srl": "lshr", "sra": "ashr"}


@emits("sll", "srl", "sra")
def shift(b: BlockBuilder, i: Insn) -> None:
    amount = b.op("and", b.x(i.rs2), "63")
    b.set_x(i.rd, b.op(_SHIFT[i.name], b.x(i.rs1), amount))


@emits("slli", "srli", "srai")
def shifti(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.op(_SHIFT[i.name[:-1]], b.x(i.rs1), str(i.imm)))


@emits("addw", "subw")
def alu_w(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.sext32(b.op(i.name[:-1], b.x(i.rs1), b.x(i.rs2))))


@emits("addiw")
def addiw(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, b.sext32(b.op("add", b.x(i.rs1), const(i.imm))))


def _w(b: BlockBuilder, v: str) -> str:
    return b.cast("trunc", v, "i64", "i32")


@emits("sllw", "srlw", "sraw")
def shift_w(b: BlockBuilder, i: Insn) -> None:
    amount = b.op("and", _w(b, b.x(i.rs2)), "31", "i32")
    r = b.op(_SHIFT[i.name[:-1]], _w(b, b.x(i.rs1)), amount, "i32")
    b.set_x(i.rd, b.cast("sext", r, "i32", "i64"))


@emits("slliw", "srliw", "sraiw")
def shifti_w(b: BlockBuilder, i: Insn) -> None:
    r = b.op(_SHIFT[i.name[:-2]], _w(b, b.x(i.rs1)), str(i.imm), "i32")
    b.set_x(i.rd, b.cast("sext", r, "i32", "i64"))


_LOADS = {"lb": (1, True), "lh": (2, True), "lw": (4, True), "ld": (8, True),
          "lbu": (1, False), "lhu": (2, False), "lwu": (4, False)}
_STORES = {"sb": 1, "sh": 2, "sw": 4, "sd": 8}


@emits(*_LOADS)
def load(b: BlockBuilder, i: Insn) -> None:
    size, signed = _LOADS[i.name]
    addr = b.op("add", b.x(i.rs1), const(i.imm))
    b.set_x(i.rd, b.load(addr, size, signed))


@emits(*_STORES)
def store(b: BlockBuilder, i: Insn) -> None:
    addr = b.op("add", b.x(i.rs1), const(i.imm))
    b.store(addr, b.x(i.rs2), _STORES[i.name])


@emits("jal", terminator=True)
def jal(b: BlockBuilder, i: Insn) -> None:
    b.set_x(i.rd, const(b.insn_pc + i.length))
    if i.rd:
        b.targets.append(b.insn_pc + i.length)  # A call: its return site runs next
    b.exit_direct(b.insn_pc + i.imm)
    b.terminated = True


@emits("jalr", terminator=True)
def jalr(b: BlockBuilder, i: Insn) -> None:
    target = b.op("and", b.op("add", b.x(i.rs1), const(i.imm)), const(~1))
    b.set_x(i.rd, const(b.insn_pc + i.length))
    if i.rd:
        b.targets.append(b.insn_pc + i.length)  # A call: its return site runs next
    b.exit_indirect(target)
    b.terminated = True


_BRANCH = {"beq": "eq", "bne": "ne", "blt": "slt", "bge": "sge", "bltu": "ult", "bgeu": "uge"}


@emits(*_BRANCH, terminator=True)
def branch(b: BlockBuilder, i: Insn) -> None:
    c = b.icmp(_BRANCH[i.name], b.x(i.rs1), b.x(i.rs2))
    b.branch(c, b.insn_pc + i.imm, b.insn_pc + i.length)


@emits("fence")
def fence(b: BlockBuilder, i: Insn) -> None:
    # One hart runs at a time in program order: ordering is already total.
    pass
