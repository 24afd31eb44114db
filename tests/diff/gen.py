"""Random RV64GC instruction sequences for differential testing, one generator per category.

Encodings start from the fixed bits of translator/isa.py's table (mask/match per mnemonic, so
generator and decoder share one source of truth for opcodes) while operand placement is this
module's own small encoder, written from the unprivileged spec. Every generated instruction carries
its spelling in binutils syntax (`objdump -M no-aliases,numeric`), so a test checks the encoder
against binutils rather than against Mirage's decoder.

A program is reproducible from (category, seed, length). Sequences are straight-line except for
short forward branches and jumps over whole "units" (an instruction together with the setup it
needs, such as the address computation of an AMO), so every path through a program is well
formed. Memory accesses are always naturally aligned and inside the data buffer at DATA_ADDR:
each program reserves a base register (never written) that points into the middle of it.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from translator.isa import BY_NAME, C_ENCODINGS

CODE_ADDR = 0x8000_0000  # Programs start in the second page from here, straddling a page boundary
DATA_ADDR = 0x8010_0000
DATA_SIZE = 4096
CATEGORIES = ("int", "m", "a", "c", "f", "d")
DEFAULT_LENGTH = 300
# Chance that a unit is a forward branch or jump over the next few units, per category.
CONTROL_RATE = {"int": 0.06, "m": 0.03, "a": 0.03, "c": 0.08, "f": 0.02, "d": 0.02}
EBREAK = 0x00100073
C_EBREAK = 0x9002
MASK64 = (1 << 64) - 1
BOX = 0xFFFFFFFF_00000000


@dataclass(frozen=True)
class FpInfo:
    """What an FP instruction does with NaN-boxing, for the reference model's adapter."""

    srcs: tuple[int, ...] = ()  # FP source registers in operand order (not for raw moves and stores)
    dst: int | None = None  # FP destination register
    dst_s: bool = False  # The destination receives a single (NaN-boxed)
    src_s: bool = False  # The sources are single-precision operands (an improper NaN-box reads as NaN)
    kind: str = ""  # "minmax" or "fma": operations with spec revisions unicorn predates
    width: int = 32  # Operand width of `kind` operations


@dataclass(frozen=True)
class GenInsn:
    word: int
    length: int  # 2 (compressed) or 4
    asm: str  # Spelling in binutils syntax, branch targets relative to the program start
    base: str  # The base instruction it is (compressed forms expand to it)
    fp: FpInfo | None = None


@dataclass
class Program:
    category: str
    seed: int
    length: int
    insns: list[GenInsn]
    x: list[int]  # Initial x0..x31 (x0 is 0)
    f: list[int]  # Initial f0..f31 (raw 64-bit patterns)
    fcsr: int
    data: bytes  # Initial contents of the data buffer
    base: int  # The reserved register pointing into the data buffer
    code_addr: int = CODE_ADDR + 0x1000  # Where the program runs (all its control flow is pc-relative)

    def offsets(self) -> list[int]:
        out, off = [], 0
        for i in self.insns:
            out.append(off)
            off += i.length
        return out

    def code(self, prefix: int | None = None) -> bytes:
        """The program as bytes, ending in ebreak. With `prefix`, instructions from that index on
        are replaced by ebreaks of the same length, so every path stops right after the prefix."""
        parts = []
        for n, i in enumerate(self.insns):
            if prefix is not None and n >= prefix:
                parts.append(struct.pack("<I", EBREAK) if i.length == 4 else struct.pack("<H", C_EBREAK))
            elif i.length == 4:
                parts.append(struct.pack("<I", i.word))
            else:
                parts.append(struct.pack("<H", i.word))
        parts.append(struct.pack("<I", EBREAK))
        return b"".join(parts)


# 32-bit operand placement (unprivileged spec, 2.2-2.3)
def _imm_i(v: int) -> int:
    return (v & 0xFFF) << 20


def _imm_s(v: int) -> int:
    v &= 0xFFF
    return ((v >> 5) << 25) | ((v & 31) << 7)


def _imm_b(v: int) -> int:
    v &= 0x1FFF
    return (((v >> 12) & 1) << 31) | (((v >> 5) & 0x3F) << 25) | (((v >> 1) & 0xF) << 8) | (((v >> 11) & 1) << 7)


def _imm_j(v: int) -> int:
    v &= 0x1FFFFF
    return (((v >> 20) & 1) << 31) | (((v >> 1) & 0x3FF) << 21) | (((v >> 11) & 1) << 20) | (((v >> 12) & 0xFF) << 12)


_FIELDS = {
    "rd": lambda v: v << 7, "rs1": lambda v: v << 15, "rs2": lambda v: v << 20, "rs3": lambda v: v << 27,
    "rm": lambda v: v << 12, "i": _imm_i, "s": _imm_s, "b": _imm_b, "u": lambda v: v & 0xFFFFF000,
    "j": _imm_j, "shamt": lambda v: v << 20, "aq": lambda v: v << 26, "rl": lambda v: v << 25,
    "csr": lambda v: v << 20, "zimm": lambda v: v << 15, "pred": lambda v: v << 24, "succ": lambda v: v << 20,
}


def encode(name: str, **ops: int) -> int:
    """A 32-bit instruction: the table's fixed bits for `name` plus the given operand fields."""
    enc = BY_NAME[name]
    w = 0
    for k, v in ops.items():
        w |= _FIELDS[k](v)
    if w & enc.mask:
        raise ValueError(f"{name}: operands {ops} overlap its fixed bits")
    return enc.match | w


_C_ROWS = {n: (mask, match) for n, mask, match, _x in C_ENCODINGS}


