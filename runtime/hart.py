"""Hart state: the native struct shared with generated code, plus the S-level CSRs the runtime owns."""

from __future__ import annotations

from translator import abi
from translator.abi import ffi
from translator.csrs import MSTATUS_FS, MSTATUS_MPRV, MSTATUS_MXR, MSTATUS_SUM, PRV_M, PRV_S, PRV_U


class Trap(Exception):  # noqa: N818 (a trap is not an error of the host)
    """A synchronous exception raised by guest execution."""

    def __init__(self, cause: int, tval: int = 0) -> None:
        super().__init__(f"cause {cause} tval {tval:#x}")
        self.cause = cause
        self.tval = tval


class Hart:
    """One RISC-V hart. `priv` is the privilege the code runs at: PRV_M means the firmware world
    (virtual M-mode, physically U-mode under the monitor), PRV_S and PRV_U the OS world."""

    def __init__(self, hartid: int) -> None:
        self.s = ffi.new("hart_t *")
        self.ptr = int(ffi.cast("uintptr_t", self.s))
        self.id = hartid
        self.s.hartid = hartid
        self.s.resv = (1 << 64) - 1
        self.priv = PRV_M
        # S-level CSRs of the physical machine (privileged spec, chapter 4)
        self.stvec = 0
        self.sepc = 0
        self.scause = 0
        self.stval = 0
        self.sscratch = 0
        self.satp = 0
        self.scounteren = 0
        self.senvcfg = 0
        # Interrupt state: pending and enable bits (mip/mie layout) and the interrupt delegation
        # set by the monitor live in the native struct (properties below), where code that sets
        # sstatus.SIE checks them; exception delegation is the monitor's
        self.medeleg = 0
        self.wfi = False
        # Set during a callout to return to the run loop once the current instruction completes
        self.want_exit = False
        # Trap-virtualization bits of mstatus, installed by the monitor for the OS world
        self.tvm = False
        self.tw = False
        self.tsr = False
        # Data view of the firmware world while the monitor emulates MPRV (None: physical)
        self.fw_data_mmu: int | None = None
        # Retired-instruction accounting: budget handed to native code and what it started at
        self.retired_base = 0
        self.budget_start = 0

    # Registers
    def get_x(self, r: int) -> int:
        return self.s.x[r] if r else 0

    def set_x(self, r: int, v: int) -> None:
        if r:
            self.s.x[r] = v & 0xFFFFFFFFFFFFFFFF

    @property
    def pc(self) -> int:
        return self.s.pc

    @pc.setter
    def pc(self, v: int) -> None:
        self.s.pc = v & 0xFFFFFFFFFFFFFFFF

    @property
    def mip(self) -> int:
        return self.s.mip

    @mip.setter
    def mip(self, v: int) -> None:
        self.s.mip = v

    @property
    def mie(self) -> int:
        return self.s.mie

    @mie.setter
    def mie(self, v: int) -> None:
        self.s.mie = v

    @property
    def mideleg(self) -> int:
        return self.s.mideleg

    @mideleg.setter
    def mideleg(self, v: int) -> None:
        self.s.mideleg = v

    @property
    def mstatus(self) -> int:
        return self.s.mstatus

    @mstatus.setter
    def mstatus(self, v: int) -> None:
        self.s.mstatus = v

    # Instruction counting
    def retired(self) -> int:
        return self.retired_base + (self.budget_start - self.s.budget)

    def set_budget(self, n: int) -> None:
        self.retired_base = self.retired()
        self.s.budget = n
        self.budget_start = n

    def uncount(self, n: int) -> None:
        """Gives back instructions a block counted but did not retire (the budget is untouched)."""
        self.retired_base -= n

    def force_poll(self) -> None:
        """Zeroes the budget so the next block returns to the run loop. Only while no block runs:
        blocks may hold the budget in a register (callouts use `want_exit` instead)."""
        self.retired_base = self.retired()
        self.s.budget = 0
        self.budget_start = 0

    # Translation flags
    def data_mmu(self) -> int:
        if self.priv == PRV_M:
            return abi.MMU_M if self.fw_data_mmu is None else self.fw_data_mmu
        if self.priv == PRV_U:
            return abi.MMU_U
        return abi.MMU_S_SUM if self.s.mstatus & MSTATUS_SUM else abi.MMU_S

    def compute_flags(self) -> int:
        f = self.priv | (self.data_mmu() << abi.FLAG_MMU_SHIFT)
        if self.s.mstatus & MSTATUS_FS:
            f |= abi.FLAG_FS_ON
        return f

    def update_flags(self) -> None:
        self.s.flags = self.compute_flags()


__all__ = ["Hart", "Trap", "PRV_M", "PRV_S", "PRV_U", "MSTATUS_MPRV", "MSTATUS_MXR"]
