"""System instructions of the physical machine at S and U level (privileged spec, chapter 4).

The firmware world runs physically in U-mode: its privileged instructions and M-level CSRs raise
illegal-instruction traps here, which the monitor takes and emulates (trap-and-emulate).
Each S-level CSR's rule lives in exactly one place: the table at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.core.hart import SLOT_SCAUSE, SLOT_SEPC, SLOT_SSCRATCH, SLOT_STVAL, Hart, Trap
from translator import csrs as C
from translator.isa import Insn

MASK64 = (1 << 64) - 1

SSTATUS_READ, SSTATUS_WRITE, fix_sd = C.SSTATUS_READ, C.SSTATUS_WRITE, C.fix_sd
S_INTERRUPTS = (1 << C.IRQ_SSI) | (1 << C.IRQ_STI) | (1 << C.IRQ_SEI)


def _illegal(insn_raw: int) -> Trap:
    return Trap(C.ILLEGAL_INSN, insn_raw)


def _fs_on(hart: Hart) -> bool:
    return bool(hart.s.mstatus & C.MSTATUS_FS)


def _set_fs_dirty(hart: Hart) -> None:
    hart.s.mstatus = fix_sd(hart.s.mstatus | C.MSTATUS_FS)


class CsrContext:
    """What a CSR rule may touch: the machine and the hart performing the access."""

    def __init__(self, machine, hart: Hart, raw: int) -> None:
        self.m = machine
        self.h = hart
        self.raw = raw


# Rules: number -> (read(ctx) -> int, write(ctx, value) or None for read-only, required privilege)
Rule = tuple[Callable[[CsrContext], int], Callable[[CsrContext, int], None] | None, int]


def _r_sstatus(c: CsrContext) -> int:
    return fix_sd(c.h.s.mstatus | C.SSTATUS_UXL) & SSTATUS_READ


def _w_sstatus(c: CsrContext, v: int) -> None:
    old = c.h.s.mstatus
    new = fix_sd((old & ~SSTATUS_WRITE) | (v & SSTATUS_WRITE))
    c.h.s.mstatus = new
    if (old ^ new) & C.MSTATUS_MXR:
        c.m.mmu.flush(c.h)
    c.h.update_flags()
    c.m.request_exit(c.h)  # SIE may have unmasked a pending interrupt


def _r_sie(c: CsrContext) -> int:
    return c.h.mie & c.h.mideleg


def _w_sie(c: CsrContext, v: int) -> None:
    mask = c.h.mideleg & S_INTERRUPTS
    c.h.mie = (c.h.mie & ~mask) | (v & mask)
    c.m.request_exit(c.h)


def _r_sip(c: CsrContext) -> int:
    return c.h.mip & c.h.mideleg


def _w_sip(c: CsrContext, v: int) -> None:
    # Only SSIP is writable from S-mode (privileged spec 4.1.3).
    mask = c.h.mideleg & (1 << C.IRQ_SSI)
    c.h.mip = (c.h.mip & ~mask) | (v & mask)
    c.m.request_exit(c.h)


def _w_stvec(c: CsrContext, v: int) -> None:
    c.h.stvec = C.tvec(v, c.h.stvec)


def _w_satp(c: CsrContext, v: int) -> None:
    # Bare and Sv39 only: "If satp is written with an unsupported MODE, the entire write has no
    # effect" (privileged spec 4.1.11). ASIDs are not implemented (ASIDLEN = 0).
    mode = v >> 60
    if mode not in (0, 8):
        return
    new = v & ((0xF << 60) | ((1 << 44) - 1))
    if new != c.h.satp:
        c.h.satp = new
        c.m.mmu.flush(c.h, (0, 1, 2))
        c.m.tcache.jc_flush(c.h, "satp")


def platform_mtime(machine) -> int:
    """The time CSR's value: "The time CSR is a read-only shadow of the memory-mapped mtime
    register" (privileged spec 3.1.11), so it follows writes to mtime (the timer device keeps them
    as an offset against machine.time())."""
    timer = machine.device("timer")
    return machine.time() if timer is None else timer.mtime()


def _counter(which: str) -> Rule:
    def read(c: CsrContext) -> int:
        idx = {"cycle": 0, "time": 1, "instret": 2}[which]
        h = c.h
        if h.priv != C.PRV_M:
            if not h.counteren >> idx & 1:
                raise _illegal(c.raw)
            if h.priv == C.PRV_U and not h.scounteren >> idx & 1:
                raise _illegal(c.raw)
        if which == "time":
            return platform_mtime(c.m)
        return h.counter(idx, h.retired() - 1)  # The reading instruction is counted, not retired
    return (read, None, C.PRV_U)


def _fp(which: str) -> Rule:
    def read(c: CsrContext) -> int:
        if not _fs_on(c.h):
            raise _illegal(c.raw)
        s = c.h.s
        return {"fflags": s.fflags, "frm": s.frm, "fcsr": s.fflags | (s.frm << 5)}[which]

    def write(c: CsrContext, v: int) -> None:
        s = c.h.s
        if which == "fflags":
            s.fflags = v & 0x1F
        elif which == "frm":
            s.frm = v & 7
        else:
            s.fflags = v & 0x1F
            s.frm = (v >> 5) & 7
        _set_fs_dirty(c.h)
    return (read, write, C.PRV_U)


# S-level CSRs that only hold bits, with their write masks (sepc: IALIGN=16 keeps bit 0 zero, spec
# 4.1.7). They live in CSR slots, where generated code reads and writes them in place from S-mode
# (Machine maps them; translator/emit/system.py); these rules serve the rest (the monitor, the
# debugger, and the translator's callout when the slot table says no).
PLAIN_S_CSRS = {
    0x140: ("sscratch", SLOT_SSCRATCH, MASK64),
    0x141: ("sepc", SLOT_SEPC, ~1 & MASK64),
    0x142: ("scause", SLOT_SCAUSE, MASK64),
    0x143: ("stval", SLOT_STVAL, MASK64),
}


def _w_scounteren(c: CsrContext, v: int) -> None:
    c.h.scounteren = v & 0x7
    c.m.update_time_csr()  # U-mode reads of time may now be legal, or no longer


def _plain(attr: str, mask: int = MASK64) -> Rule:
    def read(c: CsrContext) -> int:
        return getattr(c.h, attr)

    def write(c: CsrContext, v: int) -> None:
        setattr(c.h, attr, v & mask)
    return (read, write, C.PRV_S)


S_CSRS: dict[int, Rule] = {
    0x001: _fp("fflags"),
    0x002: _fp("frm"),
    0x003: _fp("fcsr"),
    0xC00: _counter("cycle"),
    0xC01: _counter("time"),
    0xC02: _counter("instret"),
    0x100: (_r_sstatus, _w_sstatus, C.PRV_S),
    0x104: (_r_sie, _w_sie, C.PRV_S),
    0x105: (lambda c: c.h.stvec, _w_stvec, C.PRV_S),
    0x106: (lambda c: c.h.scounteren, _w_scounteren, C.PRV_S),
    0x10A: _plain("senvcfg", 0x1),
    **{num: _plain(attr, mask) for num, (attr, _slot, mask) in PLAIN_S_CSRS.items()},
    0x144: (_r_sip, _w_sip, C.PRV_S),
    0x180: (lambda c: c.h.satp, _w_satp, C.PRV_S),
}

FP_CSRS = (0x001, 0x002, 0x003)


@dataclass(frozen=True, slots=True)
class Zicsr:
    """What one CSR instruction does (unprivileged spec 9.1), for every CSR path of the machine,
    the monitor and the debugger (generated code: `zicsr` in translator/emit/system.py): csrrw
    "shall not read the CSR" if rd=x0; csrrs and csrrc "will not write to the CSR at all" if rs1
    is x0 (uimm is 0 for the immediate forms). `op` is w, s or c."""

    op: str
    reads: bool
    writes: bool
    rd: int = 0
    rs1: int = 0
    uimm: int | None = None  # Immediate forms: the 5-bit source

    @staticmethod
    def of(insn: Insn) -> Zicsr:
        op = insn.name[4]
        imm = insn.name.endswith("i")
        source_reg = insn.imm if imm else insn.rs1
        return Zicsr(op, op != "w" or insn.rd != 0, op == "w" or source_reg != 0, insn.rd, insn.rs1,
                     insn.imm if imm else None)

    def source(self, x) -> int:
        """The source value, given a register reader (x(r) -> int, x(0) need not be 0)."""
        if self.uimm is not None:
            return self.uimm
        return x(self.rs1) if self.rs1 else 0

    def new(self, old: int, src: int) -> int:
        """The value written."""
        if self.op == "w":
            return src & MASK64
        return (old | src) & MASK64 if self.op == "s" else old & ~src & MASK64


# What the debugger does: read a CSR, write one.
CSR_READ = Zicsr("s", reads=True, writes=False)
CSR_WRITE = Zicsr("w", reads=False, writes=True)


def csr_op(machine, hart: Hart, insn: Insn) -> None:
    """csrrw/csrrs/csrrc and immediates from S- and U-mode (Zicsr, chapter 9)."""
    num = insn.csr
    rule = S_CSRS.get(num)
    if hart.priv == C.PRV_M and num not in FP_CSRS:
        # Firmware world: physically U-mode, so this traps to the monitor.
        raise _illegal(insn.raw)
    if rule is None or hart.priv < rule[2]:
        raise _illegal(insn.raw)
    if num == 0x180 and hart.priv == C.PRV_S and hart.tvm:
        raise _illegal(insn.raw)
    read, write, _ = rule
    z = Zicsr.of(insn)
    if z.writes and (write is None or (num >> 10) == 3):
        raise _illegal(insn.raw)
    src = z.source(hart.get_x)
    ctx = CsrContext(machine, hart, insn.raw)
    old = read(ctx) if z.reads else 0
    if z.writes:
        write(ctx, z.new(old, src))
    hart.set_x(insn.rd, old)


def sret(hart: Hart) -> int:
    """The S-level return (privileged spec 3.3.2): SIE = SPIE, SPIE = 1, SPP = U, pc = sepc; returns
    the privilege to return to (the old SPP). The caller switches to it (and, from virtual M-mode,
    clears MPRV: the monitor)."""
    s = hart.s
    ms = s.mstatus
    spp = C.PRV_S if ms & C.MSTATUS_SPP else C.PRV_U
    ms = (ms & ~C.MSTATUS_SIE) | (C.MSTATUS_SIE if ms & C.MSTATUS_SPIE else 0)
    s.mstatus = (ms | C.MSTATUS_SPIE) & ~C.MSTATUS_SPP
    hart.pc = hart.sepc
    return spp


def execute(machine, hart: Hart, insn: Insn, pc: int) -> None:
    """Performs a system instruction; pc already points past it. Raises Trap on a fault."""
    name = insn.name
    priv = hart.priv
    if name.startswith("csrr"):
        csr_op(machine, hart, insn)
    elif name == "ecall":
        raise Trap({C.PRV_U: C.ECALL_U, C.PRV_S: C.ECALL_S, C.PRV_M: C.ECALL_U}[priv], 0)
    elif name == "ebreak":
        raise Trap(C.BREAKPOINT, pc)
    elif name == "fence.i":
        # Stores to translated code were caught when they happened; nothing is stale here.
        machine.tcache.fence_i += 1
    elif priv == C.PRV_M:
        raise _illegal(insn.raw)  # mret, sret, wfi, sfence.vma of the firmware: the monitor's
    elif name == "sret":
        if priv == C.PRV_U or (priv == C.PRV_S and hart.tsr):
            raise _illegal(insn.raw)
        machine.set_priv(hart, sret(hart))
        machine.request_exit(hart)
    elif name == "wfi":
        if priv == C.PRV_U or hart.tw:
            raise _illegal(insn.raw)
        hart.wfi = True
        hart.s.exit_now = 1
    elif name == "sfence.vma":
        if priv == C.PRV_U or hart.tvm:
            raise _illegal(insn.raw)
        machine.sfence_vma(hart, hart.get_x(insn.rs1) if insn.rs1 else None)
    elif name == "mret":
        raise _illegal(insn.raw)  # From S or U: mret is M-only
    else:
        raise _illegal(insn.raw)
