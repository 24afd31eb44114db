"""protect-payload: from the first hand-over to the OS on, the firmware keeps doing its job (timers,
IPIs, console, power) but can no longer read or change the OS (Miralis's policy of that name).

- Memory: the firmware cannot load, store or execute in the OS's memory (`Monitor.os_memory`),
  directly, through MPRV or through the OS's page tables; it keeps its own region and the devices.
  A blocked access is reported and the firmware gets the access fault a PMP would give it.
- Registers: on each switch into the firmware, the OS's general-purpose registers that the SBI
  call does not take (vfm/sbi.py `arg_count`; a6 and a7 always pass) read as zero, and so do all
  of them for interrupts and other traps; on the way back they are restored, and only a0 and a1
  of an SBI call come from the firmware (SBI 3.1: "all registers except a0 & a1 must be preserved
  across an SBI call by the callee").
- S-level state: stvec, sscratch, sepc, scause, stval, satp, scounteren, senvcfg, the S bits of
  mstatus (SIE, SPIE, SPP, SUM, MXR, FS, XS and SD) and of mie (SSIE, STIE, SEIE) read as zero in
  the firmware and are restored on return; so is mip.SSIP, except that the firmware may raise it
  (an IPI for the OS), as it may raise or clear STIP (the OS's timer).
- Control: the OS resumes where the switch left it (after the ecall, at the interrupted
  instruction; after another exception, at it or the next one if the firmware emulated it) and
  in its own privilege; any other target is refused and reported, except that a firmware that
  redirects an exception to the OS gets the redirect done by the monitor. mtvec cannot point into
  OS memory (the write is dropped).
- CPU: a firmware that has run a million instructions (or a second of guest time, for one that
  sleeps in wfi) since the switch while an interrupt of the OS is pending loses its turn: an SBI
  call returns SBI_ERR_FAILED, and the OS takes its interrupt. The OS's timer is the monitor's own
  through the fast path (on by default), even if the firmware reprograms mtimecmp during the
  call; a legitimate call takes a few thousand instructions.

The monitor's emulation on the OS's behalf (misaligned accesses, offloaded timer, IPI and fence
calls) runs in the OS world and is not affected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.core.hart import Hart
from runtime.core.machine_api import REG_PC as PC
from runtime.core.system import fix_sd
from translator import csrs as C
from vfm import sbi
from vfm.policy.base import Policy, Switch

MASK64 = (1 << 64) - 1
S_CSRS = ("stvec", "sscratch", "sepc", "scause", "stval", "satp", "scounteren", "senvcfg")
HIDE_MSTATUS = (C.MSTATUS_SIE | C.MSTATUS_SPIE | C.MSTATUS_SPP | C.MSTATUS_SUM | C.MSTATUS_MXR
                | C.MSTATUS_FS | C.MSTATUS_XS | C.MSTATUS_SD)
HIDE_MIE = (1 << C.IRQ_SSI) | (1 << C.IRQ_STI) | (1 << C.IRQ_SEI)
HIDE_MIP = 1 << C.IRQ_SSI
ACCESS_VERB = {"r": "read", "w": "write", "x": "execute"}
MTVEC = 0x305
GRACE_INSNS = 1_000_000  # Firmware instructions an OS interrupt may wait


@dataclass(slots=True)
class Saved:
    """The OS's state while the firmware serves one switch."""

    switch: Switch
    regs: list[int]
    csrs: list[int]
    mstatus: int
    mie: int
    mip: int
    start: int  # machine.time() at the switch
    start_insns: int  # hart.retired() at the switch
    aborted: bool = False
    notes: list[str] = field(default_factory=list)


