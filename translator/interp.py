"""The native interpreter: the cold tier. Guest code that has no translation runs here, decoded and
executed in native code, with no Python work per instruction or per block.

Nothing in it is written twice. The decoder is generated from `isa.py`'s table (compressed words
go through a 64K-entry expansion table made by `isa.rvc_expansions`, so one decoder serves both),
operand fields are extracted by `isa.py`'s own field functions applied to a run-time value, and
each instruction's semantics come from its emitter in `emit/`, run once on an instruction whose
fields are IR values (`Sym`) instead of constants. Memory accesses use the tier-0 helpers (the one
TLB probe), privileged work leaves through the same callouts, and the instruction budget is
checked before every instruction exactly as block prologues check it, so interrupts and
instruction limits behave as in compiled code.

Control: the dispatcher calls `mirage_interp` on a jump-cache miss. At every block head (a
taken branch's or a jump's target, or the instruction after a system instruction) it looks in
the jump cache again and
returns a translated block's function to the loop in `mirage_enter`; otherwise it counts the
head in a table of execution counters and, when one reaches the warm threshold, returns
EXIT_WARM so the runtime translates the block there (the interpreter goes on meanwhile).
Instructions it does not run (F and D, for now) return EXIT_MISS: the runtime translates a block
at that pc, as it did for every block before this tier existed.
"""

from __future__ import annotations

import array
import functools

from translator import abi, isa
from translator.emit import EMITTERS
from translator.ir import BlockBuilder, const
from translator.isa import Insn

# Head counters (shared by the harts of a machine): a head's executions before its translation.
HEADS_BITS = 16
HEADS_SIZE = 1 << HEADS_BITS
# Executions of a head before its block is translated. A linux-shell boot (128M instructions) on
# a quiet 2-core machine: 64: 7,000 blocks translated, 3.4 s; 512: 3,066 blocks, 2.1 s; 1024:
# 2,143 blocks, 2.1 s; 4096: 800 blocks, 2.0 s with 67M instructions interpreted. The interpreter
# takes about 8 ns an instruction (intkernel), cold compiled code about 1 ns, and a block's
# translation about 0.3 ms of the main thread's time.
WARM_THRESHOLD = 1024
# Extensions the interpreter leaves to translated code (EXIT_MISS).
UNSUPPORTED_EXT = ("F", "D")


def heads_index_ir(b: BlockBuilder, pc: str, flags: str) -> str:
    """IR of the head-counter slot of (pc, flags); `heads_index` is the same in Python."""
    x = b.op("xor", b.op("lshr", pc, "1"), b.op("mul", flags, "40503"))
    return b.op("and", x, str(HEADS_SIZE - 1))


def heads_index(pc: int, flags: int) -> int:
    return ((pc >> 1) ^ (flags * 40503)) & (HEADS_SIZE - 1)


class Sym(str):
    """A run-time i64 value in the interpreter (an instruction field, its pc or length), with the
    integer operators the field functions of isa.py and the emitters apply to fields."""

    b: InterpBuilder

    def __new__(cls, name: str, b: InterpBuilder) -> Sym:
        s = super().__new__(cls, name)
        s.b = b
        return s

    def _op(self, op: str, a, c) -> Sym:
        return Sym(self.b.op(op, const(a), const(c)), self.b)

    def __add__(self, o):
        return self._op("add", self, o)

    def __radd__(self, o):
        return self._op("add", o, self)

    def __sub__(self, o):
        return self._op("sub", self, o)

    def __rsub__(self, o):
        return self._op("sub", o, self)

    def __and__(self, o):
        return self._op("and", self, o)

    __rand__ = __and__

    def __or__(self, o):
        return self._op("or", self, o)

    __ror__ = __or__

    def __xor__(self, o):
        return self._op("xor", self, o)

    def __lshift__(self, o):
        return self._op("shl", self, o)

    def __rshift__(self, o):
        return self._op("lshr", self, o)

    def __str__(self) -> Sym:
        return self  # Stays a run-time value through str() (emitters spell constants so)

    def __bool__(self) -> bool:
        return True  # Unknown until run time (emitters only use it for bookkeeping)

    __hash__ = str.__hash__