def c_encode(row: str, fields: int) -> int:
    """A 16-bit instruction: the fixed bits of isa.py's compressed row plus operand bits."""
    mask, match = _C_ROWS[row]
    if fields & mask:
        raise ValueError(f"{row}: operand bits {fields:#x} overlap its fixed bits")
    return match | fields


def _b(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def _cl_w(off: int) -> int:  # Offset of c.lw/c.sw: [12:10]=off[5:3], [6]=off[2], [5]=off[6]
    return (_b(off, 5, 3) << 10) | (_b(off, 2, 2) << 6) | (_b(off, 6, 6) << 5)


def _cl_d(off: int) -> int:  # Offset of c.ld/c.sd/c.fld/c.fsd: [12:10]=off[5:3], [6:5]=off[7:6]
    return (_b(off, 5, 3) << 10) | (_b(off, 7, 6) << 5)


def _ci(imm: int) -> int:  # CI immediate: [12]=imm[5], [6:2]=imm[4:0]
    return (_b(imm, 5, 5) << 12) | (_b(imm, 4, 0) << 2)


def _cj(off: int) -> int:  # Offset of c.j: [12|11|10:9|8|7|6|5:3|2] = off[11|4|9:8|10|6|7|3:1|5]
    return ((_b(off, 11, 11) << 12) | (_b(off, 4, 4) << 11) | (_b(off, 9, 8) << 9) | (_b(off, 10, 10) << 8)
            | (_b(off, 6, 6) << 7) | (_b(off, 7, 7) << 6) | (_b(off, 3, 1) << 3) | (_b(off, 5, 5) << 2))


def _cb(off: int) -> int:  # Offset of c.beqz/c.bnez: [12|11:10] = off[8|4:3], [6:5|4:3|2] = off[7:6|2:1|5]
    return ((_b(off, 8, 8) << 12) | (_b(off, 4, 3) << 10) | (_b(off, 7, 6) << 5) | (_b(off, 2, 1) << 3)
            | (_b(off, 5, 5) << 2))


# Value pools
_INT_SPECIAL = [
    0, 1, 2, 3, 7, 31, 32, 63, 64, -1, -2, -3, 0x7FF, 0x800, -0x800, 0xFFF, 0x7FFF, 0x8000, 0xFFFF,
    0x7FFFFFFF, -0x80000000, 0x80000000, 0xFFFFFFFF, 0x1_0000_0000, 0xFFFFFFFF_7FFFFFFF, 0x7FFFFFFF_FFFFFFFF,
    -0x80000000_00000000, 0x5555555555555555, 0xAAAAAAAAAAAAAAAA, 0x00000000_80000001, 0xFFFFFFFF_00000000,
    0x0000_0001_0000_0001, 0x8000_0000_0000_0001,
]

_S_SPECIAL = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # +-0, +-inf
    0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7FFFFFFF,  # Quiet NaNs
    0x7F800001, 0x7FA00000, 0xFF800001, 0x7FBFFFFF,  # Signaling NaNs
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,  # Denormals
    0x00800000, 0x80800000, 0x00800001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE,  # Min/max normal
    0x3F800000, 0xBF800000, 0x3F000000, 0xBF000000, 0x3FC00000, 0x40200000, 0xC0200000, 0x40400000,
    0x3F7FFFFF, 0x3F800001, 0x3EFFFFFF, 0x33800000, 0x40490FDB, 0x3EAAAAAB,
    # Near integer-conversion boundaries: 2^31, 2^32, 2^63, 2^64 and neighbours
    0x4EFFFFFF, 0x4F000000, 0x4F000001, 0xCEFFFFFF, 0xCF000000, 0xCF000001, 0x4F7FFFFF, 0x4F800000,
    0x5EFFFFFF, 0x5F000000, 0xDEFFFFFF, 0xDF000000, 0xDF000001, 0x5F7FFFFF, 0x5F800000, 0xBF7FFFFF,
]

_D_SPECIAL = [
    0x0000000000000000, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000,
    0x7FF8000000000000, 0xFFF8000000000000, 0x7FF8000000012345, 0x7FFFFFFFFFFFFFFF,
    0x7FF0000000000001, 0x7FF4000000000000, 0xFFF0000000000001, 0x7FF7FFFFFFFFFFFF,
    0x0000000000000001, 0x8000000000000001, 0x000FFFFFFFFFFFFF, 0x800FFFFFFFFFFFFF, 0x0008000000000000,
    0x0010000000000000, 0x8010000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF,
    0x3FF0000000000000, 0xBFF0000000000000, 0x3FE0000000000000, 0xBFE0000000000000, 0x3FF8000000000000,
    0x4004000000000000, 0xC004000000000000, 0x3FEFFFFFFFFFFFFF, 0x3FF0000000000001, 0x400921FB54442D18,
    # Near 2^31, 2^32, 2^63, 2^64 (including x.5 just below 2^31 and 2^32)
    0x41DFFFFFFFC00000, 0x41DFFFFFFFE00000, 0x41E0000000000000, 0xC1E0000000000000, 0xC1E0000000100000,
    0xC1E0000000200000, 0x41EFFFFFFFE00000, 0x41EFFFFFFFF00000, 0x41F0000000000000, 0x43DFFFFFFFFFFFFF,
    0x43E0000000000000, 0xC3E0000000000000, 0xC3E0000000000001, 0x43EFFFFFFFFFFFFF, 0x43F0000000000000,
    # Single-precision edges seen as doubles (for fcvt.s.d)
    0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x47F0000000000000, 0x36A0000000000000, 0x3690000000000000,
    0x3810000000000000, 0x380FFFFFF0000000, 0x3FF0000010000000, 0x3FF0000008000000,
]


