"""The decoder and disassembler checked against binutils.

Every row of the 32-bit table is filled with many operand patterns (random, all-zero, all-one,
alternating and single-bit fills of its don't-care bits), every 16-bit word is enumerated, and
random words sample the rest of the space. objdump (`-M no-aliases,numeric`) disassembles them in
one binary file per test; its mnemonic and operands are parsed back into field values (compressed
forms are mapped to the instruction they expand to) and compared with `decode`. `disasm` is
compared with objdump's ABI-name output.

Where binutils 2.40 and the specification disagree, the specification wins and the exception is
listed in `_objdump_stricter` / `_spec_reserved` below.
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from functools import cache
from pathlib import Path

import pytest

from translator.csrs import CSR_NAMES
from translator.isa import ABI_NAMES, BY_NAME, C_ENCODINGS, ENCODINGS, FP_NAMES, Insn, decode, disasm

OBJDUMP = "riscv64-linux-gnu-objdump"
M64 = (1 << 64) - 1
RM_NAMES = ["rne", "rtz", "rdn", "rup", "rmm", "rm5", "rm6", "dyn"]
EXACT_CVT = ("fcvt.d.w", "fcvt.d.wu", "fcvt.d.s")  # The rounding mode cannot affect these

# Insn attributes that carry the operands of each format.
ATTRS = {
    "R": ("rd", "rs1", "rs2"), "RF": ("rd", "rs1", "rs2", "rm"), "R1F": ("rd", "rs1", "rm"), "R1": ("rd", "rs1"),
    "R4": ("rd", "rs1", "rs2", "rs3", "rm"), "I": ("rd", "rs1", "imm"), "L": ("rd", "rs1", "imm"),
    "FL": ("rd", "rs1", "imm"), "SH6": ("rd", "rs1", "imm"), "SH5": ("rd", "rs1", "imm"),
    "S": ("rs1", "rs2", "imm"), "FS": ("rs1", "rs2", "imm"), "B": ("rs1", "rs2", "imm"), "U": ("rd", "imm"),
    "J": ("rd", "imm"), "CSR": ("rd", "rs1", "csr"), "CSRI": ("rd", "imm", "csr"),
    "AMO": ("rd", "rs1", "rs2", "aq", "rl"), "LR": ("rd", "rs1", "aq", "rl"), "FENCE": ("rd", "rs1", "imm"),
    "SFENCE": ("rs1", "rs2"), "N": (),
}
# The order objdump prints them in ("target": pc-relative imm, "uimm": imm >> 12).
ORDER = {
    "R": ("rd", "rs1", "rs2"), "RF": ("rd", "rs1", "rs2", "rm"), "R1F": ("rd", "rs1", "rm"), "R1": ("rd", "rs1"),
    "R4": ("rd", "rs1", "rs2", "rs3", "rm"), "I": ("rd", "rs1", "imm"), "L": ("rd", "imm", "rs1"),
    "FL": ("rd", "imm", "rs1"), "SH6": ("rd", "rs1", "imm"), "SH5": ("rd", "rs1", "imm"),
    "S": ("rs2", "imm", "rs1"), "FS": ("rs2", "imm", "rs1"), "B": ("rs1", "rs2", "target"), "U": ("rd", "uimm"),
    "J": ("rd", "target"), "CSR": ("rd", "csr", "rs1"), "CSRI": ("rd", "csr", "imm"), "AMO": ("rd", "rs2", "rs1"),
    "LR": ("rd", "rs1"), "SFENCE": ("rs1", "rs2"), "N": (),
}

# Compressed mnemonics as objdump prints them -> (base instruction, printed operands, implied fields).
# "=rd" means "same as rd" (the two-address forms).
CMAP: dict[str, tuple[str, tuple[str, ...], dict]] = {
    "c.addi4spn": ("addi", ("rd", "rs1", "imm"), {}),
    "c.fld": ("fld", ("rd", "imm", "rs1"), {}), "c.lw": ("lw", ("rd", "imm", "rs1"), {}),
    "c.ld": ("ld", ("rd", "imm", "rs1"), {}), "c.fsd": ("fsd", ("rs2", "imm", "rs1"), {}),
    "c.sw": ("sw", ("rs2", "imm", "rs1"), {}), "c.sd": ("sd", ("rs2", "imm", "rs1"), {}),
    "c.nop": ("addi", (), {"rd": 0, "rs1": 0, "imm": 0}),
    "c.addi": ("addi", ("rd", "imm"), {"rs1": "=rd"}), "c.addiw": ("addiw", ("rd", "imm"), {"rs1": "=rd"}),
    "c.li": ("addi", ("rd", "imm"), {"rs1": 0}), "c.lui": ("lui", ("rd", "uimm"), {}),
    "c.addi16sp": ("addi", ("rd", "imm"), {"rs1": "=rd"}),
    "c.srli": ("srli", ("rd", "imm"), {"rs1": "=rd"}), "c.srai": ("srai", ("rd", "imm"), {"rs1": "=rd"}),
    "c.slli": ("slli", ("rd", "imm"), {"rs1": "=rd"}),
    "c.srli64": ("srli", ("rd",), {"rs1": "=rd", "imm": 0}), "c.srai64": ("srai", ("rd",), {"rs1": "=rd", "imm": 0}),
    "c.slli64": ("slli", ("rd",), {"rs1": "=rd", "imm": 0}),
    "c.andi": ("andi", ("rd", "imm"), {"rs1": "=rd"}),
    "c.sub": ("sub", ("rd", "rs2"), {"rs1": "=rd"}), "c.xor": ("xor", ("rd", "rs2"), {"rs1": "=rd"}),
    "c.or": ("or", ("rd", "rs2"), {"rs1": "=rd"}), "c.and": ("and", ("rd", "rs2"), {"rs1": "=rd"}),
    "c.subw": ("subw", ("rd", "rs2"), {"rs1": "=rd"}), "c.addw": ("addw", ("rd", "rs2"), {"rs1": "=rd"}),
    "c.j": ("jal", ("target",), {"rd": 0}),
    "c.beqz": ("beq", ("rs1", "target"), {"rs2": 0}), "c.bnez": ("bne", ("rs1", "target"), {"rs2": 0}),
    "c.fldsp": ("fld", ("rd", "imm", "rs1"), {}), "c.lwsp": ("lw", ("rd", "imm", "rs1"), {}),
    "c.ldsp": ("ld", ("rd", "imm", "rs1"), {}), "c.fsdsp": ("fsd", ("rs2", "imm", "rs1"), {}),
    "c.swsp": ("sw", ("rs2", "imm", "rs1"), {}), "c.sdsp": ("sd", ("rs2", "imm", "rs1"), {}),
    "c.jr": ("jalr", ("rs1",), {"rd": 0, "imm": 0}), "c.jalr": ("jalr", ("rs1",), {"rd": 1, "imm": 0}),
    "c.mv": ("add", ("rd", "rs2"), {"rs1": 0}), "c.add": ("add", ("rd", "rs2"), {"rs1": "=rd"}),
    "c.ebreak": ("ebreak", (), {}),
}


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@pytest.fixture(scope="module")
def objdump() -> None:
    if shutil.which(OBJDUMP) is None:
        pytest.fail(f"{OBJDUMP} is missing: run `just setup`")


def _run_objdump(data: bytes, tmp: Path, numeric: bool = True) -> dict[int, tuple[str, str]]:
    """Disassembles raw bytes at address 0: offset -> (mnemonic, operands without comment)."""
    tmp.write_bytes(data)
    opts = "no-aliases,numeric" if numeric else "no-aliases"
    out = subprocess.run([OBJDUMP, "-D", "-z", "-b", "binary", "-m", "riscv:rv64", "-M", opts, str(tmp)],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\t[0-9a-f]+\s*\t(\S+)\t?([^#]*)", line)
        if m:
            res[int(m.group(1), 16)] = (m.group(2), m.group(3).strip())
    return res


@cache
def _objdump_csrs() -> dict[str, int]:
    """objdump's CSR names, from disassembling `csrrs x10, csr, x0` for all 4096 numbers."""
    import tempfile
    words = [(c << 20) | (2 << 12) | (10 << 7) | 0x73 for c in range(4096)]
    with tempfile.TemporaryDirectory() as d:
        out = _run_objdump(b"".join(struct.pack("<I", w) for w in words), Path(d) / "csr.bin")
    names = {}
    for off, (_mn, ops) in out.items():
        names[ops.split(",")[1]] = off // 4
    return names