class InterpBuilder(BlockBuilder):
    """The block builder with run-time fields: registers by run-time index (written through, as
    in tier 0), memory through the tier-0 helpers with the run-time MMU index, and every exit
    going on at the next block head inside the interpreter."""

    def __init__(self) -> None:
        super().__init__("mirage_interp", 0, 0, 0, 1, tier=0)
        self.cur_pc: Sym | None = None
        self.cur_len: Sym | None = None
        self.cur_priv: Sym | None = None
        self.tlb: str = "0"
        self.desc_dyn: str = "0"
        self.next_pcs: list[tuple[str, str]] = []  # Arms of the %ipc phi: (pc, predecessor)

    # Fields are i64 values: narrowed where an emitter uses one as a constant of another type.
    def _narrow(self, v: str, ty: str) -> str:
        if isinstance(v, Sym) and ty != "i64":
            return self.cast("trunc", v, "i64", ty)
        return v

    def op(self, opcode: str, a: str, b: str, ty: str = "i64") -> str:
        return super().op(opcode, self._narrow(a, ty), self._narrow(b, ty), ty)

    def icmp(self, cond: str, a: str, b: str, ty: str = "i64") -> str:
        return super().icmp(cond, self._narrow(a, ty), self._narrow(b, ty), ty)

    def priv(self) -> Sym:
        return self.cur_priv

    def store_x(self, r, value: str) -> None:
        self.set_x(r, value)

    # Registers by run-time index; x0 is written back to zero after every write.
    def _reg_ptr(self, base: int, r) -> str:
        p = self.tmp()
        self.emit(f"{p} = getelementptr inbounds i64, ptr %xbase{base}, i64 {const(r)}")
        return p

    def x(self, r) -> str:
        if isinstance(r, int):
            return super().x(r)
        t = self.tmp()
        self.emit(f"{t} = load i64, ptr {self._reg_ptr(abi.OFF_X, r)}")
        return t

    def set_x(self, r, value: str) -> None:
        if isinstance(r, int):
            super().set_x(r, value)
            return
        self.emit(f"store i64 {value}, ptr {self._reg_ptr(abi.OFF_X, r)}")
        self.emit(f"store i64 0, ptr %xbase{abi.OFF_X}")

    def f(self, r) -> str:
        if isinstance(r, int):
            return super().f(r)
        t = self.tmp()
        self.emit(f"{t} = load i64, ptr {self._reg_ptr(abi.OFF_F, r)}")
        return t

    def set_f(self, r, value: str) -> None:
        if isinstance(r, int):
            super().set_f(r, value)
            return
        self.emit(f"store i64 {value}, ptr {self._reg_ptr(abi.OFF_F, r)}")

    # Memory: the data MMU index and the instruction length are run-time values.
    def _tlb_base(self) -> str:
        return self.tlb

    def _desc(self, size_log2: int, store: bool, signed: bool, amo: bool = False) -> str:
        d = size_log2
        if store:
            d |= abi.DESC_STORE
        if signed:
            d |= abi.DESC_SIGNED
        if amo:
            d |= abi.DESC_AMO
        return self.op("or", self.desc_dyn, str(d))

    # Exits: the next pc is stored and the interpreter goes on at the next head.
    def exit_direct(self, target) -> None:
        self.store_field(abi.OFF_PC, const(target))
        self.emit("br label %head")

    def exit_indirect(self, target: str) -> None:
        self.store_field(abi.OFF_PC, target)
        self.emit("br label %head")

    def to_dispatcher(self) -> None:
        self.emit("br label %head")

    def branch(self, cond: str, taken, fallthrough) -> None:
        """A taken branch reaches a block head; the fall-through goes on in the same block, as
        the translator forms blocks (translator/block.py: forward branches are side exits), so
        a warm loop head starts a block that ends at its back edge and loops in its function."""
        t, f = self.label("taken"), self.label("nottaken")
        self.emit(f"br i1 {cond}, label %{t}, label %{f}")
        self.start_block(t)
        self.store_field(abi.OFF_PC, const(taken))
        self.emit("br label %head")
        self.start_block(f)
        self.next_insn(const(fallthrough))
        self.terminated = True

    def next_insn(self, pc: str) -> None:
        """Goes on with the next instruction at `pc` (the loop carries pc in a phi: %ipc)."""
        self.next_pcs.append((pc, self._last_label()))
        self.emit("br label %insn")

    def sys_callout(self, raw, desc: int = 0) -> None:
        d = self.op("or", self.desc_dyn, str(desc))
        self.callout("mirage_sys", f"ptr %h, i64 {const(raw)}, i64 {const(self.insn_pc)}, i64 {d}")
        stop = self.load_field(abi.OFF_EXIT_NOW, "i32")
        c = self.icmp("ne", stop, "0", "i32")
        self._xout = True
        self.emit(f"br i1 {c}, label %xout, label %head")
        self.terminated = True


