"""System instructions: Zicsr, Zifencei and the privileged ones. They end their block and leave
through the system callout, where the runtime (and, at M-level, the monitor) performs them."""

from __future__ import annotations

from translator import abi
from translator import csrs as C
from translator.emit.registry import emits
from translator.ir import BlockBuilder, const
from translator.isa import Insn

SSTATUS = C.CSR_NUMBERS["sstatus"]
TIME = C.CSR_NUMBERS["time"]


@emits("csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci", "ecall", "ebreak", "mret", "sret", "wfi",
       "sfence.vma", "fence.i", terminator=True)
def system(b: BlockBuilder, i: Insn) -> None:
    if i.name.startswith("csrr"):
        b.when(b.both(b.eq(b.priv(), C.PRV_S), b.eq(i.csr, SSTATUS)), lambda: sstatus_inline(b, i))
        slot_inline(b, i)
    b.sys_callout(i.raw, abi.SYS_INSN)


def zicsr(b: BlockBuilder, i: Insn, old: str) -> tuple[bool | str, str]:
    """The Zicsr read-modify-write (unprivileged spec 9.1): whether the instruction writes (csrrw
    always; csrrs/csrrc only with a nonzero source register number or immediate: a run-time
    value in the interpreter) and the value it writes, given the CSR's old value."""
    imm = i.name.endswith("i")
    src = const(i.imm) if imm else b.x(i.rs1)
    op = i.name[4]
    if op == "w":
        return True, src
    writes = b.ne(i.imm if imm else i.rs1, 0)
    if op == "s":
        return writes, b.op("or", old, src)
    return writes, b.op("and", old, b.op("xor", src, "-1"))


def slot_inline(b: BlockBuilder, i: Insn) -> None:
    """CSRs the runtime maps to a slot for the current privilege (abi.CSR_SLOTS, Machine.map_csr)
    complete here: read the slot, write what Zicsr computes under the slot's write mask; and the
    time CSR where the runtime maps it (abi.CSR_TIME). A CSR with no entry, or a write to a
    read-only one, takes the system callout that follows."""
    priv, csr = b.priv(), i.csr
    if isinstance(priv, int) and isinstance(csr, int):
        off = const(abi.OFF_CSR_FAST + priv * 4096 + csr)
    else:
        off = b.op("add", b.op("add", b.op("shl", str(priv), "12"), str(csr)), str(abi.OFF_CSR_FAST))
    b.flush()
    b.sync_budget()
    ep = b.tmp()
    b.emit(f"{ep} = getelementptr inbounds i8, ptr %h, i64 {off}")
    e8 = b.tmp()
    b.emit(f"{e8} = load i8, ptr {ep}")
    entry = b.cast("zext", e8, "i8", "i64")
    slot = b.op("sub", b.op("and", entry, str(abi.CSR_READ_ONLY - 1)), "1")
    sp = b.tmp()
    b.emit(f"{sp} = getelementptr inbounds i8, ptr %h, i64 {b.op('add', b.op('shl', slot, '3'), str(abi.OFF_CSR))}")
    mp = b.tmp()
    b.emit(f"{mp} = getelementptr inbounds i8, ptr %h, i64 {b.op('add', b.op('shl', slot, '3'), str(abi.OFF_CSR_WMASK))}")
    writes_ro = b.icmp("ne", b.op("and", entry, str(abi.CSR_READ_ONLY)), "0")
    mapped = b.icmp("ne", entry, "0")
    fast, slow, go = b.label("slotfast"), b.label("slotslow"), b.label("slotgo")
    b.emit(f"br i1 {mapped}, label %{fast}, label %{slow}, !prof !0")
    b.start_block(fast)
    old = b.tmp()
    may_be_time = b.eq(csr, TIME)
    if may_be_time is False:
        b.emit(f"{old} = load i64, ptr {sp}")
    else:
        # The time CSR: the platform timer, read natively (the runtime maps it with CSR_TIME).
        tl, sl, join = b.label("csrtime"), b.label("csrslot"), b.label("csrold")
        is_time = b.icmp("eq", b.op("and", entry, str(abi.CSR_READ_ONLY - 1)), str(abi.CSR_TIME))
        b.emit(f"br i1 {is_time}, label %{tl}, label %{sl}")
        b.start_block(tl)
        t = b.call("i64", "@mirage_time", "ptr %h")
        b.emit(f"br label %{join}")
        b.start_block(sl)
        v = b.tmp()
        b.emit(f"{v} = load i64, ptr {sp}")
        b.emit(f"br label %{join}")
        b.start_block(join)
        b.emit(f"{old} = phi i64 [ {t}, %{tl} ], [ {v}, %{sl} ]")
    writes, val = zicsr(b, i, old)
    if writes is not False:
        ok = b.op("xor", writes_ro, "true", "i1") if writes is True else \
            b.op("xor", b.op("and", writes_ro, writes, "i1"), "true", "i1")
        b.emit(f"br i1 {ok}, label %{go}, label %{slow}, !prof !0")
        b.start_block(go)
        mask = b.tmp()
        b.emit(f"{mask} = load i64, ptr {mp}")
        new = b.op("and", val, mask)
        if writes is not True:
            new = b.select(writes, new, old)
        b.emit(f"store i64 {new}, ptr {sp}")
    b.store_x(i.rd, old)
    b.store_field(abi.OFF_PC, const(b.insn_pc + b.insn_len))
    b.to_dispatcher()
    b.start_block(slow)


