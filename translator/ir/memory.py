"""Guest memory access: the inline softmmu TLB probe (abi TLB layout), the memory callout on a miss
(translator/softmmu.py refills natively before Python), and tier 0's out-of-line helpers."""

from __future__ import annotations

from translator import abi
from translator.ir.text import const


class MemoryAccess:
    """Loads, stores and AMOs of a block (uses mmu, index, n_insns, insn_len, insn_pc)."""

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

    def _tlb_base(self) -> str:
        """Offset in the hart struct of the TLB of the block's data MMU index."""
        return str(abi.OFF_TLB + self.mmu * abi.TLB_SIZE * abi.TLB_ENTRY)

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