def _value(tok: str) -> int:
    m = re.fullmatch(r"[xf](\d+)", tok)
    if m:
        return int(m.group(1))
    if tok in RM_NAMES:
        return RM_NAMES.index(tok)
    if tok == "unknown":  # A reserved rounding mode
        return -1
    if tok in _objdump_csrs():
        return _objdump_csrs()[tok]
    return int(tok, 0)


def _tokens(ops: str) -> list[str]:
    out = []
    for t in filter(None, ops.split(",")):
        m = re.fullmatch(r"(-?\w*)\((\w+)\)", t)
        out += [m.group(1), m.group(2)] if m and m.group(1) else [m.group(2)] if m else [t]
    return out


def _assign(slots: tuple[str, ...], toks: list[str], pc: int) -> dict:
    vals = {}
    for slot, tok in zip(slots, toks, strict=True):
        v = _value(tok)
        if slot == "target":
            vals["imm"] = _sext(v - pc, 64)
        elif slot == "uimm":
            vals["imm"] = _sext(v << 12, 32)
        else:
            vals[slot] = v
    return vals


def _from_objdump32(mn: str, ops: str, pc: int) -> tuple[str, dict]:
    """(instruction name, operand fields) from objdump's numeric output of a 32-bit word."""
    if mn == "fence.tso":
        return "fence", {"rd": 0, "rs1": 0, "imm": 0x833}
    if mn == "fence":
        sets = ["" if s == "unknown" else s for s in ops.split(",")]  # "unknown": the empty set
        pred, succ = (sum(b for c, b in zip("iorw", (8, 4, 2, 1), strict=True) if c in s) for s in sets)
        return "fence", {"rd": 0, "rs1": 0, "imm": pred << 4 | succ}
    if mn == "fence.i":
        return "fence.i", {"rd": 0, "rs1": 0, "imm": 0}
    name, aq, rl = mn, False, False
    for suffix in (".aqrl", ".aq", ".rl"):
        if name.endswith(suffix) and name not in BY_NAME:
            name = name[: -len(suffix)]
            aq, rl = "aq" in suffix, "rl" in suffix
    fmt = BY_NAME[name].fmt
    order = ORDER[fmt]
    if name == "jalr":
        order = ("rd", "imm", "rs1")
    toks = _tokens(ops)
    if fmt in ("RF", "R1F", "R4") and len(toks) == len(order) - 1:
        toks.append(RM_NAMES[0 if name in EXACT_CVT else 7])  # Default rounding mode omitted
    fields = _assign(order, toks, pc)
    if fmt in ("AMO", "LR"):
        fields.update(aq=aq, rl=rl)
    return name, fields


