"""LLVM IR text builder for one guest block.

Guest registers live in the hart struct; within a block the builder keeps them in SSA values and
writes back dirty ones at exits and on slow paths, so the fast path carries no redundant stores.
IR is built as text (templates are far cheaper than llvmlite.ir builders, see shared notes).
"""

from __future__ import annotations

from translator import abi

I64_MASK = (1 << 64) - 1
# Executions of a tier-0 block before it is recompiled at tier 1 (default). An optimized
# compile costs about 2.5 ms per block and saves about 1 ns per guest instruction, so it pays
# off only for blocks that run hundreds of thousands of instructions: a Linux boot spent 16 s
# promoting 5,700 blocks at 200 and 1.3 s promoting 290 at 20,000, with no loss on the CPU
# benchmarks (tests/bench).
HOT_THRESHOLD = 20000


def _fill(line: str, values: dict[str, str]) -> str:
    if "@@" not in line:
        return line
    for k, v in values.items():
        line = line.replace(k, v)
    return line


def const(v: int | str) -> str:
    """An i64 constant as LLVM spells it (signed decimal); an IR value (the interpreter's run-time
    instruction fields, translator/interp.py) stands for itself."""
    if isinstance(v, str):
        return v
    v &= I64_MASK
    return str(v - (1 << 64) if v >> 63 else v)