def int_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.4:
        v = rng.choice(_INT_SPECIAL) + (rng.choice((-1, 0, 0, 1)) if rng.random() < 0.3 else 0)
    elif r < 0.6:
        v = rng.randint(-64, 64)
    elif r < 0.75:
        v = rng.randint(-(1 << 31), (1 << 31) - 1)
    else:
        v = rng.getrandbits(64)
    return v & MASK64


def single_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.choice(_S_SPECIAL)
    if r < 0.6:  # Small integers and halves (rounding ties in conversions)
        return struct.unpack("<I", struct.pack("<f", rng.randint(-300, 300) / rng.choice((1, 2, 4))))[0]
    if r < 0.9:  # Moderate magnitudes with full mantissas
        return (rng.getrandbits(1) << 31) | (rng.randint(100, 160) << 23) | rng.getrandbits(23)
    return rng.getrandbits(32)


def double_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.choice(_D_SPECIAL)
    if r < 0.55:
        return struct.unpack("<Q", struct.pack("<d", rng.randint(-300, 300) / rng.choice((1, 2, 4))))[0]
    if r < 0.65:  # A single widened: exact in both formats
        s = struct.unpack("<f", struct.pack("<I", single_value(rng)))[0]
        return struct.unpack("<Q", struct.pack("<d", s))[0]
    if r < 0.9:
        return (rng.getrandbits(1) << 63) | (rng.randint(900, 1150) << 52) | rng.getrandbits(52)
    return rng.getrandbits(64)


def boxed_single(rng: random.Random) -> int:
    return BOX | single_value(rng)


def unboxed_single(rng: random.Random) -> int:
    """A single whose upper half is not all ones: it must read as the canonical NaN."""
    hi = rng.choice((0, 0xFFFFFFFE, 0x7FFFFFFF, 0xFFFF0000, rng.getrandbits(32) & 0xFFFFFFFE))
    return (hi << 32) | single_value(rng)


_R = ("add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and")
_I = ("addi", "slti", "sltiu", "xori", "ori", "andi")
_W_R = ("addw", "subw", "sllw", "srlw", "sraw")
_LOADS = {"lb": 1, "lh": 2, "lw": 4, "ld": 8, "lbu": 1, "lhu": 2, "lwu": 4}
_STORES = {"sb": 1, "sh": 2, "sw": 4, "sd": 8}
_M = ("mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu", "mulw", "divw", "divuw", "remw", "remuw")
_AMO_OPS = ("amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax", "amominu", "amomaxu")
_BRANCHES = ("beq", "bne", "blt", "bge", "bltu", "bgeu")
_RM_NAMES = ("rne", "rtz", "rdn", "rup", "rmm", "", "", "")
_CSR = {1: "fflags", 2: "frm", 3: "fcsr"}


def _x(r: int) -> str:
    return f"x{r}"


def _f(r: int) -> str:
    return f"f{r}"