def _fix_sd(b: BlockBuilder, m: str) -> str:
    """IR of csrs.fix_sd."""
    fs = b.op("and", m, const(C.MSTATUS_FS))
    xs = b.op("and", m, const(C.MSTATUS_XS))
    dirty = b.op("or", b.icmp("eq", fs, const(C.MSTATUS_FS)), b.icmp("eq", xs, const(C.MSTATUS_XS)), "i1")
    return b.op("or", b.op("and", m, const(~C.MSTATUS_SD)), b.select(dirty, const(C.MSTATUS_SD), "0"))


def sstatus_inline(b: BlockBuilder, i: Insn) -> None:
    """S-mode sstatus accesses that change nothing but SIE, SUM, FS, SPIE and SPP (Linux masks and
    restores interrupts this way, opens user memory around each copy to or from it, and turns the
    FP unit off and back on around each trap, hundreds of thousands of times a boot) complete
    here, with the rule of runtime/core/system.py (csrs.SSTATUS_READ/WRITE, fix_sd). The others (MXR
    changes the TLBs' permissions), and any that sets SIE while a delegated interrupt is pending
    and enabled (it must be taken, privileged spec 3.1.9), take the system callout that follows.
    SUM picks the data MMU index of S-mode code and FS the FP-enabled flag (runtime/core/hart.py
    Hart.compute_flags), so the flags follow them."""
    b.flush()
    b.sync_budget()
    m = b.load_field(abi.OFF_MSTATUS)
    old = b.op("and", _fix_sd(b, b.op("or", m, const(C.SSTATUS_UXL))), const(C.SSTATUS_READ))
    writes, val = zicsr(b, i, old)
    new = m
    if writes is not False:
        new = _fix_sd(b, b.op("or", b.op("and", m, const(~C.SSTATUS_WRITE)), b.op("and", val, const(C.SSTATUS_WRITE))))
        if writes is not True:
            new = b.select(writes, new, m)
    inline = C.MSTATUS_SIE | C.MSTATUS_SUM | C.MSTATUS_FS | C.MSTATUS_SPIE | C.MSTATUS_SPP | C.MSTATUS_SD
    changed = b.op("and", b.op("xor", m, new), const(~inline))
    rises = b.op("and", b.op("and", new, b.op("xor", m, "-1")), const(C.MSTATUS_SIE))
    pending = b.op("and", b.op("and", b.load_field(abi.OFF_MIP), b.load_field(abi.OFF_MIE)),
                   b.load_field(abi.OFF_MIDELEG))
    wakes = b.op("and", rises, b.select(b.icmp("ne", pending, "0"), "-1", "0"))
    ok = b.icmp("eq", b.op("or", changed, wakes), "0")
    fast, slow = b.label("csrfast"), b.label("csrslow")
    b.emit(f"br i1 {ok}, label %{fast}, label %{slow}, !prof !0")
    b.start_block(fast)
    if writes is not False:
        b.store_field(abi.OFF_MSTATUS, new)
        flags = b.op("and", b.load_field(abi.OFF_FLAGS), const(~(7 << abi.FLAG_MMU_SHIFT | abi.FLAG_FS_ON)))
        sum_on = b.icmp("ne", b.op("and", new, const(C.MSTATUS_SUM)), "0")
        mmu = b.select(sum_on, str(abi.MMU_S_SUM << abi.FLAG_MMU_SHIFT), str(abi.MMU_S << abi.FLAG_MMU_SHIFT))
        fs_on = b.icmp("ne", b.op("and", new, const(C.MSTATUS_FS)), "0")
        fs = b.select(fs_on, str(abi.FLAG_FS_ON), "0")
        b.store_field(abi.OFF_FLAGS, b.op("or", b.op("or", flags, mmu), fs))
    b.store_x(i.rd, old)
    b.store_field(abi.OFF_PC, const(b.insn_pc + b.insn_len))
    b.to_dispatcher()
    b.start_block(slow)