class BlockBuilder:
    """Builds the body of one block function `i64 @name(ptr %h)`."""

    def __init__(self, name: str, pc: int, mmu: int, flags: int, n_insns: int, tier: int = 1,
                 hot: int = HOT_THRESHOLD) -> None:
        self.name = name
        self.hot = hot
        # Tier 0 (cold code): compact IR compiled fast. Registers are written through to the hart
        # struct, memory accesses call the shared helpers, and a counter promotes hot blocks.
        self.tier = tier
        self._xout = False
        self.pc = pc
        self.mmu = mmu
        self.flags = flags
        self.n_insns = n_insns
        self.lines: list[str] = []
        self.globals: list[str] = []
        self._tmp = 0
        self._label = 0
        self.x_cache: dict[int, str] = {}
        self.x_dirty: set[int] = set()
        self.f_cache: dict[int, str] = {}
        self.f_dirty: set[int] = set()
        self.ram: str | None = None
        self.chain_slots: list[tuple[str, int]] = []  # (global name, target pc)
        self.targets: list[int] = []  # Static successors (direct exits, call return sites)
        self.terminated = False
        # Index of the instruction being emitted and its pc (for slow paths and traps).
        self.index = 0
        self.insn_pc = pc
        self.insn_len = 4
        self.uses_fp = False
        # Registers the block reads or writes (kind, number), for self-loop formation.
        self.touched: set[tuple[str, int]] = set()
        # Self-loop mode: the block branches back to its own start inside the function, registers
        # and the budget flow around the loop in SSA (phis), and leave through exits.
        self.loop = False
        self.budget: str | None = None
        self._phis: list[tuple[str, int, str]] = []
        # Forward branches inside the block: pc -> instruction index, and the states waiting at
        # each landing index (label, x cache, f cache, budget).
        self.internal: dict[int, int] = {}
        self.pending: dict[int, list[tuple[str, dict, dict, str | None]]] = {}

    # Plumbing
    def tmp(self) -> str:
        self._tmp += 1
        return f"%t{self._tmp}"

    def label(self, hint: str = "L") -> str:
        self._label += 1
        return f"{hint}{self._label}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def start_block(self, label: str) -> None:
        self.lines.append(f"{label}:")

    def field_ptr(self, off: int) -> str:
        t = self.tmp()
        self.emit(f"{t} = getelementptr inbounds i8, ptr %h, i64 {off}")
        return t

    def load_field(self, off: int, ty: str = "i64") -> str:
        p = self.field_ptr(off)
        t = self.tmp()
        self.emit(f"{t} = load {ty}, ptr {p}")
        return t

    def store_field(self, off: int, value: str, ty: str = "i64") -> None:
        p = self.field_ptr(off)
        self.emit(f"store {ty} {value}, ptr {p}")

    # Integer registers
    def x(self, r: int) -> str:
        if r == 0:
            return "0"
        self.touched.add(("x", r))
        if self.tier == 0:
            return self.load_field(abi.OFF_X + 8 * r)
        v = self.x_cache.get(r)
        if v is None:
            v = self.load_field(abi.OFF_X + 8 * r)
            self.x_cache[r] = v
        return v

    def set_x(self, r: int, value: str) -> None:
        if r == 0:
            return
        self.touched.add(("x", r))
        if self.tier == 0:
            self.store_field(abi.OFF_X + 8 * r, value)
            return
        self.x_cache[r] = value
        self.x_dirty.add(r)

    # FP registers (raw 64-bit patterns)
    def f(self, r: int) -> str:
        self.touched.add(("f", r))
        if self.tier == 0:
            return self.load_field(abi.OFF_F + 8 * r)
        v = self.f_cache.get(r)
        if v is None:
            v = self.load_field(abi.OFF_F + 8 * r)
            self.f_cache[r] = v
        return v

    def set_f(self, r: int, value: str) -> None:
        self.touched.add(("f", r))
        if self.tier == 0:
            self.store_field(abi.OFF_F + 8 * r, value)
            return
        self.f_cache[r] = value
        self.f_dirty.add(r)

    def store_x(self, r: int, value: str) -> None:
        """Writes an integer register through to the hart struct (for paths that leave at once)."""
        if r:
            self.store_field(abi.OFF_X + 8 * r, value)

    # Facts known at translation time in a block and at run time in the interpreter
    def priv(self) -> int:
        """The privilege the code runs at."""
        return self.flags & abi.FLAG_PRIV_MASK

    def eq(self, a, b: int) -> bool | str:
        """a == b: a Python bool when a is known now, else an i1 value."""
        if isinstance(a, int):
            return a == b
        return self.icmp("eq", a, str(b))

    def ne(self, a, b: int) -> bool | str:
        """a != b: a Python bool when a is known now, else an i1 value."""
        if isinstance(a, int):
            return a != b
        return self.icmp("ne", a, str(b))

    def both(self, a: bool | str, b: bool | str) -> bool | str:
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        return self.op("and", a, b, "i1")

    def when(self, cond: bool | str, body) -> None:
        """Emits body() where cond holds; body's code may leave or fall through to what follows."""
        if cond is False:
            return
        if cond is True:
            body()
            return
        yes, no = self.label("when"), self.label("whenot")
        self.emit(f"br i1 {cond}, label %{yes}, label %{no}")
        self.start_block(yes)
        body()
        self.emit(f"br label %{no}")
        self.start_block(no)

    def flush(self) -> None:
        """Writes dirty registers back; they stay cached (used on slow paths that rejoin)."""
        for r in sorted(self.x_dirty):
            self.store_field(abi.OFF_X + 8 * r, self.x_cache[r])
        for r in sorted(self.f_dirty):
            self.store_field(abi.OFF_F + 8 * r, self.f_cache[r])

    def forget(self) -> None:
        """After a callout that may change registers: drop cached values (call flush first)."""
        self.x_cache.clear()
        self.x_dirty.clear()
        self.f_cache.clear()
        self.f_dirty.clear()

    # Arithmetic helpers
    def op(self, opcode: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = {opcode} {ty} {a}, {b}")
        return t

    def cast(self, opcode: str, v: str, src: str, dst: str) -> str:
        t = self.tmp()
        self.emit(f"{t} = {opcode} {src} {v} to {dst}")
        return t

    def icmp(self, cond: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = icmp {cond} {ty} {a}, {b}")
        return t

    def select(self, c: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = select i1 {c}, {ty} {a}, {ty} {b}")
        return t

    def zext_bool(self, c: str) -> str:
        return self.cast("zext", c, "i1", "i64")

    def sext32(self, v: str) -> str:
        """Sign-extends the low 32 bits of an i64 (the RV64 *W rule)."""
        t = self.cast("trunc", v, "i64", "i32")
        return self.cast("sext", t, "i32", "i64")

    def call(self, ret: str, fn: str, args: str) -> str:
        t = self.tmp()
        self.emit(f"{t} = call {ret} {fn}({args})")
        return t

    # Memory
    def ram_base(self) -> str:
        if self.ram is None:
            # Loaded in the entry block so it dominates every use.
            self.ram = "%ram"
        return self.ram

    def _desc(self, size_log2: int, store: bool, signed: bool, amo: bool = False) -> int:
        remain = self.n_insns - self.index - 1
        d = size_log2 | (self.mmu << abi.DESC_MMU_SHIFT) | (remain << abi.DESC_REMAIN_SHIFT)
        if store:
            d |= abi.DESC_STORE
        if signed:
            d |= abi.DESC_SIGNED
        if amo:
            d |= abi.DESC_AMO
        if self.insn_len == 2:
            d |= abi.DESC_COMPRESSED
        return d

    def _tlb_lookup(self, addr: str, size: int, write: bool) -> tuple[str, str, str]:
        """Emits the inline TLB probe; returns (hit flag, entry pointer, addend pointer)."""
        idx = self.op("lshr", addr, str(abi.PAGE_BITS))
        idx = self.op("and", idx, str(abi.TLB_SIZE - 1))
        eoff = self.op("shl", idx, str(abi.TLB_ENTRY.bit_length() - 1))
        eoff = self.op("add", eoff, self._tlb_base())
        if write:
            eoff = self.op("add", eoff, str(abi.TLB_WRITE))
        ep = self.tmp()
        self.emit(f"{ep} = getelementptr inbounds i8, ptr %h, i64 {eoff}")
        tag = self.tmp()
        self.emit(f"{tag} = load i64, ptr {ep}")
        cmp = self.op("and", addr, const(~(abi.PAGE_SIZE - 1) | (size - 1)))
        hit = self.icmp("eq", tag, cmp)
        ap = self.tmp()
        self.emit(f"{ap} = getelementptr inbounds i8, ptr {ep}, i64 {abi.TLB_ADDEND - (abi.TLB_WRITE if write else abi.TLB_READ)}")
        return hit, ep, ap

    def _host_ptr(self, addr: str, ap: str) -> str:
        add = self.tmp()
        self.emit(f"{add} = load i64, ptr {ap}")
        off = self.op("add", addr, add)
        p = self.tmp()
        self.emit(f"{p} = getelementptr i8, ptr {self.ram_base()}, i64 {off}")
        return p

    def _slow_call(self, addr: str, value: str, desc: int) -> str:
        self.flush()
        self.sync_budget()
        r = self.callout("mirage_mem", f"ptr %h, i64 {addr}, i64 {value}, i64 {desc}, i64 {const(self.insn_pc)}")
        stop = self.load_field(abi.OFF_EXIT_NOW, "i32")
        c = self.icmp("ne", stop, "0", "i32")
        out, cont = self.label("slowexit"), self.label("slowok")
        self.emit(f"br i1 {c}, label %{out}, label %{cont}, !prof !1")
        self.start_block(out)
        self.emit(f"ret i64 {abi.EXIT_CALLOUT}")
        self.start_block(cont)
        return r

    def _tlb_base(self) -> str:
        """Offset in the hart struct of the TLB of the block's data MMU index."""
        return str(abi.OFF_TLB + self.mmu * abi.TLB_SIZE * abi.TLB_ENTRY)

    def _exit_if_stopped(self) -> None:
        """After a tier-0 helper: leave if the callout asked to (nothing is cached to write back)."""
        stop = self.load_field(abi.OFF_EXIT_NOW, "i32")
        c = self.icmp("ne", stop, "0", "i32")
        cont = self.label("ok")
        self._xout = True
        self.emit(f"br i1 {c}, label %xout, label %{cont}, !prof !1")
        self.start_block(cont)

    def load(self, addr: str, size: int, signed: bool) -> str:
        """Guest load of `size` bytes; returns the value extended to i64."""
        bits = size * 8
        if self.tier == 0:
            fn = f"@mirage_ld{size}{'s' if signed and size < 8 else 'u'}"
            desc = self._desc(size.bit_length() - 1, False, signed)
            v = self.call("i64", fn, f"ptr %h, i64 {addr}, i64 {self._tlb_base()}, i64 {desc}, "
                                     f"i64 {const(self.insn_pc)}")
            self._exit_if_stopped()
            return v
        hit, _ep, ap = self._tlb_lookup(addr, size, write=False)
        fast, slow, join = self.label("ldf"), self.label("lds"), self.label("ldj")
        self.emit(f"br i1 {hit}, label %{fast}, label %{slow}, !prof !0")
        self.start_block(fast)
        p = self._host_ptr(addr, ap)
        v = self.tmp()
        self.emit(f"{v} = load i{bits}, ptr {p}, align 1")
        if bits < 64:
            v = self.cast("sext" if signed else "zext", v, f"i{bits}", "i64")
        self.emit(f"br label %{join}")
        self.start_block(slow)
        sv = self._slow_call(addr, "0", self._desc(size.bit_length() - 1, False, signed))
        slow_end = self._last_label()
        self.emit(f"br label %{join}")
        self.start_block(join)
        r = self.tmp()
        self.emit(f"{r} = phi i64 [ {v}, %{fast} ], [ {sv}, %{slow_end} ]")
        return r

    def store(self, addr: str, value: str, size: int) -> None:
        bits = size * 8
        if self.tier == 0:
            desc = self._desc(size.bit_length() - 1, True, False)
            self.emit(f"call void @mirage_st{size}(ptr %h, i64 {addr}, i64 {value}, i64 {self._tlb_base()}, "
                      f"i64 {desc}, i64 {const(self.insn_pc)})")
            self._exit_if_stopped()
            return
        hit, _ep, ap = self._tlb_lookup(addr, size, write=True)
        fast, slow, join = self.label("stf"), self.label("sts"), self.label("stj")
        self.emit(f"br i1 {hit}, label %{fast}, label %{slow}, !prof !0")
        self.start_block(fast)
        p = self._host_ptr(addr, ap)
        v = value if bits == 64 else self.cast("trunc", value, "i64", f"i{bits}")
        self.emit(f"store i{bits} {v}, ptr {p}, align 1")
        self.emit(f"br label %{join}")
        self.start_block(slow)
        self._slow_call(addr, value, self._desc(size.bit_length() - 1, True, False))
        self.emit(f"br label %{join}")
        self.start_block(join)

    def amo(self, addr: str, size: int, rmw) -> str:
        """Read-modify-write at `addr`: rmw(builder, old_i64) returns the new i64 value (or None for
        no store). Returns the old value, sign-extended for word size."""
        bits = size * 8
        hit, _ep, ap = self._tlb_lookup(addr, size, write=True)
        fast, slow, join = self.label("amf"), self.label("ams"), self.label("amj")
        self.emit(f"br i1 {hit}, label %{fast}, label %{slow}, !prof !0")
        self.start_block(fast)
        p = self._host_ptr(addr, ap)
        v = self.tmp()
        self.emit(f"{v} = load i{bits}, ptr {p}")
        old = v if bits == 64 else self.cast("sext", v, f"i{bits}", "i64")
        new = rmw(self, old)
        if new is not None:
            nv = new if bits == 64 else self.cast("trunc", new, "i64", f"i{bits}")
            self.emit(f"store i{bits} {nv}, ptr {p}")
        self.emit(f"br label %{join}")
        fast_label = self._last_label()
        self.start_block(slow)
        # Slow path: load through the callout (with AMO permission check), compute, store through it.
        ov = self._slow_call(addr, "0", self._desc(size.bit_length() - 1, False, True, amo=True))
        new2 = rmw(self, ov)
        if new2 is not None:
            self._slow_call(addr, new2, self._desc(size.bit_length() - 1, True, False, amo=True))
        self.emit(f"br label %{join}")
        slow_label = self._last_label()
        self.start_block(join)
        r = self.tmp()
        self.emit(f"{r} = phi i64 [ {old}, %{fast_label} ], [ {ov}, %{slow_label} ]")
        return r

    def _last_label(self) -> str:
        for line in reversed(self.lines):
            if not line.startswith("  "):
                return line[:-1]
        return "entry"

    # Block exits
    def sync_budget(self, extra: int = 0) -> None:
        """In a self-loop the budget lives in SSA: write it back before leaving or calling out."""
        if self.budget is not None:
            v = self.budget if not extra else self.op("add", self.budget, str(extra))
            self.store_field(abi.OFF_BUDGET, v)

    def exit_direct(self, target: int) -> None:
        """Ends the block jumping to a static target: chained when on the same guest page."""
        self.flush()
        self.sync_budget()
        self.targets.append(target)
        self.store_field(abi.OFF_PC, const(target))
        if target >> abi.PAGE_BITS == self.pc >> abi.PAGE_BITS:
            slot = f"@{self.name}_s{len(self.chain_slots)}"
            self.chain_slots.append((slot[1:], target))
            self.globals.append(f"{slot} = dso_local global ptr @mirage_dispatch")
            fn = self.tmp()
            self.emit(f"{fn} = load ptr, ptr {slot}")
            r = self.tmp()
            if self.tier == 0:
                # Cold code hands the slot's function to the loop in mirage_enter, which calls it.
                self.emit(f"{r} = ptrtoint ptr {fn} to i64")
            else:
                self.emit(f"{r} = musttail call i64 {fn}(ptr %h)")
            self.emit(f"ret i64 {r}")
        else:
            self.to_dispatcher()

    def exit_indirect(self, target: str) -> None:
        self.flush()
        self.sync_budget()
        self.store_field(abi.OFF_PC, target)
        self.to_dispatcher()

    def to_dispatcher(self) -> None:
        """Goes on at the pc just stored: tier 1 tail-calls the dispatcher; tier 0 returns to the
        loop in mirage_enter (a musttail call costs LLVM's fast instruction selector its fast
        path, doubling a cold block's compile time)."""
        if self.tier == 0:
            self.emit(f"ret i64 {abi.EXIT_NEXT}")
            return
        r = self.tmp()
        self.emit(f"{r} = musttail call i64 @mirage_dispatch(ptr %h)")
        self.emit(f"ret i64 {r}")

    def callout(self, name: str, args: str) -> str:
        """Calls into the runtime: through the preserve_most trampoline from tier 1 (its fast
        paths keep their registers), directly with the C convention from tier 0 (which keeps
        nothing in registers, and whose fast instruction selector handles only C calls)."""
        if self.tier == 0:
            return self.call("i64", f"@{name}_c", args)
        return self.call("preserve_mostcc i64", f"@{name}", args)

    def branch(self, cond: str, taken: int, fallthrough: int) -> None:
        t, f = self.label("bt"), self.label("bf")
        self.emit(f"br i1 {cond}, label %{t}, label %{f}")
        self.start_block(t)
        last = self.index == self.n_insns - 1
        j = self.internal.get(taken)
        if not last and j is not None and j > self.index:
            # A forward branch to a later instruction of this block: both paths meet there, and
            # the registers they disagree on get phis (see join). The skipped instructions were
            # counted by the prologue, so the taken path gives them back.
            budget = self._give_back(j - self.index - 1)
            self.pending.setdefault(j, []).append((t, dict(self.x_cache), dict(self.f_cache), budget))
            self.emit(f"br label %join{j}")
            self.start_block(f)
            return
        if not last:
            # A side exit: the block goes on with the fall-through path.
            cur = self.budget
            self.flush()
            self._give_back(self.n_insns - self.index - 1, write=True)
            self.budget = None  # Written back for this path
            self.exit_direct(taken)
            self.budget = cur
            self.start_block(f)
            return
        if self.loop and taken == self.pc:
            self._latch()
        else:
            self.exit_direct(taken)
        self.start_block(f)
        self.exit_direct(fallthrough)
        self.terminated = True

    def _give_back(self, skipped: int, write: bool = False) -> str | None:
        """Returns `skipped` counted-but-not-executed instructions to the budget on this path:
        in SSA inside a self-loop (written back if `write`), else in the hart struct."""
        if self.budget is not None:
            v = self.op("add", self.budget, str(skipped)) if skipped else self.budget
            if write:
                self.store_field(abi.OFF_BUDGET, v)
            return v
        if skipped:
            b = self.load_field(abi.OFF_BUDGET)
            self.store_field(abi.OFF_BUDGET, self.op("add", b, str(skipped)))
        return None

    def preload(self, regs: set[tuple[str, int]]) -> None:
        """Loads every register the block touches at its entry, so values dominate every join."""
        for kind, r in sorted(regs):
            if kind == "x":
                self.x(r)
            else:
                self.f(r)

    def join(self, index: int) -> None:
        """Starts instruction `index` where forward branches land: merge the register states."""
        incoming = self.pending.pop(index, None)
        if not incoming:
            return
        fall = self._last_label()
        self.emit(f"br label %join{index}")
        self.start_block(f"join{index}")
        states = [*incoming, (fall, self.x_cache, self.f_cache, self.budget)]
        for pos, kind in ((1, "x"), (2, "f")):
            merged: dict[int, str] = {}
            for r in set().union(*(st[pos].keys() for st in states)):
                vals = [st[pos].get(r) for st in states]
                if any(v is None for v in vals):
                    # Only in a dry run, where nothing was preloaded: forget it
                    (self.x_dirty if kind == "x" else self.f_dirty).discard(r)
                    continue
                if len(set(vals)) == 1:
                    merged[r] = vals[0]
                    continue
                phi = self.tmp()
                arms = ", ".join(f"[ {v}, %{st[0]} ]" for v, st in zip(vals, states, strict=True))
                self.emit(f"{phi} = phi i64 {arms}")
                merged[r] = phi
            if kind == "x":
                self.x_cache = merged
            else:
                self.f_cache = merged
        if self.budget is not None:
            vals = [st[3] for st in states]
            if len(set(vals)) > 1:
                phi = self.tmp()
                arms = ", ".join(f"[ {v}, %{st[0]} ]" for v, st in zip(vals, states, strict=True))
                self.emit(f"{phi} = phi i64 {arms}")
                self.budget = phi
            else:
                self.budget = vals[0]

    def sys_callout(self, raw: int, desc: int = 0) -> None:
        """Ends the block with a system callout that performs the instruction and sets pc."""
        self.flush()
        self.sync_budget()
        remain = self.n_insns - self.index - 1
        d = desc | (remain << abi.DESC_REMAIN_SHIFT) | (abi.DESC_COMPRESSED if self.insn_len == 2 else 0)
        self.callout("mirage_sys", f"ptr %h, i64 {raw}, i64 {const(self.insn_pc)}, i64 {d}")
        stop = self.load_field(abi.OFF_EXIT_NOW, "i32")
        c = self.icmp("ne", stop, "0", "i32")
        out, cont = self.label("sysexit"), self.label("sysok")
        self.emit(f"br i1 {c}, label %{out}, label %{cont}")
        self.start_block(out)
        self.emit(f"ret i64 {abi.EXIT_CALLOUT}")
        self.start_block(cont)
        self.to_dispatcher()
        self.terminated = True

    # Self-loops
    def begin_loop(self, regs: set[tuple[str, int]]) -> None:
        """Starts the loop header: phis for the budget and for every register the body touches."""
        self.loop = True
        inits = []
        for kind, r in sorted(regs):
            off = (abi.OFF_X if kind == "x" else abi.OFF_F) + 8 * r
            inits.append((kind, r, self.load_field(off)))
        self.emit("br label %loop")
        self.start_block("loop")
        self.budget = "%lb"
        self.emit("%lb = phi i64 [ %b1, %body ], [ %lbnext, %latch ]")
        for kind, r, init in inits:
            phi = f"%p{kind}{r}"
            self.emit(f"{phi} = phi i64 [ {init}, %body ], [ @@{kind}{r}@@, %latch ]")
            self._phis.append((kind, r, phi))
            if kind == "x":
                self.x_cache[r] = phi
                self.x_dirty.add(r)
            else:
                self.f_cache[r] = phi
                self.f_dirty.add(r)

    def _latch(self) -> None:
        """The back edge: count the next iteration, or leave to the run loop when the budget is out."""
        ends = {}
        for kind, r, phi in self._phis:
            cache = self.x_cache if kind == "x" else self.f_cache
            ends[f"@@{kind}{r}@@"] = cache.get(r, phi)
        self.emit(f"%lbnext = sub i64 {self.budget}, {self.n_insns}")
        self.emit("%lbout = icmp slt i64 %lbnext, 0")
        self.emit("br i1 %lbout, label %loopout, label %latch, !prof !1")
        self.start_block("latch")
        # Iteration counter (statistics): carried in a phi, stored without reloading it.
        self.emit("%lcn = add i64 %lc, 1")
        self.emit(f"store i64 %lcn, ptr @{self.name}_l")
        self.emit("br label %loop")
        self.start_block("loopout")
        self.flush()
        self.sync_budget()
        self.store_field(abi.OFF_PC, const(self.pc))
        self.emit(f"ret i64 {abi.EXIT_POLL}")
        self.lines = [_fill(line, ends) for line in self.lines]
        at = self.lines.index("loop:") + 1
        self.lines.insert(at, "  %lc = phi i64 [ %lc0, %body ], [ %lcn, %latch ]")
        self.latched = True

    def function_text(self) -> str:
        """The block function: prologue (instruction budget, which exit requests zero) plus the body."""
        head = [
            f"define i64 @{self.name}(ptr noalias %h) #0 {{",
            "entry:",
            f"  %bp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_BUDGET}",
            "  %b0 = load i64, ptr %bp",
            f"  %b1 = sub i64 %b0, {self.n_insns}",
            "  store i64 %b1, ptr %bp",
            "  %stop = icmp slt i64 %b1, 0",
            "  br i1 %stop, label %poll, label %body, !prof !1",
            "poll:",
            "  store i64 %b0, ptr %bp",
            f"  ret i64 {abi.EXIT_POLL}",
            "body:",
        ]
        if self.tier == 0:
            # Execution counter: at the threshold, hand the block back for promotion untouched.
            head[-1:] = [
                "count:",
                f"  %hc = load i32, ptr @{self.name}_n",
                "  %hc1 = add i32 %hc, 1",
                f"  store i32 %hc1, ptr @{self.name}_n",
                f"  %hot = icmp eq i32 %hc1, {self.hot}",
                "  br i1 %hot, label %promote, label %body, !prof !1",
                "promote:",
                "  store i64 %b0, ptr %bp",
                f"  ret i64 {abi.EXIT_HOT}",
                "body:",
            ]
            head[head.index("  br i1 %stop, label %poll, label %body, !prof !1")] = (
                "  br i1 %stop, label %poll, label %count, !prof !1")
        else:
            # Execution counter (statistics, read at the end of a run): entries, and in a
            # self-loop the iterations in @<name>_l.
            head += [
                f"  %hc = load i64, ptr @{self.name}_n",
                "  %hc1 = add i64 %hc, 1",
                f"  store i64 %hc1, ptr @{self.name}_n",
            ]
            if getattr(self, "latched", False):
                head.append(f"  %lc0 = load i64, ptr @{self.name}_l")
        if self.ram is not None:
            head += [
                f"  %ramp = getelementptr inbounds i8, ptr %h, i64 {abi.OFF_RAM}",
                "  %ram = load ptr, ptr %ramp",
            ]
        tail = ["xout:", f"  ret i64 {abi.EXIT_CALLOUT}"] if self._xout else []
        self.globals.append(f"@{self.name}_n = dso_local global i{32 if self.tier == 0 else 64} 0")
        if getattr(self, "latched", False):
            self.globals.append(f"@{self.name}_l = dso_local global i64 0")
        return "\n".join(head + self.lines + tail + ["}"])