class _Gen:
    """Builds one program; `units` are lists of instructions that must run together."""

    def __init__(self, category: str, seed: int, length: int) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        self.cat = category
        self.seed = seed
        self.length = length
        self.rng = random.Random(f"mirage-diff:{category}:{seed}:{length}")
        self.out: list[GenInsn] = []
        self.off = 0
        rng = self.rng
        if category == "c":
            self.base = rng.randrange(8, 16)  # Reachable by c.lw/c.sw
            self.protected = {0, 2, self.base}
            self.sp = DATA_ADDR + 16 * rng.randrange(0, 150)
            self.initial_sp = self.sp
        else:
            self.base = rng.randrange(1, 32)
            self.protected = {0, self.base}
            self.sp = None
        self.writable = [r for r in range(32) if r not in self.protected]
        self.cwritable = [r for r in range(8, 16) if r not in self.protected]

    # Registers and immediates
    def wreg(self, allow_x0: bool = True) -> int:
        if allow_x0 and self.rng.random() < 0.03:
            return 0
        return self.rng.choice(self.writable)

    def rreg(self) -> int:
        return self.rng.randrange(32)

    def freg(self) -> int:
        return self.rng.randrange(32)

    def imm12(self) -> int:
        r = self.rng.random()
        if r < 0.2:
            return self.rng.choice((-2048, 2047, 0, -1, 1, 0x7FF, -0x7FF, 31, 32, 63, 64))
        if r < 0.6:
            return self.rng.randint(-64, 64)
        return self.rng.randint(-2048, 2047)

    def rm(self) -> int:
        return self.rng.choice((0, 1, 2, 3, 4, 7, 7))

    # Instruction constructors
    def i32(self, name: str, asm: str, fp: FpInfo | None = None, **ops: int) -> GenInsn:
        return GenInsn(encode(name, **ops), 4, f"{name}\t{asm}", name, fp)

    def i16(self, row: str, fields: int, asm: str, base: str, fp: FpInfo | None = None) -> GenInsn:
        return GenInsn(c_encode(row, fields), 2, asm, base, fp)

    def r(self, name: str, rd: int, rs1: int, rs2: int) -> GenInsn:
        return self.i32(name, f"{_x(rd)},{_x(rs1)},{_x(rs2)}", rd=rd, rs1=rs1, rs2=rs2)

    def ri(self, name: str, rd: int, rs1: int, imm: int) -> GenInsn:
        return self.i32(name, f"{_x(rd)},{_x(rs1)},{imm}", rd=rd, rs1=rs1, i=imm)

    def sh(self, name: str, rd: int, rs1: int, amount: int) -> GenInsn:
        return self.i32(name, f"{_x(rd)},{_x(rs1)},{amount:#x}", rd=rd, rs1=rs1, shamt=amount)

    def u(self, name: str, rd: int, imm20: int) -> GenInsn:
        return self.i32(name, f"{_x(rd)},{imm20:#x}", rd=rd, u=imm20 << 12)

    def load(self, name: str, rd: int, rs1: int, imm: int, fp: FpInfo | None = None) -> GenInsn:
        reg = _f(rd) if name in ("flw", "fld") else _x(rd)
        return self.i32(name, f"{reg},{imm}({_x(rs1)})", fp, rd=rd, rs1=rs1, i=imm)

    def store(self, name: str, rs2: int, rs1: int, imm: int) -> GenInsn:
        reg = _f(rs2) if name in ("fsw", "fsd") else _x(rs2)
        return self.i32(name, f"{reg},{imm}({_x(rs1)})", rs2=rs2, rs1=rs1, s=imm)

    # Addresses inside the data buffer
    def addr(self, size: int) -> tuple[list[GenInsn], int, int]:
        """(setup, rs1, imm) for a naturally aligned access of `size` bytes inside the buffer."""
        rng = self.rng
        target = size * rng.randrange(0, DATA_SIZE // size)  # Offset in the buffer
        if rng.random() < 0.6:
            return [], self.base, target - DATA_SIZE // 2
        # Through a scratch register: addi rA, base, off1 ; access imm(rA)
        rel = target - DATA_SIZE // 2
        lo, hi = max(-2048, rel - 2047), min(2047, rel + 2048)
        off1 = rng.randint(lo, hi)
        ra = self.wreg(allow_x0=False)
        return [self.ri("addi", ra, self.base, off1)], ra, rel - off1

    def amo_addr(self, size: int) -> tuple[list[GenInsn], int]:
        if self.rng.random() < 0.15:
            return [], self.base
        target = size * self.rng.randrange(0, DATA_SIZE // size) - DATA_SIZE // 2
        ra = self.wreg(allow_x0=False)
        return [self.ri("addi", ra, self.base, target)], ra

    # Units: instructions that must run together (a branch skips whole units or none)
    def int_alu(self) -> GenInsn:
        rng = self.rng
        k = rng.random()
        rd = self.wreg()
        if k < 0.3:
            a = self.rreg()
            return self.r(rng.choice(_R), rd, a, a if rng.random() < 0.1 else self.rreg())
        if k < 0.5:
            return self.ri(rng.choice(_I), rd, self.rreg(), self.imm12())
        if k < 0.6:
            return self.sh(rng.choice(("slli", "srli", "srai")), rd, self.rreg(),
                           rng.choice((0, 1, 31, 32, 63)) if rng.random() < 0.3 else rng.randrange(64))
        if k < 0.75:
            return self.r(rng.choice(_W_R), rd, self.rreg(), self.rreg())
        if k < 0.83:
            return self.ri("addiw", rd, self.rreg(), self.imm12())
        if k < 0.92:
            return self.sh(rng.choice(("slliw", "srliw", "sraiw")), rd, self.rreg(),
                           rng.choice((0, 1, 31)) if rng.random() < 0.3 else rng.randrange(32))
        imm20 = rng.choice((0, 1, 0x7FFFF, 0x80000, 0xFFFFF)) if rng.random() < 0.3 else rng.getrandbits(20)
        return self.u(rng.choice(("lui", "auipc")), rd, imm20)

    def int_mem(self) -> list[GenInsn]:
        rng = self.rng
        if rng.random() < 0.55:
            name = rng.choice(list(_LOADS))
            setup, rs1, imm = self.addr(_LOADS[name])
            return [*setup, self.load(name, self.wreg(), rs1, imm)]
        name = rng.choice(list(_STORES))
        setup, rs1, imm = self.addr(_STORES[name])
        return [*setup, self.store(name, self.rreg(), rs1, imm)]

    def inject(self) -> list[GenInsn]:
        """Brings an interesting value into a register (loads from the buffer or constants)."""
        rng = self.rng
        rd = self.wreg(allow_x0=False)
        k = rng.random()
        if k < 0.5:
            setup, rs1, imm = self.addr(8)
            return [*setup, self.load("ld", rd, rs1, imm)]
        if k < 0.75:
            return [self.ri("addi", rd, 0, rng.choice((-1, 0, 1, 2, -2, 2047, -2048)))]
        return [self.u("lui", rd, rng.choice((0x80000, 0x7FFFF, 0xFFFFF, 0x00001)))]

    def int_unit(self) -> list[GenInsn]:
        k = self.rng.random()
        if k < 0.6:
            return [self.int_alu()]
        if k < 0.97:
            return self.int_mem()
        pred, succ = self.rng.randint(1, 15), self.rng.randint(1, 15)
        return [self.i32("fence", f"{_fence_set(pred)},{_fence_set(succ)}", pred=pred, succ=succ)]

    def m_unit(self) -> list[GenInsn]:
        rng = self.rng
        k = rng.random()
        if k < 0.65:
            a = self.rreg()
            b = a if rng.random() < 0.05 else self.rreg()
            return [self.r(rng.choice(_M), self.wreg(), a, b)]
        if k < 0.8:
            return self.inject()
        return self.int_unit()

    def a_unit(self) -> list[GenInsn]:
        rng = self.rng
        k = rng.random()
        if k < 0.5:
            w = rng.choice("wd")
            setup, ra = self.amo_addr(4 if w == "w" else 8)
            name = f"{rng.choice(_AMO_OPS)}.{w}"
            return [*setup, self.amo(name, self.wreg(), self.rreg(), ra)]
        if k < 0.72:
            return self.lrsc()
        if k < 0.8:
            return self.inject()
        return self.int_unit()

    def amo(self, name: str, rd: int, rs2: int, rs1: int) -> GenInsn:
        aq, rl = self.rng.getrandbits(1), self.rng.getrandbits(1)
        sfx = ("." if aq or rl else "") + ("aq" if aq else "") + ("rl" if rl else "")
        if name.startswith("lr."):
            return GenInsn(encode(name, rd=rd, rs1=rs1, aq=aq, rl=rl), 4, f"{name}{sfx}\t{_x(rd)},({_x(rs1)})", name)
        return GenInsn(encode(name, rd=rd, rs1=rs1, rs2=rs2, aq=aq, rl=rl), 4,
                       f"{name}{sfx}\t{_x(rd)},{_x(rs2)},({_x(rs1)})", name)

    def lrsc(self) -> list[GenInsn]:
        """An LR/SC pair with a few ALU instructions between (no memory accesses, which unicorn's
        value-compare SC and Mirage's address reservation would treat differently), or a lone SC."""
        rng = self.rng
        w = rng.choice("wd")
        size = 4 if w == "w" else 8
        setup, ra = self.amo_addr(size)
        out = list(setup)
        if rng.random() < 0.15:  # SC without a reservation: must fail
            out.append(self.amo(f"sc.{w}", self.wreg(), self.rreg(), ra))
            return out
        keep = self.writable
        self.writable = [r for r in keep if r != ra]
        try:
            out.append(self.amo(f"lr.{w}", self.wreg(), 0, ra))
            for _ in range(rng.randrange(4)):
                out.append(self.int_alu())
            sc_addr = ra
            if rng.random() < 0.1:  # SC to another address: fails and drops the reservation
                other, sc_addr = self.amo_addr(size)
                out += other
            out.append(self.amo(f"sc.{w}", self.wreg(), self.rreg(), sc_addr))
        finally:
            self.writable = keep
        return out

    # Compressed
    def c_unit(self) -> list[GenInsn]:
        rng = self.rng
        if rng.random() < 0.35:
            return self.int_unit()
        k = rng.randrange(20)
        cw = self.cwritable
        if k == 0:
            rd, imm = self.wreg(False), rng.choice([v for v in range(-32, 32) if v])
            return [self.i16("c.addi", rd << 7 | _ci(imm), f"c.addi\t{_x(rd)},{imm}", "addi")]
        if k == 1:
            rd, imm = self.wreg(False), rng.randrange(-32, 32)
            return [self.i16("c.addiw", rd << 7 | _ci(imm), f"c.addiw\t{_x(rd)},{imm}", "addiw")]
        if k == 2:
            rd, imm = self.wreg(False), rng.randrange(-32, 32)
            return [self.i16("c.li", rd << 7 | _ci(imm), f"c.li\t{_x(rd)},{imm}", "addi")]
        if k == 3:
            rd, imm = self.wreg(False), rng.choice([v for v in range(-32, 32) if v])
            return [self.i16("c.lui", rd << 7 | _ci(imm), f"c.lui\t{_x(rd)},{imm & 0xFFFFF:#x}", "lui")]
        if k == 5:
            rd, imm = rng.choice(cw), 4 * rng.randrange(1, 256)
            return [self.i16("c.addi4spn", (rd & 7) << 2 | _ciw(imm), f"c.addi4spn\t{_x(rd)},x2,{imm}", "addi")]
        if k == 6:
            rd, amount = rng.choice(cw), rng.randrange(1, 64)
            name = rng.choice(("c.srli", "c.srai"))
            return [self.i16(name, (rd & 7) << 7 | _ci(amount), f"{name}\t{_x(rd)},{amount:#x}", name[2:])]
        if k == 7:
            rd, imm = rng.choice(cw), rng.randrange(-32, 32)
            return [self.i16("c.andi", (rd & 7) << 7 | _ci(imm), f"c.andi\t{_x(rd)},{imm}", "andi")]
        if k in (8, 9):
            rd, rs2 = rng.choice(cw), rng.randrange(8, 16)
            name = rng.choice(("c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw"))
            return [self.i16(name, (rd & 7) << 7 | (rs2 & 7) << 2, f"{name}\t{_x(rd)},{_x(rs2)}", name[2:])]
        if k == 10:
            rd, amount = self.wreg(False), rng.randrange(1, 64)
            return [self.i16("c.slli", rd << 7 | _ci(amount), f"c.slli\t{_x(rd)},{amount:#x}", "slli")]
        if k == 11:
            rd, rs2 = self.wreg(False), rng.randrange(1, 32)
            if rng.random() < 0.5:
                return [self.i16("c.cr", rd << 7 | rs2 << 2, f"c.mv\t{_x(rd)},{_x(rs2)}", "add")]
            return [self.i16("c.cr", 1 << 12 | rd << 7 | rs2 << 2, f"c.add\t{_x(rd)},{_x(rs2)}", "add")]
        if k in (12, 13):
            return self.c_mem_base()
        if k in (14, 15, 16):
            return self.c_mem_sp()
        if k == 17:
            return self.c_mem_spn()
        if k == 18:
            return [self.i16("c.addi", 0, "c.addi\tx0,0", "addi")]
        return self.int_unit()

    def c_sp_adjust(self) -> list[GenInsn]:
        """c.addi16sp keeping sp inside the buffer (the generator tracks sp exactly)."""
        rng = self.rng
        choices = [v for v in range(-512, 512, 16)
                   if v and DATA_ADDR <= self.sp + v <= DATA_ADDR + DATA_SIZE - 1536]
        imm = rng.choice(choices)
        self.sp += imm
        bits = ((_b(imm, 9, 9) << 12) | (_b(imm, 4, 4) << 6) | (_b(imm, 6, 6) << 5) | (_b(imm, 8, 7) << 3)
                | (_b(imm, 5, 5) << 2))
        return [self.i16("c.lui", 2 << 7 | bits, f"c.addi16sp\tx2,{imm}", "addi")]

    def c_mem_base(self) -> list[GenInsn]:
        """c.lw/ld/sw/sd/fld/fsd relative to the reserved base register (x8-x15)."""
        rng = self.rng
        name = rng.choice(("c.lw", "c.ld", "c.sw", "c.sd", "c.fld", "c.fsd"))
        size = 4 if name in ("c.lw", "c.sw") else 8
        off = size * rng.randrange(0, 32)
        return [self._c_ls(name, rng.randrange(8, 16), self.base, off)]

    def c_mem_spn(self) -> list[GenInsn]:
        """c.addi4spn computing an address from sp, then a compressed access through it."""
        rng = self.rng
        name = rng.choice(("c.lw", "c.ld", "c.sw", "c.sd", "c.fld", "c.fsd"))
        size = 4 if name in ("c.lw", "c.sw") else 8
        ra = rng.choice(self.cwritable)
        room = DATA_ADDR + DATA_SIZE - self.sp - 32 * size
        imm = 8 * rng.randrange(1, min(128, room // 8))
        off = size * rng.randrange(0, 32)
        spn = self.i16("c.addi4spn", (ra & 7) << 2 | _ciw(imm), f"c.addi4spn\t{_x(ra)},x2,{imm}", "addi")
        return [spn, self._c_ls(name, rng.randrange(8, 16), ra, off)]

    def _c_ls(self, name: str, r: int, rs1: int, off: int) -> GenInsn:
        size = 4 if name in ("c.lw", "c.sw") else 8
        loads = name in ("c.lw", "c.ld", "c.fld")
        if loads and name != "c.fld":
            r = self.rng.choice(self.cwritable)
        fields = (rs1 & 7) << 7 | (r & 7) << 2 | (_cl_w(off) if size == 4 else _cl_d(off))
        reg = _f(r) if "f" in name[2:] else _x(r)
        base = {"c.lw": "lw", "c.ld": "ld", "c.sw": "sw", "c.sd": "sd", "c.fld": "fld", "c.fsd": "fsd"}[name]
        return self.i16(name, fields, f"{name}\t{reg},{off}({_x(rs1)})", base)

    def c_mem_sp(self) -> list[GenInsn]:
        rng = self.rng
        name = rng.choice(("c.lwsp", "c.ldsp", "c.fldsp", "c.swsp", "c.sdsp", "c.fsdsp"))
        size = 4 if name in ("c.lwsp", "c.swsp") else 8
        off = size * rng.randrange(0, 64)
        if name in ("c.lwsp", "c.ldsp"):
            r = self.wreg(False)
        else:
            r = rng.randrange(32)
        if name == "c.lwsp":
            fields = _b(off, 5, 5) << 12 | _b(off, 4, 2) << 4 | _b(off, 7, 6) << 2
        elif name in ("c.ldsp", "c.fldsp"):
            fields = _b(off, 5, 5) << 12 | _b(off, 4, 3) << 5 | _b(off, 8, 6) << 2
        elif name == "c.swsp":
            fields = _b(off, 5, 2) << 9 | _b(off, 7, 6) << 7
        else:
            fields = _b(off, 5, 3) << 10 | _b(off, 8, 6) << 7
        loads = name in ("c.lwsp", "c.ldsp", "c.fldsp")
        fields |= (r << 7) if loads else (r << 2)
        reg = _f(r) if "f" in name[2:4] else _x(r)
        base = {"c.lwsp": "lw", "c.ldsp": "ld", "c.fldsp": "fld", "c.swsp": "sw", "c.sdsp": "sd",
                "c.fsdsp": "fsd"}[name]
        return [self.i16(name, fields, f"{name}\t{reg},{off}(x2)", base)]

    # Floating point
    def fp_unit(self, p: str) -> list[GenInsn]:
        """One F (p = "s") or D (p = "d") unit."""
        rng = self.rng
        single = p == "s"
        wid = 32 if single else 64
        fd, f1, f2, f3 = self.freg(), self.freg(), self.freg(), self.freg()
        if rng.random() < 0.1:
            f2 = f1
        k = rng.random()
        if k < 0.16:
            name = f"{rng.choice(('fadd', 'fsub', 'fmul', 'fdiv'))}.{p}"
            rm = self.rm()
            return [self.fp_rf(name, fd, f1, f2, rm, FpInfo((f1, f2), fd, single, single))]
        if k < 0.21:
            rm = self.rm()
            return [self.i32(f"fsqrt.{p}", f"{_f(fd)},{_f(f1)}{_rm(rm)}", FpInfo((f1,), fd, single, single),
                             rd=fd, rs1=f1, rm=rm)]
        if k < 0.31:
            name = f"{rng.choice(('fmadd', 'fmsub', 'fnmsub', 'fnmadd'))}.{p}"
            rm = self.rm()
            fp = FpInfo((f1, f2, f3), fd, single, single, "fma", wid)
            return [self.i32(name, f"{_f(fd)},{_f(f1)},{_f(f2)},{_f(f3)}{_rm(rm)}", fp,
                             rd=fd, rs1=f1, rs2=f2, rs3=f3, rm=rm)]
        if k < 0.37:
            name = f"{rng.choice(('fmin', 'fmax'))}.{p}"
            return [self.fp_r(name, fd, f1, f2, FpInfo((f1, f2), fd, single, single, "minmax", wid))]
        if k < 0.42:
            name = f"{rng.choice(('fsgnj', 'fsgnjn', 'fsgnjx'))}.{p}"
            return [self.fp_r(name, fd, f1, f2, FpInfo((f1, f2), fd, single, single))]
        if k < 0.48:
            name = f"{rng.choice(('feq', 'flt', 'fle'))}.{p}"
            rd = self.wreg()
            return [self.i32(name, f"{_x(rd)},{_f(f1)},{_f(f2)}", FpInfo((f1, f2), src_s=single), rd=rd, rs1=f1, rs2=f2)]
        if k < 0.51:
            rd = self.wreg()
            return [self.i32(f"fclass.{p}", f"{_x(rd)},{_f(f1)}", FpInfo((f1,), src_s=single), rd=rd, rs1=f1)]
        if k < 0.59:
            name = f"fcvt.{rng.choice(('w', 'wu', 'l', 'lu'))}.{p}"
            rd, rm = self.wreg(), self.rm()
            return [self.i32(name, f"{_x(rd)},{_f(f1)}{_rm(rm)}", FpInfo((f1,), src_s=single), rd=rd, rs1=f1, rm=rm)]
        if k < 0.66:
            src = rng.choice(("w", "wu", "l", "lu"))
            name = f"fcvt.{p}.{src}"
            rs1 = self.rreg()
            # The int-to-double conversions of 32-bit values are exact: binutils knows them with rm=0 only.
            exact = not single and src in ("w", "wu")
            rm = 0 if exact else self.rm()
            asm = f"{_f(fd)},{_x(rs1)}" + ("" if exact else _rm(rm))
            return [self.i32(name, asm, FpInfo((), fd, single), rd=fd, rs1=rs1, rm=rm)]
        if k < 0.7 and not single:
            if rng.random() < 0.5:
                rm = self.rm()
                return [self.i32("fcvt.s.d", f"{_f(fd)},{_f(f1)}{_rm(rm)}", FpInfo((f1,), fd, True),
                                 rd=fd, rs1=f1, rm=rm)]
            return [self.i32("fcvt.d.s", f"{_f(fd)},{_f(f1)}", FpInfo((f1,), fd, False, True), rd=fd, rs1=f1, rm=0)]
        if k < 0.74:
            rd = self.wreg()
            name = "fmv.x.w" if single else "fmv.x.d"
            return [self.i32(name, f"{_x(rd)},{_f(f1)}", FpInfo(), rd=rd, rs1=f1)]
        if k < 0.78:
            name = "fmv.w.x" if single else "fmv.d.x"
            rs1 = self.rreg()
            return [self.i32(name, f"{_f(fd)},{_x(rs1)}", FpInfo((), fd, single), rd=fd, rs1=rs1)]
        if k < 0.88:  # Loads refresh operands from the pool of special values in the buffer
            name = "flw" if single else "fld"
            if rng.random() < 0.15:
                name = "fld" if single else "flw"  # Improperly boxed singles / singles among doubles
            setup, rs1, imm = self.addr(4 if name == "flw" else 8)
            return [*setup, self.load(name, fd, rs1, imm, FpInfo((), fd, name == "flw"))]
        if k < 0.92:
            name = "fsw" if single else "fsd"
            setup, rs1, imm = self.addr(4 if name == "fsw" else 8)
            return [*setup, self.store(name, f1, rs1, imm)]
        if k < 0.95:
            return [self.fcsr_op()]
        if k < 0.98:
            return self.inject()
        return [self.int_alu()]

    def fp_r(self, name: str, fd: int, f1: int, f2: int, fp: FpInfo) -> GenInsn:
        return self.i32(name, f"{_f(fd)},{_f(f1)},{_f(f2)}", fp, rd=fd, rs1=f1, rs2=f2)

    def fp_rf(self, name: str, fd: int, f1: int, f2: int, rm: int, fp: FpInfo) -> GenInsn:
        return self.i32(name, f"{_f(fd)},{_f(f1)},{_f(f2)}{_rm(rm)}", fp, rd=fd, rs1=f1, rs2=f2, rm=rm)

    def fcsr_op(self) -> GenInsn:
        """Reads and writes of fflags/frm/fcsr that keep frm a valid rounding mode."""
        rng = self.rng
        rd = self.wreg()
        k = rng.randrange(7)
        if k == 0:
            csr = rng.choice((1, 2, 3))
            return self.i32("csrrs", f"{_x(rd)},{_CSR[csr]},x0", rd=rd, rs1=0, csr=csr)
        if k == 1:
            rs1 = self.rreg()
            return self.i32("csrrw", f"{_x(rd)},fflags,{_x(rs1)}", rd=rd, rs1=rs1, csr=1)
        if k == 2:
            v = rng.randrange(5)
            return self.i32("csrrwi", f"{_x(rd)},frm,{v}", rd=rd, zimm=v, csr=2)
        if k == 3:
            v = rng.randrange(32)
            return self.i32("csrrsi", f"{_x(rd)},fflags,{v}", rd=rd, zimm=v, csr=1)
        if k == 4:
            v = rng.randrange(32)
            csr = rng.choice((1, 2))
            return self.i32("csrrci", f"{_x(rd)},{_CSR[csr]},{v}", rd=rd, zimm=v, csr=csr)
        if k == 5:
            v = rng.randrange(32)
            return self.i32("csrrwi", f"{_x(rd)},fcsr,{v}", rd=rd, zimm=v, csr=3)
        rs1 = self.rreg()
        return self.i32("csrrc", f"{_x(rd)},fflags,{_x(rs1)}", rd=rd, rs1=rs1, csr=1)

    # Control flow: short forward branches and jumps over whole skippable units
    def control(self, unit) -> list[GenInsn]:
        rng = self.rng
        body: list[GenInsn] = []
        for _ in range(rng.randint(1, 3)):
            body += unit()
        blen = sum(i.length for i in body)
        compressed = self.cat == "c" and rng.random() < 0.6
        k = rng.random()
        o = self.off
        if compressed:
            if k < 0.5:
                rs1 = rng.randrange(8, 16)
                name = rng.choice(("c.beqz", "c.bnez"))
                br = self.i16(name, (rs1 & 7) << 7 | _cb(2 + blen), f"{name}\t{_x(rs1)},{o + 2 + blen:#x}",
                              "beq" if name == "c.beqz" else "bne")
                return [br, *body]
            if k < 0.75:
                return [self.i16("c.j", _cj(2 + blen), f"c.j\t{o + 2 + blen:#x}", "jal"), *body]
            # Through a register: auipc rT, 0 ; addi rT, rT, 10 + blen ; c.jr/c.jalr rT
            rt = self.wreg(False)
            if rng.random() < 0.5:
                jr = self.i16("c.cr", rt << 7, f"c.jr\t{_x(rt)}", "jalr")
            else:
                jr = self.i16("c.cr", 1 << 12 | rt << 7, f"c.jalr\t{_x(rt)}", "jalr")
            return [self.u("auipc", rt, 0), self.ri("addi", rt, rt, 10 + blen), jr, *body]
        if k < 0.6:
            name = rng.choice(_BRANCHES)
            rs1 = self.rreg()
            rs2 = rng.choice((rs1, 0, self.rreg(), self.rreg()))
            br = self.i32(name, f"{_x(rs1)},{_x(rs2)},{o + 4 + blen:#x}", rs1=rs1, rs2=rs2, b=4 + blen)
            return [br, *body]
        if k < 0.8:
            rd = self.wreg()
            return [self.i32("jal", f"{_x(rd)},{o + 4 + blen:#x}", rd=rd, j=4 + blen), *body]
        # Through a register: auipc rT, 0 ; jalr rd, imm(rT), sometimes with bit 0 of the target set
        # (jalr clears it)
        rt, rd = self.wreg(False), self.wreg()
        imm = 8 + blen + rng.choice((0, 0, 1))
        jalr = self.i32("jalr", f"{_x(rd)},{imm}({_x(rt)})", rd=rd, rs1=rt, i=imm)
        return [self.u("auipc", rt, 0), jalr, *body]

    def build(self) -> Program:
        rng = self.rng
        unit = {"int": self.int_unit, "m": self.m_unit, "a": self.a_unit, "c": self.c_unit,
                "f": lambda: self.fp_unit("s"), "d": self.d_unit}[self.cat]
        p_control = CONTROL_RATE[self.cat]
        while len(self.out) < self.length:
            if rng.random() < p_control:
                insns = self.control(unit)
            elif self.cat == "c" and rng.random() < 0.02:
                insns = self.c_sp_adjust()  # Never inside a skipped region: sp is tracked statically
            else:
                insns = unit()
            for i in insns:
                self.out.append(i)
                self.off += i.length
        x = [0] + [int_value(rng) for _ in range(31)]
        x[self.base] = DATA_ADDR + DATA_SIZE // 2
        if self.cat == "c":
            x[2] = self.initial_sp
        f = [self.initial_f() for _ in range(32)]
        fcsr = rng.randrange(5) << 5 | rng.randrange(32)
        data = self.data()
        # A page boundary at a random halfword inside the program: blocks (and sometimes a 4-byte
        # instruction) cross it, and half the programs have their 4-byte instructions 2-byte aligned.
        cut = 2 * rng.randrange(1, max(2, min(self.off, 0x1000) // 2))
        code_addr = CODE_ADDR + 0x1000 - cut
        return Program(self.cat, self.seed, self.length, self.out, x, f, fcsr, data, self.base, code_addr)

    def d_unit(self) -> list[GenInsn]:
        # Mostly double; some single operations so fcvt.d.s and NaN-boxing see real singles.
        return self.fp_unit("s" if self.rng.random() < 0.12 else "d")

    def initial_f(self) -> int:
        rng = self.rng
        r = rng.random()
        if self.cat == "f":
            if r < 0.8:
                return boxed_single(rng)
            return unboxed_single(rng) if r < 0.92 else double_value(rng)
        if self.cat == "d":
            if r < 0.7:
                return double_value(rng)
            return boxed_single(rng) if r < 0.92 else unboxed_single(rng)
        return double_value(rng) if r < 0.5 else rng.getrandbits(64)

    def data(self) -> bytes:
        rng = self.rng
        out = bytearray()
        for _ in range(DATA_SIZE // 8):
            r = rng.random()
            if self.cat == "f":
                v = (single_value(rng) | single_value(rng) << 32) if r < 0.6 else (
                    double_value(rng) if r < 0.8 else int_value(rng))
            elif self.cat == "d":
                v = double_value(rng) if r < 0.6 else (
                    (single_value(rng) | single_value(rng) << 32) if r < 0.85 else int_value(rng))
            else:
                v = int_value(rng) if r < 0.7 else (double_value(rng) if r < 0.8 else rng.getrandbits(64))
            out += struct.pack("<Q", v)
        return bytes(out)


def _ciw(imm: int) -> int:  # Immediate of c.addi4spn: [12:11]=imm[5:4], [10:7]=imm[9:6], [6]=imm[2], [5]=imm[3]
    return (_b(imm, 5, 4) << 11) | (_b(imm, 9, 6) << 7) | (_b(imm, 2, 2) << 6) | (_b(imm, 3, 3) << 5)


def _rm(rm: int) -> str:
    return "" if rm == 7 else "," + _RM_NAMES[rm]


def _fence_set(v: int) -> str:
    return "".join(c for c, bit in zip("iorw", (8, 4, 2, 1), strict=True) if v & bit)


def generate(category: str, seed: int, length: int = DEFAULT_LENGTH) -> Program:
    """The program for (category, seed, length): the same every time."""
    return _Gen(category, seed, length).build()