def _from_objdump16(mn: str, ops: str, pc: int) -> tuple[str, dict]:
    """(base instruction, operand fields) that objdump's compressed form expands to."""
    base, order, implied = CMAP[mn]
    fields = _assign(order, _tokens(ops), pc)
    for k, v in implied.items():
        fields[k] = fields["rd"] if v == "=rd" else v
    return base, fields


def _mirage(insn: Insn) -> tuple[str, dict]:
    return insn.name, {a: getattr(insn, a) for a in ATTRS[insn.fmt]}


# objdump 2.40 rejects these encodings, which the specification defines:
# - FENCE/FENCE.I with nonzero rd, rs1, reserved fm or FENCE.I imm bits: "base implementations
#   shall ignore these fields" and treat reserved fm values as fm=0000 (unprivileged spec 2.7, 3.1).
# - FCVT.D.W/WU/S with rm != 000: "implementations must treat the rm field as usual" (spec 11.2).
def _objdump_stricter(insn: Insn) -> bool:
    return insn.name in ("fence", "fence.i") or (insn.name in EXACT_CVT and insn.rm not in (0, 5, 6))


# objdump 2.40 accepts these reserved encodings, which Mirage decodes to None (illegal):
# - a static rounding mode of 101 or 110 (spec 11.2), printed as "unknown";
# - C.ADDI16SP with nzimm = 0 ("the code point with nzimm=0 is reserved", spec 16.5).
def _spec_reserved(raw: int, mn: str, ops: str) -> bool:
    return ops.endswith("unknown") or (mn == "c.addi16sp" and raw & 0xFFFF == 0x6101)