def _case_insn(enc: isa.Encoding, raw: Sym, length: Sym) -> Insn:
    """The instruction of one table row with its operand fields extracted from `raw` at run time,
    by the decoder's own field functions (aq/rl only matter to the disassembler)."""
    fields = isa._fields(enc.fmt, raw)
    fields.pop("aq", None)
    fields.pop("rl", None)
    return Insn(enc.name, enc.fmt, length=length, raw=raw, **fields)


def _decode_tree(b: InterpBuilder, raw: str, cases: dict[str, str]) -> None:
    """Branches on `raw` to the label of its table row (cases: name -> label), or to %illegal:
    a switch on the major opcode, then within it a switch on the bits every row of that opcode
    decodes (funct3, funct7, ...: a jump table), then the rows that share those bits, most specific
    first (as decode32)."""
    buckets = isa._BUCKETS
    op = b.op("and", raw, "127")
    arms = " ".join(f"i64 {opc}, label %op{opc}" for opc in sorted(buckets))
    b.emit(f"switch i64 {op}, label %illegal [ {arms} ]")
    for opc in sorted(buckets):
        b.start_block(f"op{opc}")
        rows = buckets[opc]
        common = functools.reduce(lambda m, e: m & e.mask, rows, 0xFFFFFFFF)
        groups: dict[int, list[isa.Encoding]] = {}
        for enc in rows:
            groups.setdefault(enc.match & common, []).append(enc)
        if len(groups) > 1:
            key = b.op("and", raw, str(common))
            arms = " ".join(f"i64 {k}, label %op{opc}k{k}" for k in groups)
            b.emit(f"switch i64 {key}, label %illegal [ {arms} ]")
        for k, group in groups.items():
            if len(groups) > 1:
                b.start_block(f"op{opc}k{k}")
            for enc in group:
                nxt = b.label("dec")
                target = cases[enc.name]
                m = "true" if enc.mask == common else b.icmp("eq", b.op("and", raw, str(enc.mask)), str(enc.match))
                if enc.fmt in isa._RM_FORMATS:
                    # Reserved static rounding modes 101 and 110 decode as illegal (spec 11.2).
                    rm = b.op("and", b.op("lshr", raw, "12"), "7")
                    bad = b.op("or", b.icmp("eq", rm, "5"), b.icmp("eq", rm, "6"), "i1")
                    ok = b.label("rmok")
                    b.emit(f"br i1 {m}, label %{ok}, label %{nxt}")
                    b.start_block(ok)
                    b.emit(f"br i1 {bad}, label %illegal, label %{target}")
                else:
                    b.emit(f"br i1 {m}, label %{target}, label %{nxt}")
                b.start_block(nxt)
            b.emit("br label %illegal")


def _jc_probe(b: InterpBuilder, pc: str, flags: str, miss: str) -> None:
    """Looks (pc, flags) up in the hart's jump cache: a hit returns the block's function to the
    loop in mirage_enter, a miss goes on at label `miss`."""
    i1 = b.op("and", b.op("lshr", pc, "1"), str(abi.JC_SIZE - 1))
    o = b.op("add", b.op("shl", i1, str(abi.JC_ENTRY.bit_length() - 1)), str(abi.OFF_JC))
    e = b.tmp()
    b.emit(f"{e} = getelementptr inbounds i8, ptr %h, i64 {o}")
    tag = b.tmp()
    b.emit(f"{tag} = load i64, ptr {e}")
    ef = b.tmp()
    b.emit(f"{ef} = getelementptr inbounds i8, ptr {e}, i64 8")
    eflags = b.tmp()
    b.emit(f"{eflags} = load i64, ptr {ef}")
    hit = b.op("and", b.icmp("eq", tag, pc), b.icmp("eq", eflags, flags), "i1")
    found = b.label("jchit")
    b.emit(f"br i1 {hit}, label %{found}, label %{miss}, !prof !1")
    b.start_block(found)
    fp = b.tmp()
    b.emit(f"{fp} = getelementptr inbounds i8, ptr {e}, i64 16")
    fn = b.tmp()
    b.emit(f"{fn} = load i64, ptr {fp}")
    b.emit(f"ret i64 {fn}")


