"""Hart state: the native struct shared with generated code, plus the S-level CSRs the runtime owns."""

from __future__ import annotations

from translator import abi
from translator.abi import ffi
from translator.csrs import MSTATUS_FS, MSTATUS_MPRV, MSTATUS_MXR, MSTATUS_SUM, PRV_M, PRV_S, PRV_U

MASK64 = (1 << 64) - 1
# mcountinhibit's implemented bits: CY (0) and IR (2); TM (1) is read-only zero (spec 3.1.12)
COUNTINHIBIT_MASK = 0x5


# CSR slots (abi.CSR_SLOTS) the runtime owns: S-level CSRs that only hold bits (their rules are
# in runtime/core/system.py); Machine.csr_slot hands out the others.
SLOT_SSCRATCH, SLOT_SEPC, SLOT_SCAUSE, SLOT_STVAL = range(4)
RUNTIME_SLOTS = 4


def _slot_property(slot: int) -> property:
    def get(self: Hart) -> int:
        return self.s.csr[slot]

    def put(self: Hart, v: int) -> None:
        self.s.csr[slot] = v & MASK64
    return property(get, put)


class Trap(Exception):  # noqa: N818 (a trap is not an error of the host)
    """A synchronous exception raised by guest execution."""

    def __init__(self, cause: int, tval: int = 0) -> None:
        super().__init__(f"cause {cause} tval {tval:#x}")
        self.cause = cause
        self.tval = tval


class GuestExit(Exception):  # noqa: N818 (control flow, not an error)
    """The guest asked the machine to stop (test finisher, HTIF, poweroff)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"exit {code}")
        self.code = code
        self.message = message


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
        self.scounteren = 0
        self.counteren = 0  # Physical mcounteren (this hart's), owned by the monitor
        self.senvcfg = 0
        # Interrupt state: pending and enable bits (mip/mie layout) and the interrupt delegation
        # set by the monitor live in the native struct (properties below), where code that sets
        # sstatus.SIE checks them; exception delegation is the monitor's
        self.medeleg = 0
        self.wfi = False
        # Set during a callout to return to the run loop once the current instruction completes
        # (in the native struct: the native sfence.vma leaves it to Python, translator/softmmu.py)
        self.want_exit = False
        # Trap-virtualization bits of mstatus, installed by the monitor for the OS world (TVM in
        # the native struct, which the native sfence.vma checks)
        self.tvm = False
        self.tw = False
        self.tsr = False
        # Data view of the firmware world while the monitor emulates MPRV (None: physical)
        self.fw_data_mmu: int | None = None
        # Guest pc of the load or store in the memory slow path (set there, read by access guards)
        self.mem_pc = 0
        # Retired-instruction accounting: budget handed to native code and what it started at
        self.retired_base = 0
        self.budget_start = 0
        # mcycle and minstret (cycle and instret shadow them), by counter number (0 cycle, 2
        # instret; 1, time, is the platform's): both count retired instructions, as an offset
        # against retired(), or a frozen value while their mcountinhibit bit (CY, IR) is set.
        self.counter_offset = [0, 0, 0]
        self.counter_frozen: list[int | None] = [None, None, None]
        self.countinhibit = 0

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
    def want_exit(self) -> bool:
        return bool(self.s.want_exit)

    @want_exit.setter
    def want_exit(self, v: bool) -> None:
        self.s.want_exit = int(v)

    @property
    def tvm(self) -> bool:
        return bool(self.s.tvm)

    @tvm.setter
    def tvm(self, v: bool) -> None:
        self.s.tvm = int(v)

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

    # S-level CSRs that generated code accesses in place (CSR slots)
    sscratch = _slot_property(SLOT_SSCRATCH)
    sepc = _slot_property(SLOT_SEPC)
    scause = _slot_property(SLOT_SCAUSE)
    stval = _slot_property(SLOT_STVAL)

    def slot(self, i: int) -> int:
        """The value in CSR slot i (Machine.csr_slot)."""
        return self.s.csr[i]

    def set_slot(self, i: int, v: int) -> None:
        self.s.csr[i] = v & MASK64

    @property
    def satp(self) -> int:
        return self.s.satp

    @satp.setter
    def satp(self, v: int) -> None:
        self.s.satp = v

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

    # mcycle, minstret (privileged spec 3.1.10; cycle and instret "are read-only shadows of mcycle,
    # minstret", 3.1.11) and mcountinhibit (3.1.12). `before` is the number of instructions retired
    # before the accessing one, which counts itself once it completes, as mcountinhibit then says
    # (as Spike does).
    def counter(self, num: int, before: int) -> int:
        """The value of counter `num` (0 cycle, 2 instret) an instruction reads."""
        frozen = self.counter_frozen[num]
        return (before + self.counter_offset[num] if frozen is None else frozen) & MASK64

    def set_counter(self, num: int, value: int, before: int) -> None:
        """A write to mcycle or minstret: it takes precedence over the writing instruction's own
        increment, so the next instruction reads `value`."""
        if self.counter_frozen[num] is None:
            self.counter_offset[num] = value - before - 1
        else:
            self.counter_frozen[num] = value & MASK64

    def set_countinhibit(self, value: int, before: int) -> None:
        """A write to mcountinhibit: "When the CY, IR, or HPMn bit is set, the corresponding counter
        does not increment" (spec 3.1.12). A counter stopped by this write keeps its value from
        before it; one started counts from this write on."""
        self.countinhibit = value & COUNTINHIBIT_MASK
        for num in (0, 2):
            frozen = self.counter_frozen[num]
            if value >> num & 1 and frozen is None:
                self.counter_frozen[num] = self.counter(num, before)
            elif not value >> num & 1 and frozen is not None:
                self.counter_offset[num] = frozen - before
                self.counter_frozen[num] = None

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


__all__ = ["GuestExit", "Hart", "Trap", "PRV_M", "PRV_S", "PRV_U", "MSTATUS_MPRV", "MSTATUS_MXR"]