class ProtectPayload(Policy):
    name = "protect-payload"
    csr_writes = frozenset({MTVEC})
    watches_firmware = True

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.saved: dict[int, Saved] = {}

    def attach(self, monitor) -> None:
        super().attach(monitor)
        self.machine = monitor.machine

    def stats(self) -> dict:
        return {"blocked": dict(self.blocked)}

    # Memory
    def firmware_ranges(self) -> list[tuple[int, int]]:
        return [self.mon.os_memory] if self.active and self.mon.os_memory else []

    def firmware_access(self, hart: Hart, paddr: int, size: int, access: str, priv: int) -> bool:
        verb = ACCESS_VERB[access]
        if access == "x":
            where = self._during(hart).lstrip(", ")
            self.report(verb, f"firmware execute of OS memory at {paddr:#x}" + (f" ({where})" if where else ""))
        else:
            via = "" if priv == C.PRV_M else " through MPRV"
            self.report(verb, f"firmware {verb} of OS memory at {paddr:#x} ({size} bytes{via}, "
                              f"pc {hart.mem_pc:#x}{self._during(hart)})")
        return False

    def _during(self, hart: Hart) -> str:
        s = self.saved.get(hart.id)
        return f", during {s.switch.label()}" if s is not None else ""

    # CSR writes
    def csr_write(self, hart: Hart, num: int, value: int) -> int | None:
        if self.active and num == MTVEC and self._in_os(value & ~3):
            self.report("mtvec", f"firmware set mtvec to {value:#x}, in OS memory (write dropped)")
            return None
        return value

    def _in_os(self, addr: int) -> bool:
        lo, hi = self.mon.os_memory or (0, 0)
        return lo <= addr < hi

    # World switches
    def to_firmware(self, hart: Hart, switch: Switch) -> None:
        if not self.active:
            return
        regs = self.mon.ctx[hart.id].regs
        keep = set()
        if switch.is_ecall:
            keep = {10 + i for i in range(sbi.arg_count(switch.eid, switch.fid))} | {16, 17}
        saved_regs = list(regs[0:32])
        for i in range(1, 32):
            if i not in keep:
                regs[i] = 0
        csrs = [getattr(hart, name) for name in S_CSRS]
        for name in S_CSRS:
            setattr(hart, name, 0)
        ms = hart.s.mstatus
        hart.s.mstatus = fix_sd(ms & ~HIDE_MSTATUS)
        mie, mip = hart.mie, hart.mip
        hart.mie = mie & ~HIDE_MIE
        hart.mip = mip & ~HIDE_MIP
        self.saved[hart.id] = Saved(switch, saved_regs, csrs, ms & HIDE_MSTATUS, mie & HIDE_MIE,
                                    mip & HIDE_MIP, self.machine.time(), hart.retired())

    def to_os(self, hart: Hart, priv: int) -> int:
        if not self.active:
            self.active = True  # The first hand-over: from now on the OS's memory is its own
            self.mon.guard_changed()
            return priv
        s = self.saved.pop(hart.id, None)
        if s is None:
            return priv
        regs = self.mon.ctx[hart.id].regs
        sw = s.switch
        target = regs[PC]
        a0, a1 = regs[10], regs[11]
        for i in range(1, 32):
            regs[i] = s.regs[i]
        for name, v in zip(S_CSRS, s.csrs, strict=True):
            setattr(hart, name, v)
        hart.s.mstatus = fix_sd((hart.s.mstatus & ~HIDE_MSTATUS) | s.mstatus)
        hart.mie = (hart.mie & ~HIDE_MIE) | s.mie
        hart.mip |= s.mip  # The firmware may raise SSIP (an IPI for the OS), not drop the OS's
        if sw.is_ecall:
            regs[10], regs[11] = (sbi.ERR_FAILED & MASK64, 0) if s.aborted else (a0, a1)
            allowed = (sw.epc + 4,)
        elif sw.is_interrupt:
            allowed = (sw.epc,)
        else:
            allowed = (sw.epc, sw.epc + 2, sw.epc + 4)
        if priv != sw.priv and not s.aborted:
            self.report("resume", f"firmware returned to the OS in privilege {priv}, not {sw.priv} "
                                  f"(after {sw.label()}); the OS resumes in its own")
        if target in allowed or s.aborted:
            regs[PC] = target if target in allowed else allowed[0]
            return sw.priv
        if sw.is_ecall or sw.is_interrupt:
            self.report("resume", f"firmware returned to the OS at {target:#x}, not {allowed[0]:#x} "
                                  f"(after {sw.label()}); the OS resumes at {allowed[0]:#x}")
            regs[PC] = allowed[0]
            return sw.priv
        # Another exception the firmware did not emulate: it redirects it to the OS (OpenSBI's
        # sbi_trap_redirect), which needs the S-level state hidden from it; the monitor does it.
        if target not in (hart.stvec & ~3, 0):  # 0: the stvec the firmware saw
            self.report("resume", f"firmware returned to the OS at {target:#x} after {sw.label()}; "
                                  f"the exception goes to the OS instead")
        hart.priv = sw.priv
        self.machine.trap_to_s(hart, sw.cause, sw.tval, sw.epc)
        return C.PRV_S

    # The firmware's turn
    def firmware_tick(self, hart: Hart) -> None:
        s = self.saved.get(hart.id)
        if s is None or s.aborted:
            return
        off = self.mon.offload
        if off is not None and not off.timer_due(hart) and off.os_timer_overdue(hart):
            # The firmware took mtimecmp from the OS's deadline: the monitor keeps the OS's timer.
            off.deliver_os_timer(hart)
        if not (hart.mip | s.mip) & s.mie & hart.mideleg:
            return
        if (hart.retired() - s.start_insns < GRACE_INSNS
                and self.machine.time() - s.start < self.machine.timebase_hz):
            return
        self.report("cpu", f"firmware still running {s.switch.label()} with an OS interrupt pending; "
                           f"the call is ended (SBI_ERR_FAILED) and the OS resumes")
        s.aborted = True
        self.mon.leave_firmware(hart)