def _code_tlb(b: InterpBuilder, pc: str, flags: str) -> tuple[str, str]:
    """The code TLB probe of pc: (hit, entry pointer; its addend at abi.CTLB_ADDEND). The fetch
    MMU index is the privilege (MMU_U = 0, MMU_S = 1, MMU_M = 3)."""
    fmmu = b.op("and", flags, str(abi.FLAG_PRIV_MASK))
    tidx = b.op("and", b.op("lshr", pc, str(abi.PAGE_BITS)), str(abi.CTLB_SIZE - 1))
    eoff = b.op("add", b.op("shl", b.op("add", b.op("mul", fmmu, str(abi.CTLB_SIZE)), tidx),
                            str(abi.CTLB_ENTRY.bit_length() - 1)), str(abi.OFF_CTLB))
    ep = b.tmp()
    b.emit(f"{ep} = getelementptr inbounds i8, ptr %h, i64 {eoff}")
    ctag = b.tmp()
    b.emit(f"{ctag} = load i64, ptr {ep}")
    return b.icmp("eq", ctag, b.op("and", pc, const(~(abi.PAGE_SIZE - 1)))), ep


def rvc_table() -> bytes:
    """The compressed-word expansion table the interpreter decodes through: 65,536 little-endian
    u32 (isa.rvc_expansions)."""
    return array.array("I", isa.rvc_expansions()).tobytes()


