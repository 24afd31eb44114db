"""The offload fast path: frequent requests of the OS handled by the monitor itself, without a
world switch into the firmware (Miralis's `offload` policy). On by default; `mirage jit-run
--no-offload` sends everything to the firmware.

What it handles, for S-mode ecalls (SBI v2.0) and OS-world traps that were not delegated:
- set_timer (legacy EID 0x00 and TIME 0x54494D45 FID 0): programs this hart's mtimecmp in the
  platform timer (the CLINT) and clears mip.STIP (SBI 6.1: "clears the pending timer interrupt
  bit"). When that deadline passes, the monitor takes the machine timer interrupt itself and does
  what OpenSBI's handler does: it sets mip.STIP for the OS and disarms the timer (mtimecmp =
  all-ones clears MTIP; privileged spec 3.2.1). A deadline the firmware reprogrammed is the
  firmware's again.
- console_putchar (legacy EID 0x01), for OpenSBI only: the byte goes to the console device (the
  UART on qemu-virt) as OpenSBI's `sbi_putc` sends it there (lib/sbi/sbi_console.c: "\r" before
  each "\n"); a0 = 0 and a1 kept, as for every SBI v0.1 call. A boot prints its early log this
  way, a character per call: each one was a world switch into the firmware and its UART driver.
- send_ipi (IPI 0x735049 FID 0): sets mip.SSIP of each target hart (what OpenSBI's IPI handler
  does on the receiver).
- remote_fence_i, remote_sfence_vma, remote_sfence_vma_asid (RFNC 0x52464E43 FID 0-2): performed
  on each target hart: fence.i needs nothing (stores to translated code already invalidated it),
  sfence.vma flushes the hart's TLBs and jump cache (no ASIDs, so the ASID form flushes all).
- misaligned loads and stores of the OS (mcause 4 / 6): emulated byte by byte through the OS's own
  translation (the machine's `misaligned_load`/`misaligned_store`), as OpenSBI's misaligned
  handler would; a fault on the way is raised as that fault at the instruction (to S if
  delegated, else to the firmware). AMOs and LR/SC are not emulated.

Targets are hart_mask/hart_mask_base as in SBI 3.1: base -1 means every hart; a bit naming a hart
that does not exist fails the call with SBI_ERR_INVALID_PARAM. Results: a0 = error, a1 = value
(legacy calls set only a0: SBI v0.1), pc past the ecall. rdtime needs no help: the time CSR is readable from
S/U natively once the firmware sets mcounteren.TM (OpenSBI does).
"""

from __future__ import annotations

from runtime.core.device import Console, Timer
from runtime.core.hart import Hart, Trap
from runtime.core.machine_api import REG_PC as PC
from runtime.core.machine_api import MachineInterface
from runtime.core.system import fix_sd
from translator import csrs as C
from translator.isa import decode
from vfm import sbi

MASK64 = (1 << 64) - 1
MIP_SSIP = 1 << C.IRQ_SSI
MIP_STIP = 1 << C.IRQ_STI
MIP_MTIP = 1 << C.IRQ_MTI
RFNC_KINDS = sbi.EXTENSIONS[sbi.EID_RFNC][1]

# Loads and stores the misaligned emulation knows: name -> (size, signed, fp)
LOADS = {"lb": (1, True, False), "lbu": (1, False, False), "lh": (2, True, False), "lhu": (2, False, False),
         "lw": (4, True, False), "lwu": (4, False, False), "ld": (8, True, False),
         "flw": (4, False, True), "fld": (8, False, True)}
STORES = {"sb": (1, False), "sh": (2, False), "sw": (4, False), "sd": (8, False), "fsw": (4, True),
          "fsd": (8, True)}