def _fills(mask: int, match: int, rng: random.Random, n: int) -> list[int]:
    """Words matching (mask, match): edge fills of the don't-care bits plus n random ones."""
    free = ~mask & 0xFFFFFFFF
    out = [match, match | free, match | (free & 0x55555555), match | (free & 0xAAAAAAAA)]
    for bit in range(32):
        if free >> bit & 1:
            out += [match | 1 << bit, match | (free & ~(1 << bit))]
    out += [match | (rng.getrandbits(32) & free) for _ in range(n)]
    return out


def _compare(words: list[int], od: dict[int, tuple[str, str]], size: int) -> list[str]:
    """Compares decode() with objdump for each word (at pc = index * size); returns mismatches."""
    errors = []
    for idx, w in enumerate(words):
        pc = idx * size
        mn, ops = od[pc]
        insn = decode(w)
        known = not mn.startswith(".") and mn != "c.unimp"
        where = f"{w:#010x} objdump: {mn} {ops}"
        if not known:
            if insn is not None and not _objdump_stricter(insn):
                errors.append(f"{where}, mirage: {disasm(insn, pc)}")
            continue
        if insn is None:
            if not _spec_reserved(w, mn, ops):
                errors.append(f"{where}, mirage: None")
            continue
        expect = _from_objdump16(mn, ops, pc) if size == 2 else _from_objdump32(mn, ops, pc)
        if _mirage(insn) != expect or insn.length != size or insn.raw != w:
            errors.append(f"{where}, mirage: {_mirage(insn)}, expected {expect}")
    return errors


def test_every_32bit_row_matches_objdump(objdump, tmp_path):
    rng = random.Random(1234)
    words, rows = [], []
    for enc in ENCODINGS:
        for w in _fills(enc.mask, enc.match, rng, 48):
            words.append(w)
            rows.append(enc.name)
    od = _run_objdump(b"".join(struct.pack("<I", w) for w in words), tmp_path / "rows.bin")
    assert len(od) == len(words)
    errors = _compare(words, od, 4)
    # Each fill decodes to its own row (the table has no overlapping rows), unless reserved.
    for w, name in zip(words, rows, strict=True):
        insn = decode(w)
        if insn is None:
            assert (w >> 12) & 7 in (5, 6) and BY_NAME[name].fmt in ("RF", "R1F", "R4"), hex(w)
        elif insn.name != name:
            errors.append(f"{w:#010x}: row {name} decodes as {insn.name}")
    assert not errors, "\n".join(errors[:40])


def test_every_16bit_word_matches_objdump(objdump, tmp_path):
    words = [w for w in range(0x10000) if w & 3 != 3]
    od = _run_objdump(b"".join(struct.pack("<H", w) for w in words), tmp_path / "c.bin")
    assert len(od) == len(words)
    errors = _compare(words, od, 2)
    assert not errors, "\n".join(errors[:40])
    # Every row of the compressed table was exercised with at least one legal word.
    seen = {name for name, mask, match, _x in C_ENCODINGS for w in words
            if w & mask == match and decode(w) is not None}
    assert seen == {name for name, *_ in C_ENCODINGS}


