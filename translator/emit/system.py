"""System instructions: Zicsr, Zifencei and the privileged ones. They end their block and leave
through the system callout, where the runtime (and, at M-level, the monitor) performs them."""

from __future__ import annotations

from translator import abi
from translator import csrs as C
from translator.emit import emits
from translator.ir import BlockBuilder, const
from translator.isa import Insn

SSTATUS = 0x100


@emits("csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci", "ecall", "ebreak", "mret", "sret", "wfi",
       "sfence.vma", "fence.i", terminator=True)
def system(b: BlockBuilder, i: Insn) -> None:
    if i.name.startswith("csrr"):
        b.when(b.both(b.eq(b.priv(), C.PRV_S), b.eq(i.csr, SSTATUS)), lambda: sstatus_inline(b, i))
    b.sys_callout(i.raw, abi.SYS_INSN)


def _fix_sd(b: BlockBuilder, m: str) -> str:
    """IR of csrs.fix_sd."""
    fs = b.op("and", m, const(C.MSTATUS_FS))
    xs = b.op("and", m, const(C.MSTATUS_XS))
    dirty = b.op("or", b.icmp("eq", fs, const(C.MSTATUS_FS)), b.icmp("eq", xs, const(C.MSTATUS_XS)), "i1")
    return b.op("or", b.op("and", m, const(~C.MSTATUS_SD)), b.select(dirty, const(C.MSTATUS_SD), "0"))


def sstatus_inline(b: BlockBuilder, i: Insn) -> None:
    """S-mode sstatus accesses that change nothing but SUM and SIE (Linux masks and restores
    interrupts this way, and opens user memory around each copy to or from it, hundreds of
    thousands of times a boot) complete here, with the rule of runtime/system.py
    (csrs.SSTATUS_READ/WRITE, fix_sd). The others, and any that sets SIE while a delegated
    interrupt is pending and enabled (it must be taken, privileged spec 3.1.9), take the system
    callout that follows. SUM picks the data MMU index of S-mode code (runtime/hart.py
    Hart.data_mmu), so the flags follow it."""
    b.flush()
    b.sync_budget()
    m = b.load_field(abi.OFF_MSTATUS)
    old = b.op("and", _fix_sd(b, b.op("or", m, const(C.SSTATUS_UXL))), const(C.SSTATUS_READ))
    imm = i.name.endswith("i")
    src = const(i.imm) if imm else b.x(i.rs1)
    # Zicsr: csrrs/csrrc with a zero source do not write (a run-time field in the interpreter).
    writes = True if i.name.startswith("csrrw") else b.ne(i.imm if imm else i.rs1, 0)
    if i.name.startswith("csrrw"):
        val = src
    elif i.name.startswith("csrrs"):
        val = b.op("or", old, src)
    else:
        val = b.op("and", old, b.op("xor", src, "-1"))
    new = m
    if writes is not False:
        new = _fix_sd(b, b.op("or", b.op("and", m, const(~C.SSTATUS_WRITE)), b.op("and", val, const(C.SSTATUS_WRITE))))
        if writes is not True:
            new = b.select(writes, new, m)
    changed = b.op("and", b.op("xor", m, new), const(~(C.MSTATUS_SIE | C.MSTATUS_SUM)))
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
        flags = b.op("and", b.load_field(abi.OFF_FLAGS), const(~(7 << abi.FLAG_MMU_SHIFT)))
        sum_on = b.icmp("ne", b.op("and", new, const(C.MSTATUS_SUM)), "0")
        mmu = b.select(sum_on, str(abi.MMU_S_SUM << abi.FLAG_MMU_SHIFT), str(abi.MMU_S << abi.FLAG_MMU_SHIFT))
        b.store_field(abi.OFF_FLAGS, b.op("or", flags, mmu))
    b.store_x(i.rd, old)
    b.store_field(abi.OFF_PC, const(b.insn_pc + b.insn_len))
    b.to_dispatcher()
    b.start_block(slow)