class Offload:
    """The fast path of one monitor."""

    def __init__(self, monitor) -> None:
        self.mon = monitor
        self.machine: MachineInterface | None = None
        self.timer: Timer | None = None  # The platform timer (the CLINT on qemu-virt)
        self.console: Console | None = None  # The console device, for OpenSBI's console calls
        self.armed: dict[int, int] = {}  # Hart id -> mtimecmp an offloaded set_timer programmed
        self.counts = monitor.n.offloaded
        monitor.ecall_handlers.append(self.ecall)
        monitor.trap_handlers.append(self.misaligned)

    def attach(self, machine: MachineInterface) -> None:
        self.machine = machine
        self.timer = machine.device("timer")
        if self.mon.firmware == "OpenSBI":
            self.console = machine.device("console")

    # SBI calls
    def ecall(self, hart: Hart, epc: int) -> bool:
        regs = self.mon.ctx[hart.id].regs
        eid = regs[17]
        fid = regs[16]
        if eid == sbi.EID_TIME and fid == 0 or eid == sbi.EID_LEGACY_SET_TIMER:
            if self.timer is None:
                return False
            self._set_timer(hart, regs[10])
            kind = "set_timer"
            err = sbi.SUCCESS
        elif eid == sbi.EID_LEGACY_CONSOLE_PUTCHAR and self.console is not None:
            ch = regs[10] & 0xFF
            self.console.transmit(b"\r\n" if ch == 0x0A else bytes([ch]))
            kind = "console_putchar"
            err = sbi.SUCCESS
        elif eid == sbi.EID_IPI and fid == 0:
            targets = self._targets(regs[10], regs[11])
            if targets is not None:
                for h in targets:
                    h.mip |= MIP_SSIP
                    self.machine.request_exit(h)
            kind = "send_ipi"
            err = sbi.SUCCESS if targets is not None else sbi.ERR_INVALID_PARAM
        elif eid == sbi.EID_RFNC and fid <= 2:
            targets = self._targets(regs[10], regs[11])
            if targets is not None and fid:
                for h in targets:
                    self.machine.sfence_vma(h)
            kind = RFNC_KINDS[fid]
            err = sbi.SUCCESS if targets is not None else sbi.ERR_INVALID_PARAM
        else:
            return False
        regs[10] = err & MASK64
        if eid not in sbi.LEGACY:
            regs[11] = 0
        regs[PC] = epc + 4
        hart.retired_base += 1  # The ecall completed
        self.counts[kind] += 1
        if self.machine.trace is not None:
            self.machine.trace.vfm(hart, f"offload {kind} err={err}")
        return True

    def _targets(self, mask: int, base: int) -> list[Hart] | None:
        harts = self.machine.harts
        if base == MASK64:
            return list(harts)
        out = []
        while mask:
            low = mask & -mask
            hid = base + low.bit_length() - 1
            if hid >= len(harts):
                return None
            out.append(harts[hid])
            mask ^= low
        return out

    # The OS's timer
    def _set_timer(self, hart: Hart, deadline: int) -> None:
        self.timer.set_timecmp(hart.id, deadline)
        self.armed[hart.id] = deadline & MASK64
        if hart.mip & MIP_STIP:
            hart.mip &= ~MIP_STIP

    def timer_due(self, hart: Hart) -> bool:
        """Is the pending machine timer interrupt the one an offloaded set_timer armed?"""
        t = self.armed.get(hart.id)
        return t is not None and bool(hart.mip & MIP_MTIP) and self.timer.timecmp(hart.id) == t

    def timer_interrupt(self, hart: Hart) -> bool:
        """Takes the machine timer interrupt for the OS: STIP up, timer disarmed."""
        if not self.timer_due(hart):
            return False
        del self.armed[hart.id]
        self.timer.set_timecmp(hart.id, MASK64)
        hart.mip |= MIP_STIP
        self.machine.request_exit(hart)
        self.counts["timer_interrupt"] += 1
        if self.machine.trace is not None:
            self.machine.trace.vfm(hart, "offload timer interrupt: STIP set")
        return True

    def os_timer_overdue(self, hart: Hart) -> bool:
        """Has the deadline of the OS's last offloaded set_timer passed, whoever holds mtimecmp
        now (the firmware may have reprogrammed it)?"""
        t = self.armed.get(hart.id)
        return t is not None and self.timer is not None and self.timer.mtime() >= t

    def deliver_os_timer(self, hart: Hart) -> None:
        """STIP for the OS's passed deadline without the machine timer interrupt (mtimecmp is the
        firmware's now: left alone)."""
        del self.armed[hart.id]
        hart.mip |= MIP_STIP
        self.machine.request_exit(hart)
        self.counts["timer_interrupt"] += 1

    # Misaligned loads and stores of the OS
    def misaligned(self, hart: Hart, cause: int, tval: int, epc: int) -> bool:
        if cause != C.LOAD_MISALIGNED and cause != C.STORE_MISALIGNED:
            return False
        insn = self._insn_at(hart, epc)
        if insn is None:
            return False
        machine = self.machine
        addr = (hart.get_x(insn.rs1) + insn.imm) & MASK64
        try:
            if cause == C.LOAD_MISALIGNED:
                if insn.name not in LOADS:
                    return False
                size, signed, fp = LOADS[insn.name]
                value = machine.misaligned_load(hart, addr, size)
                if fp:
                    if size == 4:
                        value |= 0xFFFFFFFF << 32  # NaN-boxed (unprivileged spec 12.2)
                    hart.s.f[insn.rd] = value
                    hart.s.mstatus = fix_sd(hart.s.mstatus | C.MSTATUS_FS)
                else:
                    if signed and value >> (8 * size - 1):
                        value -= 1 << (8 * size)
                    hart.set_x(insn.rd, value)
                kind = "misaligned_load"
            else:
                if insn.name not in STORES:
                    return False
                size, fp = STORES[insn.name]
                value = int(hart.s.f[insn.rs2]) if fp else hart.get_x(insn.rs2)
                machine.misaligned_store(hart, addr, size, value)
                kind = "misaligned_store"
        except Trap as t:
            machine.take_trap(hart, t.cause, t.tval, epc)
            return True
        hart.pc = epc + insn.length
        hart.retired_base += 1
        self.counts[kind] += 1
        return True

    def _insn_at(self, hart: Hart, pc: int):
        """The instruction at pc, fetched as the OS world would; None if that faults."""
        try:
            return decode(self.machine.fetch_insn(hart, pc))
        except Trap:
            return None
