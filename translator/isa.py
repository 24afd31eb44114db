"""RV64GC instruction encodings: the single table that drives decoding, emission and disassembly.

Each 32-bit instruction is one row: mnemonic, bit pattern (msb first, `-` for operand bits) and an
operand format. Each compressed instruction is one row of its own whose expander names the base
instruction it stands for (RISC-V unprivileged spec, chapter 16: "every RVC instruction expands
into a single RVI instruction").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from translator.csrs import CSR_NAMES


@dataclass(frozen=True, slots=True)
class Insn:
    """One decoded instruction. Compressed forms arrive expanded, with length 2."""

    name: str
    fmt: str
    rd: int = 0
    rs1: int = 0
    rs2: int = 0
    rs3: int = 0
    imm: int = 0
    rm: int = 0
    csr: int = 0
    aq: bool = False
    rl: bool = False
    length: int = 4
    raw: int = 0


@dataclass(frozen=True, slots=True)
class Encoding:
    name: str
    mask: int
    match: int
    fmt: str
    ext: str


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def _bits(word: int, hi: int, lo: int) -> int:
    return (word >> lo) & ((1 << (hi - lo + 1)) - 1)


# Operand formats: how fields are extracted from a 32-bit word (unprivileged spec, 2.2-2.3).
def _imm_i(w: int) -> int:
    return _sext(w >> 20, 12)


def _imm_s(w: int) -> int:
    return _sext((_bits(w, 31, 25) << 5) | _bits(w, 11, 7), 12)


def _imm_b(w: int) -> int:
    v = (_bits(w, 31, 31) << 12) | (_bits(w, 7, 7) << 11) | (_bits(w, 30, 25) << 5) | (_bits(w, 11, 8) << 1)
    return _sext(v, 13)


def _imm_u(w: int) -> int:
    return _sext(w & 0xFFFFF000, 32)


def _imm_j(w: int) -> int:
    v = (_bits(w, 31, 31) << 20) | (_bits(w, 19, 12) << 12) | (_bits(w, 20, 20) << 11) | (_bits(w, 30, 21) << 1)
    return _sext(v, 21)


def _fields(fmt: str, w: int) -> dict:
    rd, rs1, rs2 = _bits(w, 11, 7), _bits(w, 19, 15), _bits(w, 24, 20)
    if fmt == "R":
        return {"rd": rd, "rs1": rs1, "rs2": rs2}
    if fmt == "RF":  # FP op with rounding mode
        return {"rd": rd, "rs1": rs1, "rs2": rs2, "rm": _bits(w, 14, 12)}
    if fmt == "R1F":  # FP unary with rounding mode
        return {"rd": rd, "rs1": rs1, "rm": _bits(w, 14, 12)}
    if fmt == "R1":  # FP unary without rounding mode (fmv, fclass)
        return {"rd": rd, "rs1": rs1}
    if fmt == "R4":
        return {"rd": rd, "rs1": rs1, "rs2": rs2, "rs3": _bits(w, 31, 27), "rm": _bits(w, 14, 12)}
    if fmt == "I" or fmt == "L" or fmt == "FL":
        return {"rd": rd, "rs1": rs1, "imm": _imm_i(w)}
    if fmt == "SH6":
        return {"rd": rd, "rs1": rs1, "imm": _bits(w, 25, 20)}
    if fmt == "SH5":
        return {"rd": rd, "rs1": rs1, "imm": _bits(w, 24, 20)}
    if fmt == "S" or fmt == "FS":
        return {"rs1": rs1, "rs2": rs2, "imm": _imm_s(w)}
    if fmt == "B":
        return {"rs1": rs1, "rs2": rs2, "imm": _imm_b(w)}
    if fmt == "U":
        return {"rd": rd, "imm": _imm_u(w)}
    if fmt == "J":
        return {"rd": rd, "imm": _imm_j(w)}
    if fmt == "CSR":
        return {"rd": rd, "rs1": rs1, "csr": _bits(w, 31, 20)}
    if fmt == "CSRI":
        return {"rd": rd, "imm": rs1, "csr": _bits(w, 31, 20)}
    if fmt == "AMO":
        return {"rd": rd, "rs1": rs1, "rs2": rs2, "aq": bool(w >> 26 & 1), "rl": bool(w >> 25 & 1)}
    if fmt == "LR":
        return {"rd": rd, "rs1": rs1, "aq": bool(w >> 26 & 1), "rl": bool(w >> 25 & 1)}
    if fmt == "FENCE":
        return {"rd": rd, "rs1": rs1, "imm": _bits(w, 31, 20)}
    if fmt == "SFENCE":
        return {"rs1": rs1, "rs2": rs2}
    if fmt == "N":
        return {}
    raise ValueError(f"unknown format {fmt}")


# (name, pattern, format, extension); pattern is 32 chars of 0/1/- once spaces are removed.
_TABLE: list[tuple[str, str, str, str]] = [
    # RV64I (unprivileged spec, chapter 2 and 5)
    ("lui", "------- ----- ----- --- ----- 0110111", "U", "I"),
    ("auipc", "------- ----- ----- --- ----- 0010111", "U", "I"),
    ("jal", "------- ----- ----- --- ----- 1101111", "J", "I"),
    ("jalr", "------- ----- ----- 000 ----- 1100111", "I", "I"),
    ("beq", "------- ----- ----- 000 ----- 1100011", "B", "I"),
    ("bne", "------- ----- ----- 001 ----- 1100011", "B", "I"),
    ("blt", "------- ----- ----- 100 ----- 1100011", "B", "I"),
    ("bge", "------- ----- ----- 101 ----- 1100011", "B", "I"),
    ("bltu", "------- ----- ----- 110 ----- 1100011", "B", "I"),
    ("bgeu", "------- ----- ----- 111 ----- 1100011", "B", "I"),
    ("lb", "------- ----- ----- 000 ----- 0000011", "L", "I"),
    ("lh", "------- ----- ----- 001 ----- 0000011", "L", "I"),
    ("lw", "------- ----- ----- 010 ----- 0000011", "L", "I"),
    ("ld", "------- ----- ----- 011 ----- 0000011", "L", "I"),
    ("lbu", "------- ----- ----- 100 ----- 0000011", "L", "I"),
    ("lhu", "------- ----- ----- 101 ----- 0000011", "L", "I"),
    ("lwu", "------- ----- ----- 110 ----- 0000011", "L", "I"),
    ("sb", "------- ----- ----- 000 ----- 0100011", "S", "I"),
    ("sh", "------- ----- ----- 001 ----- 0100011", "S", "I"),
    ("sw", "------- ----- ----- 010 ----- 0100011", "S", "I"),
    ("sd", "------- ----- ----- 011 ----- 0100011", "S", "I"),
    ("addi", "------- ----- ----- 000 ----- 0010011", "I", "I"),
    ("slti", "------- ----- ----- 010 ----- 0010011", "I", "I"),
    ("sltiu", "------- ----- ----- 011 ----- 0010011", "I", "I"),
    ("xori", "------- ----- ----- 100 ----- 0010011", "I", "I"),
    ("ori", "------- ----- ----- 110 ----- 0010011", "I", "I"),
    ("andi", "------- ----- ----- 111 ----- 0010011", "I", "I"),
    ("slli", "000000- ----- ----- 001 ----- 0010011", "SH6", "I"),
    ("srli", "000000- ----- ----- 101 ----- 0010011", "SH6", "I"),
    ("srai", "010000- ----- ----- 101 ----- 0010011", "SH6", "I"),
    ("add", "0000000 ----- ----- 000 ----- 0110011", "R", "I"),
    ("sub", "0100000 ----- ----- 000 ----- 0110011", "R", "I"),
    ("sll", "0000000 ----- ----- 001 ----- 0110011", "R", "I"),
    ("slt", "0000000 ----- ----- 010 ----- 0110011", "R", "I"),
    ("sltu", "0000000 ----- ----- 011 ----- 0110011", "R", "I"),
    ("xor", "0000000 ----- ----- 100 ----- 0110011", "R", "I"),
    ("srl", "0000000 ----- ----- 101 ----- 0110011", "R", "I"),
    ("sra", "0100000 ----- ----- 101 ----- 0110011", "R", "I"),
    ("or", "0000000 ----- ----- 110 ----- 0110011", "R", "I"),
    ("and", "0000000 ----- ----- 111 ----- 0110011", "R", "I"),
    ("addiw", "------- ----- ----- 000 ----- 0011011", "I", "I"),
    ("slliw", "0000000 ----- ----- 001 ----- 0011011", "SH5", "I"),
    ("srliw", "0000000 ----- ----- 101 ----- 0011011", "SH5", "I"),
    ("sraiw", "0100000 ----- ----- 101 ----- 0011011", "SH5", "I"),
    ("addw", "0000000 ----- ----- 000 ----- 0111011", "R", "I"),
    ("subw", "0100000 ----- ----- 000 ----- 0111011", "R", "I"),
    ("sllw", "0000000 ----- ----- 001 ----- 0111011", "R", "I"),
    ("srlw", "0000000 ----- ----- 101 ----- 0111011", "R", "I"),
    ("sraw", "0100000 ----- ----- 101 ----- 0111011", "R", "I"),
    ("fence", "------- ----- ----- 000 ----- 0001111", "FENCE", "I"),
    ("ecall", "0000000 00000 00000 000 00000 1110011", "N", "I"),
    ("ebreak", "0000000 00001 00000 000 00000 1110011", "N", "I"),
    # Zifencei
    ("fence.i", "------- ----- ----- 001 ----- 0001111", "FENCE", "Zifencei"),
    # Privileged (privileged spec, 3.3 and 4.2.1)
    ("sret", "0001000 00010 00000 000 00000 1110011", "N", "Priv"),
    ("mret", "0011000 00010 00000 000 00000 1110011", "N", "Priv"),
    ("wfi", "0001000 00101 00000 000 00000 1110011", "N", "Priv"),
    ("sfence.vma", "0001001 ----- ----- 000 00000 1110011", "SFENCE", "Priv"),
    # Zicsr
    ("csrrw", "------- ----- ----- 001 ----- 1110011", "CSR", "Zicsr"),
    ("csrrs", "------- ----- ----- 010 ----- 1110011", "CSR", "Zicsr"),
    ("csrrc", "------- ----- ----- 011 ----- 1110011", "CSR", "Zicsr"),
    ("csrrwi", "------- ----- ----- 101 ----- 1110011", "CSRI", "Zicsr"),
    ("csrrsi", "------- ----- ----- 110 ----- 1110011", "CSRI", "Zicsr"),
    ("csrrci", "------- ----- ----- 111 ----- 1110011", "CSRI", "Zicsr"),
    # M
    ("mul", "0000001 ----- ----- 000 ----- 0110011", "R", "M"),
    ("mulh", "0000001 ----- ----- 001 ----- 0110011", "R", "M"),
    ("mulhsu", "0000001 ----- ----- 010 ----- 0110011", "R", "M"),
    ("mulhu", "0000001 ----- ----- 011 ----- 0110011", "R", "M"),
    ("div", "0000001 ----- ----- 100 ----- 0110011", "R", "M"),
    ("divu", "0000001 ----- ----- 101 ----- 0110011", "R", "M"),
    ("rem", "0000001 ----- ----- 110 ----- 0110011", "R", "M"),
    ("remu", "0000001 ----- ----- 111 ----- 0110011", "R", "M"),
    ("mulw", "0000001 ----- ----- 000 ----- 0111011", "R", "M"),
    ("divw", "0000001 ----- ----- 100 ----- 0111011", "R", "M"),
    ("divuw", "0000001 ----- ----- 101 ----- 0111011", "R", "M"),
    ("remw", "0000001 ----- ----- 110 ----- 0111011", "R", "M"),
    ("remuw", "0000001 ----- ----- 111 ----- 0111011", "R", "M"),
]

# A: funct5 per operation, width .w (010) and .d (011)
_AMO = [
    ("sc", "00011"), ("amoswap", "00001"), ("amoadd", "00000"), ("amoxor", "00100"), ("amoand", "01100"),
    ("amoor", "01000"), ("amomin", "10000"), ("amomax", "10100"), ("amominu", "11000"), ("amomaxu", "11100"),
]
for _w, _f3 in (("w", "010"), ("d", "011")):
    _TABLE.append((f"lr.{_w}", f"00010-- 00000 ----- {_f3} ----- 0101111", "LR", "A"))
    for _op, _f5 in _AMO:
        _TABLE.append((f"{_op}.{_w}", f"{_f5}-- ----- ----- {_f3} ----- 0101111", "AMO", "A"))

# F and D: fmt field 00 = single, 01 = double (unprivileged spec, chapters 11-12)
for _s, _fm, _ext, _wid in (("s", "00", "F", "010"), ("d", "01", "D", "011")):
    _TABLE += [
        (f"fl{'w' if _s == 's' else 'd'}", f"------- ----- ----- {_wid} ----- 0000111", "FL", _ext),
        (f"fs{'w' if _s == 's' else 'd'}", f"------- ----- ----- {_wid} ----- 0100111", "FS", _ext),
        (f"fmadd.{_s}", f"-----{_fm} ----- ----- --- ----- 1000011", "R4", _ext),
        (f"fmsub.{_s}", f"-----{_fm} ----- ----- --- ----- 1000111", "R4", _ext),
        (f"fnmsub.{_s}", f"-----{_fm} ----- ----- --- ----- 1001011", "R4", _ext),
        (f"fnmadd.{_s}", f"-----{_fm} ----- ----- --- ----- 1001111", "R4", _ext),
        (f"fadd.{_s}", f"00000{_fm} ----- ----- --- ----- 1010011", "RF", _ext),
        (f"fsub.{_s}", f"00001{_fm} ----- ----- --- ----- 1010011", "RF", _ext),
        (f"fmul.{_s}", f"00010{_fm} ----- ----- --- ----- 1010011", "RF", _ext),
        (f"fdiv.{_s}", f"00011{_fm} ----- ----- --- ----- 1010011", "RF", _ext),
        (f"fsqrt.{_s}", f"01011{_fm} 00000 ----- --- ----- 1010011", "R1F", _ext),
        (f"fsgnj.{_s}", f"00100{_fm} ----- ----- 000 ----- 1010011", "R", _ext),
        (f"fsgnjn.{_s}", f"00100{_fm} ----- ----- 001 ----- 1010011", "R", _ext),
        (f"fsgnjx.{_s}", f"00100{_fm} ----- ----- 010 ----- 1010011", "R", _ext),
        (f"fmin.{_s}", f"00101{_fm} ----- ----- 000 ----- 1010011", "R", _ext),
        (f"fmax.{_s}", f"00101{_fm} ----- ----- 001 ----- 1010011", "R", _ext),
        (f"feq.{_s}", f"10100{_fm} ----- ----- 010 ----- 1010011", "R", _ext),
        (f"flt.{_s}", f"10100{_fm} ----- ----- 001 ----- 1010011", "R", _ext),
        (f"fle.{_s}", f"10100{_fm} ----- ----- 000 ----- 1010011", "R", _ext),
        (f"fclass.{_s}", f"11100{_fm} 00000 ----- 001 ----- 1010011", "R1", _ext),
        (f"fcvt.w.{_s}", f"11000{_fm} 00000 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.wu.{_s}", f"11000{_fm} 00001 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.l.{_s}", f"11000{_fm} 00010 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.lu.{_s}", f"11000{_fm} 00011 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.{_s}.w", f"11010{_fm} 00000 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.{_s}.wu", f"11010{_fm} 00001 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.{_s}.l", f"11010{_fm} 00010 ----- --- ----- 1010011", "R1F", _ext),
        (f"fcvt.{_s}.lu", f"11010{_fm} 00011 ----- --- ----- 1010011", "R1F", _ext),
    ]
_TABLE += [
    ("fmv.x.w", "1110000 00000 ----- 000 ----- 1010011", "R1", "F"),
    ("fmv.w.x", "1111000 00000 ----- 000 ----- 1010011", "R1", "F"),
    ("fmv.x.d", "1110001 00000 ----- 000 ----- 1010011", "R1", "D"),
    ("fmv.d.x", "1111001 00000 ----- 000 ----- 1010011", "R1", "D"),
    ("fcvt.s.d", "0100000 00001 ----- --- ----- 1010011", "R1F", "D"),
    ("fcvt.d.s", "0100001 00000 ----- --- ----- 1010011", "R1F", "D"),
]


_MASK_BITS = str.maketrans("01-", "110")


def _compile(pattern: str) -> tuple[int, int]:
    """(mask, match) of a pattern of 0, 1 and - (any) bits."""
    bits = pattern.replace(" ", "")
    assert len(bits) in (16, 32) and set(bits) <= set("01-"), pattern
    return int(bits.translate(_MASK_BITS), 2), int(bits.replace("-", "0"), 2)


ENCODINGS: list[Encoding] = [Encoding(n, *_compile(p), f, e) for n, p, f, e in _TABLE]
BY_NAME: dict[str, Encoding] = {e.name: e for e in ENCODINGS}

# Decoding: bucket by major opcode (bits 6:0), most specific patterns first.
_BUCKETS: dict[int, list[Encoding]] = {}
for _e in sorted(ENCODINGS, key=lambda e: -bin(e.mask).count("1")):
    _BUCKETS.setdefault(_e.match & 0x7F, []).append(_e)


# Formats whose rm field is a static rounding mode: 101 and 110 are reserved encodings, "treated as
# usual with regard to decoding legal vs. reserved encodings" even by instructions that the rounding
# mode cannot affect (unprivileged spec 11.2).
_RM_FORMATS = ("RF", "R1F", "R4")
_RM_RESERVED = (5, 6)


def decode32(word: int) -> Insn | None:
    for enc in _BUCKETS.get(word & 0x7F, ()):
        if word & enc.mask == enc.match:
            if enc.fmt in _RM_FORMATS and _bits(word, 14, 12) in _RM_RESERVED:
                return None
            return Insn(enc.name, enc.fmt, length=4, raw=word, **_fields(enc.fmt, word))
    return None


# RVC (unprivileged spec, chapter 16): each row expands into one base instruction.
def _c_reg(v: int) -> int:
    return 8 + (v & 7)


def _cb(w: int, hi: int, lo: int) -> int:
    return _bits(w, hi, lo)


def _x_addi4spn(w):
    imm = (_cb(w, 12, 11) << 4) | (_cb(w, 10, 7) << 6) | (_cb(w, 6, 6) << 2) | (_cb(w, 5, 5) << 3)
    return ("addi", {"rd": _c_reg(w >> 2), "rs1": 2, "imm": imm}) if imm else None


def _uimm_d(w):  # c.ld/c.sd/c.fld/c.fsd offsets
    return (_cb(w, 12, 10) << 3) | (_cb(w, 6, 5) << 6)


def _uimm_w(w):  # c.lw/c.sw offsets
    return (_cb(w, 12, 10) << 3) | (_cb(w, 6, 6) << 2) | (_cb(w, 5, 5) << 6)


def _imm6(w):
    return _sext((_cb(w, 12, 12) << 5) | _cb(w, 6, 2), 6)


def _x_addi(w):
    return ("addi", {"rd": _cb(w, 11, 7), "rs1": _cb(w, 11, 7), "imm": _imm6(w)})


def _x_addiw(w):
    rd = _cb(w, 11, 7)
    return ("addiw", {"rd": rd, "rs1": rd, "imm": _imm6(w)}) if rd else None


def _x_li(w):
    return ("addi", {"rd": _cb(w, 11, 7), "rs1": 0, "imm": _imm6(w)})


def _x_lui(w):
    rd = _cb(w, 11, 7)
    if rd == 2:
        imm = (_cb(w, 12, 12) << 9) | (_cb(w, 6, 6) << 4) | (_cb(w, 5, 5) << 6) | (_cb(w, 4, 3) << 7) | (
            _cb(w, 2, 2) << 5)
        imm = _sext(imm, 10)
        return ("addi", {"rd": 2, "rs1": 2, "imm": imm}) if imm else None
    imm = _imm6(w) << 12
    return ("lui", {"rd": rd, "imm": imm}) if imm else None


def _shamt(w):
    return (_cb(w, 12, 12) << 5) | _cb(w, 6, 2)


def _x_srli(w):
    rd = _c_reg(w >> 7)
    return ("srli", {"rd": rd, "rs1": rd, "imm": _shamt(w)})


def _x_srai(w):
    rd = _c_reg(w >> 7)
    return ("srai", {"rd": rd, "rs1": rd, "imm": _shamt(w)})


def _x_andi(w):
    rd = _c_reg(w >> 7)
    return ("andi", {"rd": rd, "rs1": rd, "imm": _imm6(w)})


def _x_arith(name):
    def ex(w):
        rd = _c_reg(w >> 7)
        return (name, {"rd": rd, "rs1": rd, "rs2": _c_reg(w >> 2)})
    return ex


def _cj_imm(w):
    v = ((_cb(w, 12, 12) << 11) | (_cb(w, 11, 11) << 4) | (_cb(w, 10, 9) << 8) | (_cb(w, 8, 8) << 10)
         | (_cb(w, 7, 7) << 6) | (_cb(w, 6, 6) << 7) | (_cb(w, 5, 3) << 1) | (_cb(w, 2, 2) << 5))
    return _sext(v, 12)


def _cb_imm(w):
    v = ((_cb(w, 12, 12) << 8) | (_cb(w, 11, 10) << 3) | (_cb(w, 6, 5) << 6) | (_cb(w, 4, 3) << 1)
         | (_cb(w, 2, 2) << 5))
    return _sext(v, 9)


def _x_slli(w):
    rd = _cb(w, 11, 7)
    return ("slli", {"rd": rd, "rs1": rd, "imm": _shamt(w)})


def _x_lsp(name, scale):
    def ex(w):
        rd = _cb(w, 11, 7)
        if scale == 8:
            off = (_cb(w, 12, 12) << 5) | (_cb(w, 6, 5) << 3) | (_cb(w, 4, 2) << 6)
        else:
            off = (_cb(w, 12, 12) << 5) | (_cb(w, 6, 4) << 2) | (_cb(w, 3, 2) << 6)
        if name != "fld" and rd == 0:
            return None
        return (name, {"rd": rd, "rs1": 2, "imm": off})
    return ex


def _x_ssp(name, scale):
    def ex(w):
        if scale == 8:
            off = (_cb(w, 12, 10) << 3) | (_cb(w, 9, 7) << 6)
        else:
            off = (_cb(w, 12, 9) << 2) | (_cb(w, 8, 7) << 6)
        return (name, {"rs1": 2, "rs2": _cb(w, 6, 2), "imm": off})
    return ex


def _x_cr(w):
    rs1, rs2, bit12 = _cb(w, 11, 7), _cb(w, 6, 2), _cb(w, 12, 12)
    if not bit12:
        if rs2 == 0:
            return ("jalr", {"rd": 0, "rs1": rs1, "imm": 0}) if rs1 else None
        return ("add", {"rd": rs1, "rs1": 0, "rs2": rs2})
    if rs1 == 0 and rs2 == 0:
        return ("ebreak", {})
    if rs2 == 0:
        return ("jalr", {"rd": 1, "rs1": rs1, "imm": 0})
    return ("add", {"rd": rs1, "rs1": rs1, "rs2": rs2})


_CTABLE: list[tuple[str, str, Callable]] = [
    ("c.addi4spn", "000 --- --- -- --- 00", _x_addi4spn),
    ("c.fld", "001 --- --- -- --- 00",
     lambda w: ("fld", {"rd": _c_reg(w >> 2), "rs1": _c_reg(w >> 7), "imm": _uimm_d(w)})),
    ("c.lw", "010 --- --- -- --- 00",
     lambda w: ("lw", {"rd": _c_reg(w >> 2), "rs1": _c_reg(w >> 7), "imm": _uimm_w(w)})),
    ("c.ld", "011 --- --- -- --- 00",
     lambda w: ("ld", {"rd": _c_reg(w >> 2), "rs1": _c_reg(w >> 7), "imm": _uimm_d(w)})),
    ("c.fsd", "101 --- --- -- --- 00",
     lambda w: ("fsd", {"rs1": _c_reg(w >> 7), "rs2": _c_reg(w >> 2), "imm": _uimm_d(w)})),
    ("c.sw", "110 --- --- -- --- 00",
     lambda w: ("sw", {"rs1": _c_reg(w >> 7), "rs2": _c_reg(w >> 2), "imm": _uimm_w(w)})),
    ("c.sd", "111 --- --- -- --- 00",
     lambda w: ("sd", {"rs1": _c_reg(w >> 7), "rs2": _c_reg(w >> 2), "imm": _uimm_d(w)})),
    ("c.addi", "000 - ----- ----- 01", _x_addi),
    ("c.addiw", "001 - ----- ----- 01", _x_addiw),
    ("c.li", "010 - ----- ----- 01", _x_li),
    ("c.lui", "011 - ----- ----- 01", _x_lui),
    ("c.srli", "100 - 00 --- ----- 01", _x_srli),
    ("c.srai", "100 - 01 --- ----- 01", _x_srai),
    ("c.andi", "100 - 10 --- ----- 01", _x_andi),
    ("c.sub", "100 0 11 --- 00 --- 01", _x_arith("sub")),
    ("c.xor", "100 0 11 --- 01 --- 01", _x_arith("xor")),
    ("c.or", "100 0 11 --- 10 --- 01", _x_arith("or")),
    ("c.and", "100 0 11 --- 11 --- 01", _x_arith("and")),
    ("c.subw", "100 1 11 --- 00 --- 01", _x_arith("subw")),
    ("c.addw", "100 1 11 --- 01 --- 01", _x_arith("addw")),
    ("c.j", "101 - ----- ----- 01", lambda w: ("jal", {"rd": 0, "imm": _cj_imm(w)})),
    ("c.beqz", "110 --- --- ----- 01", lambda w: ("beq", {"rs1": _c_reg(w >> 7), "rs2": 0, "imm": _cb_imm(w)})),
    ("c.bnez", "111 --- --- ----- 01", lambda w: ("bne", {"rs1": _c_reg(w >> 7), "rs2": 0, "imm": _cb_imm(w)})),
    ("c.slli", "000 - ----- ----- 10", _x_slli),
    ("c.fldsp", "001 - ----- ----- 10", _x_lsp("fld", 8)),
    ("c.lwsp", "010 - ----- ----- 10", _x_lsp("lw", 4)),
    ("c.ldsp", "011 - ----- ----- 10", _x_lsp("ld", 8)),
    ("c.cr", "100 - ----- ----- 10", _x_cr),
    ("c.fsdsp", "101 - ----- ----- 10", _x_ssp("fsd", 8)),
    ("c.swsp", "110 - ----- ----- 10", _x_ssp("sw", 4)),
    ("c.sdsp", "111 - ----- ----- 10", _x_ssp("sd", 8)),
]
C_ENCODINGS = [(n, *_compile(p), x) for n, p, x in _CTABLE]


def decode16(half: int) -> Insn | None:
    half &= 0xFFFF
    for _name, mask, match, expand in C_ENCODINGS:
        if half & mask == match:
            res = expand(half)
            if res is None:
                return None
            base, fields = res
            return Insn(base, BY_NAME[base].fmt, length=2, raw=half, **fields)
    return None


def encode(insn: Insn) -> int:
    """The 32-bit encoding of a decoded instruction (the inverse of `_fields`, unprivileged spec
    2.2-2.3); a compressed instruction gives the base instruction it expands to."""
    enc = BY_NAME[insn.name]
    f = enc.fmt
    rd, rs1, rs2, imm = insn.rd << 7, insn.rs1 << 15, insn.rs2 << 20, insn.imm
    w = 0
    if f in ("R", "AMO", "LR", "SFENCE", "R1", "RF", "R1F", "R4"):
        w = rd | rs1 | rs2 | (insn.rm << 12) | (insn.rs3 << 27) | (insn.aq << 26) | (insn.rl << 25)
    elif f in ("I", "L", "FL", "FENCE", "SH6", "SH5"):
        w = rd | rs1 | ((imm & 0xFFF) << 20)
    elif f in ("S", "FS"):
        w = rs1 | rs2 | (_bits(imm, 11, 5) << 25) | (_bits(imm, 4, 0) << 7)
    elif f == "B":
        w = (rs1 | rs2 | (_bits(imm, 12, 12) << 31) | (_bits(imm, 10, 5) << 25) | (_bits(imm, 4, 1) << 8)
             | (_bits(imm, 11, 11) << 7))
    elif f == "U":
        w = rd | (imm & 0xFFFFF000)
    elif f == "J":
        w = (rd | (_bits(imm, 20, 20) << 31) | (_bits(imm, 10, 1) << 21) | (_bits(imm, 11, 11) << 20)
             | (_bits(imm, 19, 12) << 12))
    elif f == "CSR":
        w = rd | rs1 | (insn.csr << 20)
    elif f == "CSRI":
        w = rd | (imm << 15) | (insn.csr << 20)
    return (w & ~enc.mask) | enc.match


def rvc_expansions() -> list[int]:
    """For every 16-bit word, the 32-bit encoding of the instruction it expands to (chapter 16),
    or 0 (an illegal instruction) for reserved encodings and for the low half of 32-bit ones."""
    out = [0] * 0x10000
    for w in range(0x10000):
        if w & 3 != 3:
            insn = decode16(w)
            if insn is not None:
                out[w] = encode(insn)
    return out


_cache: dict[int, Insn | None] = {}


def decode(word: int) -> Insn | None:
    """Decodes the instruction at the start of `word` (low 16 bits compressed, else 32 bits)."""
    if word & 3 != 3:
        word &= 0xFFFF
    else:
        word &= 0xFFFFFFFF
    try:
        return _cache[word]
    except KeyError:
        pass
    insn = decode16(word) if word & 3 != 3 else decode32(word)
    if len(_cache) < 1 << 20:
        _cache[word] = insn
    return insn


def insn_length(first_half: int) -> int:
    """Length in bytes of the instruction whose low half-word is given (2 or 4; longer ones are illegal)."""
    return 4 if first_half & 3 == 3 else 2


# Disassembly, driven by the same formats.
ABI_NAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
             "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"]
FP_NAMES = ["ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2", "fa3",
            "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11",
            "ft8", "ft9", "ft10", "ft11"]
_RM = ["rne", "rtz", "rdn", "rup", "rmm", "rm5", "rm6", "dyn"]


def _is_fp_reg(name: str, slot: str) -> bool:
    """Which operands of an F/D instruction name FP registers."""
    if not (name.startswith("f") and name not in ("fence", "fence.i")):
        return False
    if name.startswith(("fmv.x.", "fclass.", "feq.", "flt.", "fle.")):
        return slot != "rd"
    if name.startswith("fmv.") or name.startswith("fcvt.s.") or name.startswith("fcvt.d."):
        src = name.split(".")[-1]
        return slot == "rd" or src in ("s", "d")
    if name.startswith("fcvt."):
        return slot != "rd"
    if name in ("flw", "fld", "fsw", "fsd"):
        return slot in ("rd", "rs2")
    return True


# Conversions that the rounding mode cannot affect: assemblers encode rm = 000 and omit it.
_EXACT_CVT = ("fcvt.d.w", "fcvt.d.wu", "fcvt.d.s")


def _rm_suffix(insn: Insn) -> list[str]:
    """The rounding-mode operand as binutils prints it: omitted when it is the default."""
    default = 0 if insn.name in _EXACT_CVT else 7
    return [] if insn.rm == default else [_RM[insn.rm]]


def _fence_set(bits: int) -> str:
    return "".join(ch for ch, bit in zip("iorw", (8, 4, 2, 1), strict=True) if bits & bit) or "0"


def _ordering(insn: Insn) -> str:
    """The aq/rl suffix of an AMO or LR/SC: .aq, .rl or .aqrl."""
    bits = ("aq" if insn.aq else "") + ("rl" if insn.rl else "")
    return "." + bits if bits else ""


def _csr(num: int) -> str:
    return CSR_NAMES.get(num, hex(num))


def disasm(insn: Insn, pc: int = 0) -> str:
    """Formats an instruction like `objdump -M no-aliases`: base mnemonics (compressed forms show the
    instruction they expand to), ABI register names, CSR names, hex shift amounts and upper
    immediates, absolute branch targets."""
    n, f = insn.name, insn.fmt

    def r(slot: str) -> str:
        v = getattr(insn, slot)
        return FP_NAMES[v] if _is_fp_reg(n, slot) else ABI_NAMES[v]

    def target() -> str:
        return hex((pc + insn.imm) & 0xFFFFFFFFFFFFFFFF)

    if f == "R":
        ops = [r("rd"), r("rs1"), r("rs2")]
    elif f == "RF":
        ops = [r("rd"), r("rs1"), r("rs2"), *_rm_suffix(insn)]
    elif f == "R1F":
        ops = [r("rd"), r("rs1"), *_rm_suffix(insn)]
    elif f == "R1":
        ops = [r("rd"), r("rs1")]
    elif f == "R4":
        ops = [r("rd"), r("rs1"), r("rs2"), r("rs3"), *_rm_suffix(insn)]
    elif f == "I" and n == "jalr":
        ops = [r("rd"), f"{insn.imm}({ABI_NAMES[insn.rs1]})"]
    elif f == "I":
        ops = [r("rd"), r("rs1"), str(insn.imm)]
    elif f in ("SH6", "SH5"):
        ops = [r("rd"), r("rs1"), hex(insn.imm)]
    elif f in ("L", "FL"):
        ops = [r("rd"), f"{insn.imm}({ABI_NAMES[insn.rs1]})"]
    elif f in ("S", "FS"):
        ops = [r("rs2"), f"{insn.imm}({ABI_NAMES[insn.rs1]})"]
    elif f == "B":
        ops = [r("rs1"), r("rs2"), target()]
    elif f == "U":
        ops = [r("rd"), hex((insn.imm >> 12) & 0xFFFFF)]
    elif f == "J":
        ops = [r("rd"), target()]
    elif f == "CSR":
        ops = [r("rd"), _csr(insn.csr), r("rs1")]
    elif f == "CSRI":
        ops = [r("rd"), _csr(insn.csr), str(insn.imm)]
    elif f == "AMO":
        ops = [r("rd"), r("rs2"), f"({ABI_NAMES[insn.rs1]})"]
        n += _ordering(insn)
    elif f == "LR":
        ops = [r("rd"), f"({ABI_NAMES[insn.rs1]})"]
        n += _ordering(insn)
    elif f == "FENCE" and n == "fence":
        fm, pred, succ = insn.imm >> 8, (insn.imm >> 4) & 15, insn.imm & 15
        if fm == 8 and pred == succ == 3:
            n, ops = "fence.tso", []
        else:
            ops = [_fence_set(pred), _fence_set(succ)]
    elif f == "SFENCE":
        ops = [r("rs1"), r("rs2")]
    else:
        ops = []
    return f"{n} {', '.join(ops)}".rstrip()