def test_random_words_match_objdump(objdump, tmp_path):
    """Random 32-bit words, half of them in the major opcodes Mirage knows: objdump's unknowns are
    None and everything else decodes identically."""
    rng = random.Random(99)
    majors = sorted({e.match & 0x7F for e in ENCODINGS})
    words = []
    for i in range(40000):
        w = rng.getrandbits(32) | 3
        if w & 0x1F == 0x1F:
            w ^= 0x10  # Longer encodings would desynchronize objdump's listing (tested below)
        if i % 2:
            w = (w & ~0x7F) | rng.choice(majors)
        words.append(w)
    od = _run_objdump(b"".join(struct.pack("<I", w) for w in words), tmp_path / "rnd.bin")
    assert len(od) == len(words)
    errors = _compare(words, od, 4)
    assert not errors, "\n".join(errors[:40])


@pytest.mark.parametrize("half, what", [
    (0x0000, "all zeros (c.addi4spn with nzuimm 0)"),
    (0x0004, "c.addi4spn x9, sp, 0"),
    (0x001C, "c.addi4spn x15, sp, 0"),
    (0x4002, "c.lwsp with rd=0"),
    (0x5002, "c.lwsp x0, 32(sp)"),
    (0x6002, "c.ldsp with rd=0"),
    (0x8002, "c.jr with rs1=0"),
    (0x6081, "c.lui x1, 0"),
    (0x6F81, "c.lui x31, 0"),
    (0x6101, "c.addi16sp with nzimm 0"),
    (0x2001, "c.addiw x0, 0"),
    (0x2005, "c.addiw x0, 1"),
    (0x9C41, "reserved c.subw/c.addw slot 10"),
    (0x9C61, "reserved c.subw/c.addw slot 11"),
    (0x8000, "reserved quadrant 0 funct3 100"),
])
def test_reserved_compressed_is_illegal(half, what):
    assert decode(half) is None, what


def test_reserved_rounding_modes_are_illegal():
    fadd = BY_NAME["fadd.d"].match
    for rm in range(8):
        insn = decode(fadd | rm << 12 | 1 << 7)
        assert (insn is None) == (rm in (5, 6)), rm
    for name in ("fcvt.d.w", "fcvt.d.s", "fmadd.s", "fsqrt.d"):
        assert decode(BY_NAME[name].match | 5 << 12) is None
        assert decode(BY_NAME[name].match | 7 << 12) is not None


def test_longer_encodings_are_illegal():
    # 48-bit and longer instructions (bits 4:2 = 111) are not part of RV64GC.
    rng = random.Random(5)
    for _ in range(2000):
        assert decode(rng.getrandbits(32) | 0x1F) is None


def test_csr_names_match_objdump(objdump):
    names = _objdump_csrs()
    for num, name in CSR_NAMES.items():
        assert names.get(name) == num, (hex(num), name)


def _normalize(mn: str, ops: str, insn: Insn) -> str:
    """objdump's ABI-name text in disasm()'s spelling: ", " separators, CSRs Mirage does not name in
    hex, empty fence sets as 0."""
    toks = ops.split(",") if ops else []
    if insn.fmt in ("CSR", "CSRI"):
        toks[1] = CSR_NAMES.get(insn.csr, hex(insn.csr))
    if mn == "fence":
        toks = ["0" if t == "unknown" else t for t in toks]
    return f"{mn} {', '.join(toks)}".rstrip()


