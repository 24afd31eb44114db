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
    if i.name.startswith("csrr") and i.csr == SSTATUS and b.flags & abi.FLAG_PRIV_MASK == C.PRV_S:
        sstatus_inline(b, i)
    b.sys_callout(i.raw, abi.SYS_INSN)


def _fix_sd(b: BlockBuilder, m: str) -> str:
    """IR of csrs.fix_sd."""
    fs = b.op("and", m, const(C.MSTATUS_FS))
    xs = b.op("and", m, const(C.MSTATUS_XS))
    dirty = b.op("or", b.icmp("eq", fs, const(C.MSTATUS_FS)), b.icmp("eq", xs, const(C.MSTATUS_XS)), "i1")
    return b.op("or", b.op("and", m, const(~C.MSTATUS_SD)), b.select(dirty, const(C.MSTATUS_SD), "0"))


def sstatus_inline(b: BlockBuilder, i: Insn) -> None:
    """S-mode sstatus accesses that change nothing but clear or keep SIE (Linux saves and masks
    interrupts this way, hundreds of thousands of times a boot) complete here, with the rule of
    runtime/system.py (csrs.SSTATUS_READ/WRITE, fix_sd); the others, and any that would set SIE
    (an interrupt may be pending), take the system callout that follows."""
    b.flush()
    b.sync_budget()
    m = b.load_field(abi.OFF_MSTATUS)
    old = b.op("and", _fix_sd(b, b.op("or", m, const(C.SSTATUS_UXL))), const(C.SSTATUS_READ))
    imm = i.name.endswith("i")
    src = const(i.imm) if imm else b.x(i.rs1)
    writes = i.name.startswith("csrrw") or (i.imm if imm else i.rs1) != 0
    if i.name.startswith("csrrw"):
        val = src
    elif i.name.startswith("csrrs"):
        val = b.op("or", old, src)
    else:
        val = b.op("and", old, b.op("xor", src, "-1"))
    new = m
    if writes:
        new = _fix_sd(b, b.op("or", b.op("and", m, const(~C.SSTATUS_WRITE)), b.op("and", val, const(C.SSTATUS_WRITE))))
    changed = b.op("and", b.op("xor", m, new), const(~C.MSTATUS_SIE))
    rises = b.op("and", b.op("and", new, b.op("xor", m, "-1")), const(C.MSTATUS_SIE))
    ok = b.icmp("eq", b.op("or", changed, rises), "0")
    fast, slow = b.label("csrfast"), b.label("csrslow")
    b.emit(f"br i1 {ok}, label %{fast}, label %{slow}, !prof !0")
    b.start_block(fast)
    if writes:
        b.store_field(abi.OFF_MSTATUS, new)
    if i.rd:
        b.store_field(abi.OFF_X + 8 * i.rd, old)
    b.store_field(abi.OFF_PC, const(b.insn_pc + b.insn_len))
    b.to_dispatcher()
    b.start_block(slow)