def interpreter_ir() -> str:
    """The interpreter function `i64 @mirage_interp(ptr %h)` and its tables, as IR text. The warm
    threshold and the tables are reached through the hart (abi: heads, btab, rvc, warm); the
    runtime fills the expansion table from `rvc_table()`."""
    b = InterpBuilder()
    rows = [e for e in isa.ENCODINGS if e.name in EMITTERS]
    cases = {e.name: f"case_{i}" for i, e in enumerate(rows)}

    # A block head: translated code if there is some, else count the head.
    b.start_block("head")
    pc = b.load_field(abi.OFF_PC)
    flags = b.load_field(abi.OFF_FLAGS)
    hidx = heads_index_ir(b, pc, flags)
    _jc_probe(b, pc, flags, "btab")
    # Not in this hart's jump cache: the machine's block table, keyed by the physical page the code
    # TLB maps pc to (RAM offset), finds translations made for another hart or before a flush.
    b.start_block("btab")
    chit, cep = _code_tlb(b, pc, flags)
    b.emit(f"br i1 {chit}, label %btprobe, label %count")
    b.start_block("btprobe")
    cad = b.tmp()
    b.emit(f"{cad} = getelementptr inbounds i8, ptr {cep}, i64 {abi.CTLB_ADDEND}")
    cadv = b.tmp()
    b.emit(f"{cadv} = load i64, ptr {cad}")
    pkey = b.op("add", pc, cadv)
    be = b.tmp()
    btab = b.load_field(abi.OFF_BTAB, "ptr")
    b.emit(f"{be} = getelementptr inbounds [4 x i64], ptr {btab}, i64 {hidx}")
    fields = []
    for k in range(4):
        fp_ = b.tmp()
        b.emit(f"{fp_} = getelementptr inbounds i64, ptr {be}, i64 {k}")
        v = b.tmp()
        b.emit(f"{v} = load i64, ptr {fp_}")
        fields.append(v)
    same = b.op("and", b.op("and", b.icmp("eq", fields[0], pc), b.icmp("eq", fields[1], flags), "i1"),
                b.icmp("eq", fields[2], pkey), "i1")
    b.emit(f"br i1 {same}, label %btfound, label %count")
    b.start_block("btfound")
    i1 = b.op("and", b.op("lshr", pc, "1"), str(abi.JC_SIZE - 1))
    o = b.op("add", b.op("shl", i1, str(abi.JC_ENTRY.bit_length() - 1)), str(abi.OFF_JC))
    je = b.tmp()
    b.emit(f"{je} = getelementptr inbounds i8, ptr %h, i64 {o}")
    for k, v in ((0, pc), (1, flags), (2, fields[3])):
        jp = b.tmp()
        b.emit(f"{jp} = getelementptr inbounds i64, ptr {je}, i64 {k}")
        b.emit(f"store i64 {v}, ptr {jp}")
    b.emit(f"ret i64 {fields[3]}")
    # Untranslated: count the head; at the threshold hand it to the runtime (a queued head's
    # counter is set far below zero until its translation is in).
    b.start_block("count")
    slot = b.tmp()
    heads = b.load_field(abi.OFF_HEADS, "ptr")
    b.emit(f"{slot} = getelementptr inbounds i32, ptr {heads}, i64 {hidx}")
    c0 = b.tmp()
    b.emit(f"{c0} = load i32, ptr {slot}")
    c1 = b.op("add", c0, "1", "i32")
    warm_n = b.cast("trunc", b.load_field(abi.OFF_WARM), "i64", "i32")
    hot = b.icmp("sge", c1, warm_n, "i32")
    b.emit(f"store i32 {b.select(hot, '0', c1, 'i32')}, ptr {slot}")
    b.next_pcs.append((pc, "count"))
    b.emit(f"br i1 {hot}, label %warm, label %insn, !prof !1")
    b.start_block("warm")
    b.emit(f"ret i64 {abi.EXIT_WARM}")

    # One instruction: budget, fetch, expand, decode. pc stays in a register from instruction to
    # instruction (%ipc), and is stored wherever the loop is left: block heads, callouts that
    # stop, the run loop.
    b.start_block("insn")
    ipc_phi = len(b.lines)
    b.emit("%ipc = phi i64")  # Its arms are known once every case is emitted
    ipc = "%ipc"
    bp = b.field_ptr(abi.OFF_BUDGET)
    b0 = b.tmp()
    b.emit(f"{b0} = load i64, ptr {bp}")
    b1 = b.op("sub", b0, "1")
    b.emit(f"store i64 {b1}, ptr {bp}")
    out = b.icmp("slt", b1, "0")
    b.emit(f"br i1 {out}, label %poll, label %fetch, !prof !1")
    b.start_block("poll")
    b.emit(f"store i64 {b0}, ptr {bp}")
    b.store_field(abi.OFF_PC, ipc)
    b.emit(f"ret i64 {abi.EXIT_POLL}")
    b.start_block("fetch")
    sp = b.field_ptr(abi.OFF_STAT_INTERP)
    s0 = b.tmp()
    b.emit(f"{s0} = load i64, ptr {sp}")
    b.emit(f"store i64 {b.op('add', s0, '1')}, ptr {sp}")
    iflags = b.load_field(abi.OFF_FLAGS)
    hit, ep = _code_tlb(b, ipc, iflags)
    # The last half-word of a page takes the slow path (a 32-bit instruction may cross it).
    near_end = b.icmp("ugt", b.op("and", ipc, str(abi.PAGE_SIZE - 1)), str(abi.PAGE_SIZE - 4))
    fast_ok = b.op("and", hit, b.op("xor", near_end, "true", "i1"), "i1")
    b.emit(f"br i1 {fast_ok}, label %ffast, label %fslow, !prof !0")
    b.start_block("ffast")
    ap = b.tmp()
    b.emit(f"{ap} = getelementptr inbounds i8, ptr {ep}, i64 {abi.CTLB_ADDEND}")
    ad = b.tmp()
    b.emit(f"{ad} = load i64, ptr {ap}")
    hp = b.tmp()
    b.emit(f"{hp} = getelementptr i8, ptr %ram, i64 {b.op('add', ipc, ad)}")
    w32 = b.tmp()
    b.emit(f"{w32} = load i32, ptr {hp}, align 1")
    wf = b.cast("zext", w32, "i32", "i64")
    b.emit("br label %fetched")
    b.start_block("fslow")
    ws = b.call("i64", "@mirage_fetch", f"ptr %h, i64 {ipc}")
    stop = b.load_field(abi.OFF_EXIT_NOW, "i32")
    b._xout = True
    b.emit(f"br i1 {b.icmp('ne', stop, '0', 'i32')}, label %xout, label %fetched")
    b.start_block("fetched")
    word = b.tmp()
    b.emit(f"{word} = phi i64 [ {wf}, %ffast ], [ {ws}, %fslow ]")
    is32 = b.icmp("eq", b.op("and", word, "3"), "3")
    b.emit(f"br i1 {is32}, label %w32, label %w16")
    b.start_block("w16")
    half = b.op("and", word, "65535")
    xp = b.tmp()
    rvct = b.load_field(abi.OFF_RVC, "ptr")
    b.emit(f"{xp} = getelementptr inbounds i32, ptr {rvct}, i64 {half}")
    xw = b.tmp()
    b.emit(f"{xw} = load i32, ptr {xp}")
    x64 = b.cast("zext", xw, "i32", "i64")
    b.emit("br label %decode")
    b.start_block("w32")
    full = b.op("and", word, "4294967295")
    b.emit("br label %decode")
    b.start_block("decode")
    raw = Sym(b.tmp(), b)
    b.emit(f"{raw} = phi i64 [ {x64}, %w16 ], [ {full}, %w32 ]")
    orig = b.tmp()  # What an illegal-instruction trap reports: the instruction as fetched
    b.emit(f"{orig} = phi i64 [ {half}, %w16 ], [ {full}, %w32 ]")
    length = Sym(b.tmp(), b)
    b.emit(f"{length} = phi i64 [ 2, %w16 ], [ 4, %w32 ]")
    mmu = b.op("and", b.op("lshr", iflags, str(abi.FLAG_MMU_SHIFT)), "7")
    b.tlb = b.op("add", b.op("mul", mmu, str(abi.TLB_SIZE * abi.TLB_ENTRY)), str(abi.OFF_TLB))
    comp = b.select(b.icmp("eq", length, "2"), str(abi.DESC_COMPRESSED), "0")
    b.desc_dyn = b.op("or", b.op("shl", mmu, str(abi.DESC_MMU_SHIFT)), comp)
    b.insn_pc = Sym(ipc, b)
    b.cur_priv = Sym(b.op("and", iflags, str(abi.FLAG_PRIV_MASK)), b)
    b.insn_len = length
    _decode_tree(b, raw, cases)

    # One case per table row, its semantics from its emitter.
    for enc in rows:
        b.start_block(cases[enc.name])
        if enc.ext in UNSUPPORTED_EXT:
            b.emit("br label %unsupported")
            continue
        insn = _case_insn(enc, raw, length)
        b.terminated = False
        EMITTERS[enc.name](b, insn)
        if not b.terminated:
            b.next_insn(b.op("add", ipc, length))

    b.start_block("illegal")
    b.terminated = False
    b.sys_callout(Sym(orig, b), abi.SYS_ILLEGAL)

    # Not run here: translated code takes over at this pc.
    b.start_block("unsupported")
    b.store_field(abi.OFF_PC, ipc)
    _jc_probe(b, ipc, iflags, "miss")
    b.start_block("miss")
    b.emit(f"ret i64 {abi.EXIT_MISS}")

    b.lines[ipc_phi] = "  %ipc = phi i64 " + ", ".join(f"[ {v}, %{lbl} ]" for v, lbl in b.next_pcs)
    body = "\n".join(b.lines)
    return f"""
declare i64 @llvm.readcyclecounter()

define i64 @mirage_cycles() #0 {{
  %c = call i64 @llvm.readcyclecounter()
  ret i64 %c
}}

; The interpreter, timed: its host cycles (callouts included) and a flag that attributes the
; callouts it makes to it.
define i64 @mirage_interp(ptr noalias %h) #0 {{
  %fp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_IN_INTERP}
  store i64 1, ptr %fp
  %c0 = call i64 @llvm.readcyclecounter()
  %r = call i64 @mirage_interp_body(ptr %h)
  %c1 = call i64 @llvm.readcyclecounter()
  store i64 0, ptr %fp
  %d = sub i64 %c1, %c0
  %sp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_STAT_INTERP_CYCLES}
  %s0 = load i64, ptr %sp
  %s1 = add i64 %s0, %d
  store i64 %s1, ptr %sp
  ret i64 %r
}}

define internal i64 @mirage_interp_body(ptr noalias %h) #0 {{
entry:
  %ramp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_RAM}
  %ram = load ptr, ptr %ramp
  %xbase{abi.OFF_X} = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_X}
  %xbase{abi.OFF_F} = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_F}
  br label %head
{body}
xout:
  ret i64 {abi.EXIT_CALLOUT}
}}
"""