def test_disasm_matches_objdump(objdump, tmp_path):
    rng = random.Random(7)
    words = []
    for enc in ENCODINGS:
        words += _fills(enc.mask, enc.match, rng, 8)
    od = _run_objdump(b"".join(struct.pack("<I", w) for w in words), tmp_path / "abi.bin", numeric=False)
    errors = []
    for idx, w in enumerate(words):
        mn, ops = od[idx * 4]
        insn = decode(w)
        if insn is None or mn.startswith("."):
            continue
        want = _normalize(mn, ops, insn)
        got = disasm(insn, idx * 4)
        if got != want:
            errors.append(f"{w:#010x}: objdump {want!r}, disasm {got!r}")
    assert not errors, "\n".join(errors[:40])


def test_disasm_compressed_shows_expansion():
    assert disasm(decode(0x8082)) == "jalr zero, 0(ra)"  # c.jr ra
    assert disasm(decode(0x0040)) == "addi s0, sp, 4"  # c.addi4spn
    assert disasm(decode(0x7101)) == "addi sp, sp, -512"  # c.addi16sp
    assert disasm(decode(0xA001), 0x100) == "jal zero, 0x100"  # c.j .
    assert disasm(decode(0x9002)) == "ebreak"


def test_disasm_of_every_compressed_word_reads_back_as_its_expansion():
    """Every legal 16-bit word's text, read back the way objdump's numeric output is (ABI names
    turned into numbers), gives the fields of the instruction it expands to: the right registers,
    immediates and absolute targets."""
    names = {name: f"x{i}" for i, name in enumerate(ABI_NAMES)} | {name: f"f{i}" for i, name in enumerate(FP_NAMES)}
    pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")
    pc = 0x80000000
    errors = []
    checked = 0
    for w in range(0x10000):
        if w & 3 == 3 or (insn := decode(w)) is None:
            continue
        text = disasm(insn, pc)
        mn, _, ops = text.partition(" ")
        numeric = pattern.sub(lambda m: names[m.group(1)], ops.replace(" ", ""))
        if _from_objdump32(mn, numeric, pc) != _mirage(insn):
            errors.append(f"{w:#06x}: {text!r} reads back as {_from_objdump32(mn, numeric, pc)}, is {_mirage(insn)}")
        checked += 1
    assert not errors, "\n".join(errors[:40])
    assert checked > 40000


def test_disasm_examples():
    def d(w: int, pc: int = 0) -> str:
        return disasm(decode(w), pc)
    assert d(0x0FF0000F) == "fence iorw, iorw"
    assert d(0x8330000F) == "fence.tso"
    assert d(0x0100000F) == "fence w, 0"
    assert d(0x0000100F) == "fence.i"
    assert d(0x34202573) == "csrrs a0, mcause, zero"
    assert d(0x7C002573) == "csrrs a0, 0x7c0, zero"
    assert d(0x1A05B52F) == "sc.d.rl a0, zero, (a1)"
    assert d(0x0E05B52F) == "amoswap.d.aqrl a0, zero, (a1)"
    assert d(0x02B57553) == "fadd.d fa0, fa0, fa1"  # Dynamic rounding mode omitted
    assert d(0x02B50553) == "fadd.d fa0, fa0, fa1, rne"
    assert d(0xD2040053) == "fcvt.d.w ft0, s0"
    assert d(0x03F51513) == "slli a0, a0, 0x3f"
    assert d(0x800000B7) == "lui ra, 0x80000"
    assert d(0xFFC58067) == "jalr zero, -4(a1)"
    assert d(0xFE000EE3, 0x1000) == "beq zero, zero, 0xffc"


def test_every_row_has_an_emitter_and_every_emitter_a_row() -> None:
    """A row without an emitter would decode and then silently run as an illegal instruction (in
    the translator and in the interpreter, which both drop rows without one); an emitter without
    a row is dead code or a misspelled name."""
    from translator.emit import EMITTERS

    rows = {e.name for e in ENCODINGS}
    assert not rows - set(EMITTERS), sorted(rows - set(EMITTERS))
    assert not set(EMITTERS) - rows, sorted(set(EMITTERS) - rows)
    assert len(rows) == len(ENCODINGS)  # One row per name
