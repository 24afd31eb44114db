"""The virtual firmware monitor: firmware runs in virtual M-mode (physically U-mode), the OS in S/U.

Every M-level event reaches `on_trap`/`on_interrupt`: the firmware's privileged instructions arrive
as illegal-instruction traps and are emulated against the virtual CSR file; other firmware traps
are injected through the virtual mtvec; OS traps to M-level switch worlds and are injected into
the firmware the same way, unless the offload fast path (vfm/offload.py) handles them in the
monitor. An mret to S or U switches back to the OS world. The virtual PMP (vfm/pmp.py) and the
monitor's own memory are enforced by the softmmu. Security policies (vfm/policy/, `--policy`) hook
the world switches, the firmware's accesses to guarded memory, CSR writes and interrupts.

Exit statistics (`Monitor.stats`, written under "vfm" by `mirage jit-run --stats FILE`), a dict:
  "csr":            {CSR name: n}   CSR instructions of the firmware, emulated
  "mret", "sret", "wfi", "sfence.vma": n   other privileged instructions of the firmware, emulated
  "firmware_traps": {cause: n}      exceptions of the firmware injected into its own mtvec
  "os_traps":       {cause: n}      OS-world exceptions that reached M-level (not delegated to S)
  "sbi":            {extension: {function: n}}   ecalls from S-mode by SBI extension and function,
                                    e.g. {"TIME": {"set_timer": 3}, "legacy": {"console_putchar": 9}};
                                    unknown extensions in hex, unknown functions in decimal
  "interrupts":     {"MSI"|"MTI"|"MEI"|"SSI"|"STI"|"SEI": n}   M-level interrupts the monitor took
  "world_switches": {"to_firmware": n, "to_os": n}
  "offloaded":      {kind: n}       handled by the fast path without the firmware: set_timer,
                                    timer_interrupt, send_ipi, remote_fence_i, remote_sfence_vma,
                                    remote_sfence_vma_asid, misaligned_load, misaligned_store
  "policies":       {name: {...}}   only with --policy: each policy's counters (vfm/policy/)
Causes are named as in vfm/causes.py ("illegal_insn", "ecall_s", "load_page_fault", ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runtime.core import system
from runtime.core.hart import Hart, Trap
from runtime.core.machine_api import REG_PC as PC
from runtime.core.machine_api import REG_RESV as RESV
from runtime.core.machine_api import MachineInterface
from translator import csrs as C
from translator.csrs import (  # Module globals: cheaper than C.X on the hot paths
    ECALL_M,
    ECALL_S,
    ECALL_U,
    ILLEGAL_INSN,
    INTERRUPT_BIT,
    IRQ_MEI,
    IRQ_MSI,
    IRQ_MTI,
    IRQ_SEI,
    IRQ_SSI,
    IRQ_STI,
    MSTATUS_MIE,
    MSTATUS_MPIE,
    MSTATUS_MPP,
    MSTATUS_MPRV,
    MSTATUS_TSR,
    MSTATUS_TVM,
    MSTATUS_TW,
    PRV_M,
    PRV_S,
)
from translator.isa import decode
from vfm import csr as vcsr
from vfm import sbi
from vfm.causes import IRQ_NAMES, cause_name
from vfm.pmp import VirtualPmp
from vfm.policy.base import Policy, PolicyGuard, Switch

MASK64 = (1 << 64) - 1
MIP_MTIP = 1 << IRQ_MTI
ECALL = 0x00000073
# Physical memory the monitor keeps for itself above the guest's RAM (`mirage jit-run` reserves it
# and leaves it out of the device tree): no guest may read, write or execute it.
MONITOR_RAM = 2 << 20
MONITOR_MAGIC = b"mirage-vfm\0"


class ExitCounters:
    """The monitor's counters, cheap to bump on the hot paths; `as_dict` gives the layout above."""

    def __init__(self) -> None:
        self.csr = [0] * 4096  # By CSR number
        self.mret = self.sret = self.wfi = self.sfence_vma = 0
        self.firmware_traps: Counter[str] = Counter()
        self.os_traps = [0] * 64  # By cause
        self.sbi: dict[tuple[int, int], int] = {}  # (extension ID, function ID) -> calls
        self.interrupts: Counter[str] = Counter()
        self.to_firmware = self.to_os = 0
        self.offloaded: Counter[str] = Counter()

    def as_dict(self) -> dict:
        sbi_calls: dict[str, dict[str, int]] = {}
        for (eid, fid), n in sorted(self.sbi.items()):
            ext, fn = sbi.call_name(eid, fid)
            by_fn = sbi_calls.setdefault(ext, {})
            by_fn[fn] = by_fn.get(fn, 0) + n
        return {
            "csr": {C.csr_name(num): n for num, n in enumerate(self.csr) if n},
            "mret": self.mret, "sret": self.sret, "wfi": self.wfi, "sfence.vma": self.sfence_vma,
            "firmware_traps": dict(self.firmware_traps),
            "os_traps": {cause_name(c): n for c, n in enumerate(self.os_traps) if n},
            "sbi": sbi_calls,
            "interrupts": dict(self.interrupts),
            "world_switches": {"to_firmware": self.to_firmware, "to_os": self.to_os},
            "offloaded": dict(self.offloaded),
        }


