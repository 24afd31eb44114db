"""The virtual firmware monitor: firmware runs in virtual M-mode (physically U-mode), the OS in S/U.

Every M-level event reaches `on_trap`/`on_interrupt`: the firmware's privileged instructions arrive
as illegal-instruction traps and are emulated against the virtual CSR file; other firmware traps
are injected through the virtual mtvec; OS traps to M-level switch worlds and are injected into
the firmware the same way. An mret to S or U switches back to the OS world.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runtime.hart import Hart, Trap
from translator import abi
from translator import csrs as C
from translator.isa import decode
from vfm import csr as vcsr

MASK64 = (1 << 64) - 1


@dataclass
class HartContext:
    """Per-hart monitor state."""

    csr: vcsr.VirtualCsrs = field(default_factory=vcsr.VirtualCsrs)
    world_switches: int = 0


class Monitor:
    """M-level of a Mirage machine."""

    def __init__(self) -> None:
        self.machine = None
        self.ctx: dict[int, HartContext] = {}
        self.stats: Counter[str] = Counter()
        self.ecall_handlers: list = []  # Offload hooks: fn(hart, ctx) -> bool (handled)

    def attach(self, machine) -> None:
        self.machine = machine
        machine.monitor = self
        for h in machine.harts:
            self.ctx[h.id] = HartContext()

    # Boot
    def reset(self, hart: Hart, entry: int, a0: int, a1: int, a2: int = 0) -> None:
        """Starts the firmware at its entry in virtual M-mode (a0 = hartid, a1 = DTB)."""
        hart.pc = entry
        hart.set_x(10, a0)
        hart.set_x(11, a1)
        hart.set_x(12, a2)
        self.machine.set_priv(hart, C.PRV_M)

    # Traps
    def on_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        trace = self.machine.trace
        if hart.priv == C.PRV_M:
            if cause == C.ILLEGAL_INSN and self._emulate(hart, tval, epc):
                hart.retired_base += 1  # The emulated instruction retired
                return
            if cause == C.ECALL_U:
                cause = C.ECALL_M  # The firmware believes it is in M-mode
            self.stats[f"firmware-trap:{cause}"] += 1
            if trace is not None:
                trace.vfm(hart, f"inject cause={cause} tval={tval:#x} epc={epc:#x} into firmware")
            self.inject(hart, cause, tval, epc)
            return
        # OS world: the trap goes to the firmware, which runs in virtual M-mode.
        self.stats[f"os-trap:{cause}"] += 1
        if cause in (C.ECALL_S, C.ECALL_U):
            self.stats[f"ecall:{hart.get_x(17):#x}:{hart.get_x(16)}"] += 1
            for handler in self.ecall_handlers:
                if handler(hart, self.ctx[hart.id]):
                    self.stats["offloaded"] += 1
                    return
        self.to_firmware(hart, cause, tval, epc)

    def on_interrupt(self, hart: Hart, irq: int) -> None:
        self.stats[f"interrupt:{irq}"] += 1
        self.to_firmware(hart, C.INTERRUPT_BIT | irq, 0, hart.pc)

    def to_firmware(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        if hart.priv != C.PRV_M:
            self.ctx[hart.id].world_switches += 1
            self.stats["world-switch"] += 1
            if self.machine.trace is not None:
                self.machine.trace.vfm(hart, f"world switch OS->firmware cause={cause:#x} epc={epc:#x}")
            self._leave_os(hart)
        self.inject(hart, cause, tval, epc)

    def inject(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        """Virtual trap entry into the firmware (privileged spec 3.1.6.1 and 3.1.7)."""
        v = self.ctx[hart.id].csr
        from_priv = hart.priv if hart.priv != C.PRV_M else C.PRV_M
        ms = v.mstatus_m
        ms = (ms & ~C.MSTATUS_MPIE) | (C.MSTATUS_MPIE if ms & C.MSTATUS_MIE else 0)
        ms &= ~C.MSTATUS_MIE
        ms = (ms & ~C.MSTATUS_MPP) | (from_priv << 11)
        v.mstatus_m = ms
        v.mepc = epc & ~1 & MASK64
        v.mcause = cause
        v.mtval = tval & MASK64
        base = v.mtvec & ~3
        if cause & C.INTERRUPT_BIT and v.mtvec & 1:
            hart.pc = base + 4 * (cause & 0x3F)
        else:
            hart.pc = base
        if hart.priv != C.PRV_M:
            self.machine.set_priv(hart, C.PRV_M)
        self.mprv_changed(hart)

    # Instruction emulation for virtual M-mode
    def _emulate(self, hart: Hart, raw: int, epc: int) -> bool:
        insn = decode(raw)
        if insn is None:
            return False
        length = insn.length
        name = insn.name
        try:
            if name.startswith("csrr"):
                self.stats[f"csr:{C.csr_name(insn.csr)}"] += 1
                imm = name.endswith("i")
                src = insn.imm if imm else hart.get_x(insn.rs1)
                writes = name.startswith("csrrw") or (insn.imm if imm else insn.rs1) != 0
                op = name[4]
                old = vcsr.read_write(self, hart, insn.csr, raw, op, src, insn.rd, writes)
                hart.set_x(insn.rd, old)
                hart.pc = epc + length
                if self.machine.trace is not None:
                    self.machine.trace.vfm(hart, f"emulate {name} {C.csr_name(insn.csr)} at {epc:#x}")
                return True
            if name == "mret":
                self.stats["mret"] += 1
                self.mret(hart)
                return True
            if name == "sret":
                # xRET is allowed at privilege x or higher (privileged spec 3.3.2).
                self.stats["sret"] += 1
                self.sret(hart)
                return True
            if name == "wfi":
                self.stats["wfi"] += 1
                hart.pc = epc + length
                hart.wfi = True
                hart.s.exit_now = 1
                return True
            if name == "sfence.vma":
                self.stats["sfence.vma"] += 1
                self.machine.mmu.flush(hart, (0, 1, 2))
                self.machine.tcache.jc_flush(hart, "sfence.vma")
                hart.pc = epc + length
                return True
        except Trap as t:
            # The emulated instruction itself is illegal in virtual M-mode.
            self.inject(hart, t.cause, t.tval, epc)
            return True
        return False

    def mret(self, hart: Hart) -> None:
        """mret (privileged spec 3.3.2): MIE = MPIE, MPIE = 1, priv = MPP, MPP = U; MPRV = 0 when
        leaving for a lower privilege."""
        v = self.ctx[hart.id].csr
        ms = v.mstatus_m
        mpp = (ms >> 11) & 3
        ms = (ms & ~C.MSTATUS_MIE) | (C.MSTATUS_MIE if ms & C.MSTATUS_MPIE else 0)
        ms |= C.MSTATUS_MPIE
        ms &= ~C.MSTATUS_MPP
        if mpp != C.PRV_M:
            ms &= ~C.MSTATUS_MPRV
        v.mstatus_m = ms
        hart.pc = v.mepc
        if mpp == C.PRV_M:
            self.mprv_changed(hart)
            self.machine.request_exit(hart)
            return
        self.stats["world-switch"] += 1
        self.ctx[hart.id].world_switches += 1
        if self.machine.trace is not None:
            self.machine.trace.vfm(hart, f"world switch firmware->OS priv={mpp} pc={v.mepc:#x}")
        self._enter_os(hart, mpp)

    def sret(self, hart: Hart) -> None:
        """sret from virtual M-mode: S-level return to sstatus.SPP (privileged spec 3.3.2)."""
        s = hart.s
        ms = s.mstatus
        spp = C.PRV_S if ms & C.MSTATUS_SPP else C.PRV_U
        ms = (ms & ~C.MSTATUS_SIE) | (C.MSTATUS_SIE if ms & C.MSTATUS_SPIE else 0)
        s.mstatus = (ms | C.MSTATUS_SPIE) & ~C.MSTATUS_SPP
        v = self.ctx[hart.id].csr
        v.mstatus_m &= ~C.MSTATUS_MPRV  # Leaving M for a lower privilege clears MPRV
        hart.pc = hart.sepc
        self.stats["world-switch"] += 1
        self.ctx[hart.id].world_switches += 1
        self._enter_os(hart, spp)

    # World switch
    def _enter_os(self, hart: Hart, priv: int) -> None:
        v = self.ctx[hart.id].csr
        hart.fw_data_mmu = None
        hart.tvm = bool(v.mstatus_m & C.MSTATUS_TVM)
        hart.tw = bool(v.mstatus_m & C.MSTATUS_TW)
        hart.tsr = bool(v.mstatus_m & C.MSTATUS_TSR)
        self.machine.set_priv(hart, priv)
        self.machine.request_exit(hart)

    def _leave_os(self, hart: Hart) -> None:
        hart.tvm = hart.tw = hart.tsr = False

    # MPRV: firmware data accesses through the OS's translation (privileged spec 3.1.6.3)
    def mprv_changed(self, hart: Hart) -> None:
        v = self.ctx[hart.id].csr
        mmu = None
        if v.mstatus_m & C.MSTATUS_MPRV:
            mpp = (v.mstatus_m >> 11) & 3
            if mpp == C.PRV_U:
                mmu = abi.MMU_U
            elif mpp == C.PRV_S:
                mmu = abi.MMU_S_SUM if hart.s.mstatus & C.MSTATUS_SUM else abi.MMU_S
        if mmu != hart.fw_data_mmu:
            hart.fw_data_mmu = mmu
        hart.update_flags()

    def pmp_changed(self, hart: Hart) -> None:
        self.machine.mmu.flush(hart, (0, 1, 2))

    # Interrupts at M-level
    def external_seip(self, hart: Hart) -> int:
        return 0

    def pending_m_interrupt(self, hart: Hart) -> int | None:
        """The M-level interrupt to take now, if any (privileged spec 3.1.9: M-level interrupts are
        enabled when running below M, or in M with mstatus.MIE; priority MEI, MSI, MTI, SEI, SSI, STI)."""
        pending = hart.mip & hart.mie & ~hart.mideleg
        if not pending:
            return None
        if hart.priv == C.PRV_M:
            if not self.ctx[hart.id].csr.mstatus_m & C.MSTATUS_MIE:
                if hart.wfi:
                    hart.wfi = False  # wfi wakes on a pending interrupt even when disabled
                return None
        for irq in (C.IRQ_MEI, C.IRQ_MSI, C.IRQ_MTI, C.IRQ_SEI, C.IRQ_SSI, C.IRQ_STI):
            if pending >> irq & 1:
                return irq
        return None