@dataclass(slots=True)
class HartContext:
    """Per-hart monitor state."""

    csr: vcsr.VirtualCsrs = field(default_factory=vcsr.VirtualCsrs)
    world_switches: int = 0
    acc: vcsr.Access | None = None  # What CSR rules act on, for this hart
    regs: memoryview | None = None  # The hart's registers (MachineInterface.reg_view: x, PC, RESV)
    mprv_used: bool = False  # The firmware made MPRV accesses while a policy guards memory


class Monitor:
    """M-level of a Mirage machine.

    `offload` turns on the fast path of vfm/offload.py (SBI timer, IPI and remote fences, and
    misaligned accesses of the OS, handled without entering the firmware). `reserved` lists
    (base, size) ranges of physical memory that belong to the monitor: every guest access there
    faults, whatever the privilege and the PMP. `policies` (vfm/policy/) restrict the firmware;
    `os_memory` is the [lo, hi) range of RAM the OS owns once the firmware first hands over to it.
    """

    def __init__(self, offload: bool = True, reserved: list[tuple[int, int]] | None = None,
                 policies: list[Policy] | None = None, os_memory: tuple[int, int] | None = None,
                 firmware: str | None = None) -> None:
        self.machine: MachineInterface | None = None
        self.firmware = firmware  # Which SBI implementation the firmware is (vfm/sbi.py firmware_name)
        self.ctx: dict[int, HartContext] = {}
        self.n = ExitCounters()
        self.reserved = list(reserved or [])
        self.pmp = VirtualPmp(self.reserved)
        self.policies = list(policies or [])
        self.os_memory = os_memory
        self.guard: PolicyGuard | None = None  # With policies that guard memory
        self._watchers = [p for p in self.policies if p.watches_firmware]
        # CSR number -> policies that see the firmware's writes to it
        self.csr_watch: dict[int, list[Policy]] = {}
        for p in self.policies:
            for num in p.csr_writes:
                self.csr_watch.setdefault(num, []).append(p)
        # Fast-path hooks, tried in order before an OS-world trap goes to the firmware:
        # ecall_handlers: fn(hart, epc) -> bool (handled); trap_handlers: fn(hart, cause, tval, epc) -> bool.
        self.ecall_handlers: list = []
        self.trap_handlers: list = []
        self.offload = None
        self._fast: dict[int, object] = {}  # Instruction word -> its fast emulation, or False
        if offload:
            from vfm.offload import Offload

            self.offload = Offload(self)

    @property
    def stats(self) -> dict:
        """The exit statistics (layout in the module docstring)."""
        d = self.n.as_dict()
        if self.policies:
            d["policies"] = {p.name: p.stats() for p in self.policies}
        return d

    def close(self) -> None:
        """The run ended: policies flush what they write."""
        for p in self.policies:
            p.close()

    def attach(self, machine: MachineInterface) -> None:
        self.machine = machine
        slots = {name: machine.csr_slot() for name, _mask in vcsr.SLOT_CSRS.values()}
        for h in machine.harts:
            self.ctx[h.id] = HartContext()
            self.ctx[h.id].csr.bind(h, slots)
            self.ctx[h.id].acc = vcsr.Access(self, h, 0)
            self.ctx[h.id].regs = machine.reg_view(h)
        machine.attach_monitor(self, self.fast_sys)
        logged = machine.trace is not None and machine.trace.vfm_on  # -d vfm logs each access
        for num, (name, mask) in vcsr.SLOT_CSRS.items():
            if num not in self.csr_watch and not logged:
                machine.map_csr(PRV_M, num, slots[name], mask)
        for base, _size in self.reserved:
            machine.write_phys(base, MONITOR_MAGIC)
        for p in self.policies:
            p.attach(self)
        self.guard_changed()
        if self.offload is not None:
            self.offload.attach(machine)

    def guard_changed(self) -> None:
        """Installs the access guard for the policies' current memory ranges: the virtual PMP
        alone when no policy guards memory (the default), else the PMP and the policies."""
        guard = PolicyGuard(self.pmp, self.policies)
        self.guard = guard if guard.active else None
        self.machine.set_access_guard(self.guard or self.pmp)

    # Boot
    def reset(self, hart: Hart, entry: int, a0: int, a1: int, a2: int = 0) -> None:
        """Starts the firmware at its entry in virtual M-mode (a0 = hartid, a1 = DTB)."""
        hart.pc = entry
        hart.set_x(10, a0)
        hart.set_x(11, a1)
        hart.set_x(12, a2)
        self.machine.set_priv(hart, PRV_M)

    # Traps
    def trap_vector(self, hart: Hart) -> int:
        """The firmware's (virtual) mtvec, for messages about traps."""
        return self.ctx[hart.id].csr.mtvec

    def on_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        trace = self.machine.trace
        if hart.priv == PRV_M:
            if cause == ILLEGAL_INSN and self._emulate(hart, tval, epc):
                hart.retired_base += 1  # The emulated instruction retired
                return
            if cause == ECALL_U:
                cause = ECALL_M  # The firmware believes it is in M-mode
            self.n.firmware_traps[cause_name(cause)] += 1
            if trace is not None:
                trace.vfm(hart, f"inject cause={cause} tval={tval:#x} epc={epc:#x} into firmware")
            self.inject(hart, cause, tval, epc)
            return
        self.os_trap(hart, cause, tval, epc)

    def os_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        """An exception of the OS world that reached M-level: it goes to the firmware, which runs in
        virtual M-mode, unless a fast-path handler takes it."""
        n = self.n
        n.os_traps[cause & 63] += 1
        if cause == ECALL_S:
            regs = self.ctx[hart.id].regs
            key = (regs[17], regs[16])
            n.sbi[key] = n.sbi.get(key, 0) + 1
            for handler in self.ecall_handlers:
                if handler(hart, epc):
                    return
        for handler in self.trap_handlers:
            if handler(hart, cause, tval, epc):
                return
        self.to_firmware(hart, cause, tval, epc)

    def on_interrupt(self, hart: Hart, irq: int) -> None:
        self.n.interrupts[IRQ_NAMES.get(irq, str(irq))] += 1
        if self.policies:
            for p in self.policies:
                if p.interrupt(hart, irq):
                    return
        if irq == IRQ_MTI and self.offload is not None and self.offload.timer_interrupt(hart):
            # The OS's timer fired: STIP is now pending; deliver it at once if enabled.
            self.machine.check_interrupts(hart)
            return
        self.to_firmware(hart, INTERRUPT_BIT | irq, 0, hart.pc)

    def to_firmware(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        if hart.priv != PRV_M:
            self.ctx[hart.id].world_switches += 1
            self.n.to_firmware += 1
            if self.machine.trace is not None:
                self.machine.trace.vfm(hart, f"world switch OS->firmware cause={cause:#x} epc={epc:#x}")
            if self.policies:
                sw = Switch(cause, tval, epc, hart.priv)
                if cause == ECALL_S:
                    regs = self.ctx[hart.id].regs
                    sw.eid, sw.fid = regs[17], regs[16]
                for p in self.policies:
                    p.to_firmware(hart, sw)
            # The trap-virtualization bits bind only the OS (privileged spec 3.1.6.5).
            hart.tvm = hart.tw = hart.tsr = False
        self.inject(hart, cause, tval, epc)

    def inject(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        """Virtual trap entry into the firmware (privileged spec 3.1.6.1 and 3.1.7): MPIE = MIE,
        MIE = 0, MPP = the privilege trapped from; mepc, mcause, mtval; pc = mtvec (vectored
        interrupts at base + 4 * cause)."""
        ctx = self.ctx[hart.id]
        v = ctx.csr
        ms = v.mstatus_m
        ms = (ms & ~(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP)) | (hart.priv << 11)
        if v.mstatus_m & MSTATUS_MIE:
            ms |= MSTATUS_MPIE
        v.mstatus_m = ms
        v.mepc = epc & ~1 & MASK64
        v.mcause = cause
        v.mtval = tval & MASK64
        tvec = v.mtvec
        if cause & INTERRUPT_BIT and tvec & 1:
            ctx.regs[PC] = (tvec & ~3) + 4 * (cause & 0x3F)
        else:
            ctx.regs[PC] = tvec & ~3
        hart.priv = PRV_M
        if ms & MSTATUS_MPRV or hart.fw_data_mmu is not None:
            self.mprv_changed(hart)  # MPP changed: so did the MMU of MPRV accesses
        else:
            hart.update_flags()

    # Fast path: the machine's system callout offers every system instruction here first
    def fast_sys(self, hart: Hart, raw: int, pc: int) -> bool:
        """Performs the firmware's CSR instructions on M-level CSRs and mret, and the OS's ecalls
        that reach M-level, without the general trap path (decoding, a Trap, take_trap); returns
        False to leave the instruction to that path. The effects are the same: what this does is
        what `on_trap` would do once the instruction had trapped."""
        if self.machine.trace is not None:
            return False  # The general path logs every step
        if hart.priv != PRV_M:
            if raw != ECALL:
                return False
            # ecall (privileged spec 3.3.1): not retired; delegated ones go to S the general way.
            cause = ECALL_S if hart.priv == PRV_S else ECALL_U
            if hart.medeleg >> cause & 1:
                return False
            hart.retired_base -= 1
            self.ctx[hart.id].regs[RESV] = MASK64  # As take_trap: a trap drops the LR reservation
            self.os_trap(hart, cause, 0, pc)
            return True
        fn = self._fast.get(raw)
        if fn is None:
            fn = self._fast[raw] = self._compile(raw)
        if fn is False:
            return False
        fn(hart, pc)
        return True

    def _compile(self, raw: int):
        insn = decode(raw)
        if insn is None:
            return False
        if insn.name == "mret":
            n = self.n

            def mret(hart: Hart, pc: int) -> None:
                n.mret += 1
                self.mret(hart)
            return mret
        if not insn.name.startswith("csrr"):
            return False
        if insn.csr in self.csr_watch:
            return False  # A policy sees writes to it: the general path asks it
        op = vcsr.fast_op(insn)
        if op is None:
            return False
        ctxs, counts, num, length = self.ctx, self.n.csr, insn.csr, insn.length
        if num in vcsr.COUNTERS:
            def counter(hart: Hart, pc: int) -> None:
                # The counter rules see the instruction as not retired yet, as on the trap path.
                counts[num] += 1
                ctx = ctxs[hart.id]
                regs = ctx.regs
                hart.retired_base -= 1
                op(ctx.acc, regs)
                hart.retired_base += 1
                regs[PC] = pc + length
            return counter

        def csr(hart: Hart, pc: int) -> None:
            counts[num] += 1
            ctx = ctxs[hart.id]
            regs = ctx.regs
            op(ctx.acc, regs)
            regs[PC] = pc + length
        return csr

    # Instruction emulation for virtual M-mode
    def _emulate(self, hart: Hart, raw: int, epc: int) -> bool:
        insn = decode(raw)
        if insn is None:
            return False
        length = insn.length
        name = insn.name
        try:
            if name.startswith("csrr"):
                self.n.csr[insn.csr] += 1
                z = system.Zicsr.of(insn)
                old = vcsr.read_write(self, hart, insn.csr, raw, z, z.source(hart.get_x))
                hart.set_x(insn.rd, old)
                hart.pc = epc + length
                if self.machine.trace is not None:
                    self.machine.trace.vfm(hart, f"emulate {name} {C.csr_name(insn.csr)} at {epc:#x}")
                return True
            if name == "mret":
                self.n.mret += 1
                self.mret(hart)
                return True
            if name == "sret":
                # xRET is allowed at privilege x or higher (privileged spec 3.3.2).
                self.n.sret += 1
                self.sret(hart)
                return True
            if name == "wfi":
                self.n.wfi += 1
                hart.pc = epc + length
                hart.wfi = True
                hart.s.exit_now = 1
                return True
            if name == "sfence.vma":
                self.n.sfence_vma += 1
                self.machine.sfence_vma(hart)
                hart.pc = epc + length
                return True
        except Trap as t:
            # The emulated instruction itself is illegal in virtual M-mode.
            self.n.firmware_traps[cause_name(t.cause)] += 1
            self.inject(hart, t.cause, t.tval, epc)
            return True
        return False

    def mret(self, hart: Hart) -> None:
        """mret (privileged spec 3.3.2): MIE = MPIE, MPIE = 1, priv = MPP, MPP = U; MPRV = 0 when
        leaving for a lower privilege."""
        ctx = self.ctx[hart.id]
        v = ctx.csr
        ms = v.mstatus_m
        mpp = (ms >> 11) & 3
        ms = (ms & ~(MSTATUS_MIE | MSTATUS_MPP)) | MSTATUS_MPIE | (MSTATUS_MIE if ms & MSTATUS_MPIE else 0)
        if mpp != PRV_M:
            ms &= ~MSTATUS_MPRV
        v.mstatus_m = ms
        ctx.regs[PC] = v.mepc
        if mpp == PRV_M:
            self.mprv_changed(hart)
            if hart.mip & hart.mie:
                self.machine.request_exit(hart)  # MIE may have unmasked a pending interrupt
            return
        if self.machine.trace is not None:
            self.machine.trace.vfm(hart, f"world switch firmware->OS priv={mpp} pc={v.mepc:#x}")
        self._enter_os(hart, ctx, mpp)

    def sret(self, hart: Hart) -> None:
        """sret from virtual M-mode: S-level return to sstatus.SPP (privileged spec 3.3.2)."""
        spp = system.sret(hart)
        ctx = self.ctx[hart.id]
        ctx.csr.mstatus_m &= ~MSTATUS_MPRV  # Leaving M for a lower privilege clears MPRV
        if self.machine.trace is not None:
            self.machine.trace.vfm(hart, f"world switch firmware->OS (sret) priv={spp} pc={hart.sepc:#x}")
        self._enter_os(hart, ctx, spp)

    # World switch
    def _enter_os(self, hart: Hart, ctx: HartContext, priv: int) -> None:
        """Firmware -> OS: the OS runs with the firmware's trap-virtualization bits (TVM, TW, TSR)
        and its own translation."""
        self.n.to_os += 1
        ctx.world_switches += 1
        ms = ctx.csr.mstatus_m
        hart.fw_data_mmu = None
        if self.policies:
            for p in self.policies:
                priv = p.to_os(hart, priv)
            if ctx.mprv_used:
                # The firmware's MPRV accesses filled OS-world TLBs under its own view (a policy
                # may have hidden satp): the OS gets them back empty.
                ctx.mprv_used = False
                self.machine.flush_tlb(hart, "os")
        hart.tvm = bool(ms & MSTATUS_TVM)
        hart.tw = bool(ms & MSTATUS_TW)
        hart.tsr = bool(ms & MSTATUS_TSR)
        hart.priv = priv
        hart.update_flags()
        if hart.mip & hart.mie:
            self.machine.request_exit(hart)  # An interrupt may be taken in the OS at once

    # MPRV: firmware data accesses through the OS's translation (privileged spec 3.1.6.3)
    def mprv_changed(self, hart: Hart) -> None:
        ctx = self.ctx[hart.id]
        ms = ctx.csr.mstatus_m
        if self.machine.set_mprv(hart, (ms >> 11) & 3 if ms & MSTATUS_MPRV else None) and self.guard is not None:
            # OS-world TLB entries would let MPRV accesses skip the guard: drop them.
            ctx.mprv_used = True
            self.machine.flush_tlb(hart, "mprv")

    def leave_firmware(self, hart: Hart) -> None:
        """Ends the firmware's turn at once (a policy's decision): back to the OS, where and as
        the policies' `to_os` say."""
        self._enter_os(hart, self.ctx[hart.id], PRV_S)

    def pmp_changed(self, hart: Hart) -> None:
        """A pmpcfg/pmpaddr write: re-decode, and drop fast-path TLB entries and jump-cache entries
        filled under the old rules (fetches are checked when a block is looked up)."""
        v = self.ctx[hart.id].csr
        self.pmp.update(hart, v.pmpcfg, v.pmpaddr)
        self.machine.guard_changed(hart)

    # Interrupts at M-level
    def external_seip(self, hart: Hart) -> int:
        return 0

    def pending_m_interrupt(self, hart: Hart) -> int | None:
        """The M-level interrupt to take now, if any (privileged spec 3.1.9: M-level interrupts are
        enabled when running below M, or in M with mstatus.MIE; priority MEI, MSI, MTI, SEI, SSI, STI)."""
        if self._watchers and hart.priv == PRV_M:
            for p in self._watchers:
                p.firmware_tick(hart)
        mip = hart.mip
        if mip & MIP_MTIP and self.offload is not None and self.offload.timer_due(hart):
            return IRQ_MTI  # The OS's timer, armed by an offloaded set_timer: the monitor's own
        pending = mip & hart.mie & ~hart.mideleg
        if not pending:
            return None
        if hart.priv == PRV_M:
            if not self.ctx[hart.id].csr.mstatus_m & MSTATUS_MIE:
                if hart.wfi:
                    hart.wfi = False  # wfi wakes on a pending interrupt even when disabled
                return None
        for irq in (IRQ_MEI, IRQ_MSI, IRQ_MTI, IRQ_SEI, IRQ_SSI, IRQ_STI):
            if pending >> irq & 1:
                return irq
        return None
