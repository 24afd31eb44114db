"""The machine as the monitor sees it: `MachineInterface` is everything vfm/ may use of a machine
(runtime/core/machine.py `Machine` implements it), and `Monitor` what the machine asks of the monitor.

The monitor attaches through methods (`attach_monitor`, `set_access_guard`, `map_csr`), reads and
writes a hart's registers through the view `reg_view` hands out (indices below), names the
translation caches to drop by meaning (`flush_tlb`, `sfence_vma`, `guard_changed`), performs
accesses and fetches of a hart through the machine's own implementation (`misaligned_load`,
`misaligned_store`, `fetch_insn`: code-write invalidation included), and finds devices by role
(`device("timer")`, runtime/devices `Timer`). It never reaches the softmmu, the translation cache
or physical memory directly, and never assigns a machine attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runtime.core.device import Device
from runtime.core.hart import Hart
from runtime.core.mmu import OS_RIGHTS_ALL, OS_RIGHTS_S_SHIFT, AccessGuard  # noqa: F401 (for vfm/)
from translator import abi

# The page the softmmu maps and an access guard decides for (the Sv39 base page, privileged spec
# 4.4.1).
PAGE_SIZE = abi.PAGE_SIZE
# Indices in a hart's register view (`reg_view`): x1..x31 at 1..31 (index 0 is x0: read as zero,
# never written), the pc, and the LR reservation (all-ones: none).
REG_PC = abi.OFF_PC // 8
REG_RESV = abi.OFF_RESV // 8
assert abi.OFF_X == 0 and abi.OFF_PC % 8 == 0 and abi.OFF_RESV % 8 == 0

# The monitor's fast path for system instructions: fn(hart, raw, pc) -> bool (done; False: the
# instruction takes the general path, a trap to the monitor if it needs M-level).
SysHook = Callable[[Hart, int, int], bool]


class Monitor(Protocol):
    """What sits at M-level: the virtual firmware monitor (vfm/), or a test stand-in."""

    def attach(self, machine: MachineInterface) -> None: ...

    def on_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None: ...

    def on_interrupt(self, hart: Hart, irq: int) -> None: ...

    def pending_m_interrupt(self, hart: Hart) -> int | None: ...


class MachineInterface(Protocol):
    """What the monitor uses of a machine."""

    harts: list[Hart]
    trace: object | None  # runtime.frontends.trace.Tracer when -d is given: `vfm(hart, text)`, `vfm_on`
    timebase_hz: int

    # Attaching
    def attach_monitor(self, monitor: Monitor, sys_hook: SysHook | None = None) -> None:
        """Puts `monitor` at M-level (it takes every M-level trap and interrupt) and offers every
        system instruction that reaches Python to `sys_hook` first (an S-mode sfence.vma with an
        address may complete in native code: an OS-world matter with no M-level part)."""
        ...

    def set_access_guard(self, guard: AccessGuard | None) -> None:
        """Installs the monitor's access guard (PMP and memory policies)."""
        ...

    def csr_slot(self) -> int:
        """A CSR slot of every hart (Hart.slot and set_slot reach its value)."""
        ...

    def map_csr(self, priv: int, num: int, slot: int, write_mask: int | None) -> None:
        """Generated code at `priv` performs CSR `num` on `slot` itself."""
        ...

    def set_counteren(self, hart: Hart, v: int) -> None:
        """Sets the physical mcounteren of `hart`."""
        ...

    # Harts
    def reg_view(self, hart: Hart) -> memoryview:
        """The registers of `hart` as 64-bit words, indexed as REG_PC, REG_RESV, 1..31 (x)."""
        ...

    def set_priv(self, hart: Hart, priv: int) -> None:
        ...

    def set_mprv(self, hart: Hart, priv: int | None) -> bool:
        """The firmware's data accesses go through the translation of `priv` (MPRV), or none."""
        ...

    def request_exit(self, hart: Hart | None = None) -> None:
        ...

    def check_interrupts(self, hart: Hart) -> None:
        ...

    def take_trap(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        ...

    def trap_to_s(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        ...

    # Translation caches
    def flush_tlb(self, hart: Hart, which: str = "all") -> None:
        """Drops TLBs of `hart`: "all", "os" (the OS world's), "mprv" (the firmware's MPRV view)."""
        ...

    def sfence_vma(self, hart: Hart, vaddr: int | None = None) -> None:
        """sfence.vma on `hart`: the OS world's translations (of one page, or all) and jump cache."""
        ...

    def guard_changed(self, hart: Hart) -> None:
        """The access guard's decisions changed for `hart`: drop what was filled under them."""
        ...

    # Accesses by a hart
    def fetch_insn(self, hart: Hart, pc: int) -> int:
        """The instruction word at pc as `hart` fetches it now; raises Trap on a fault."""
        ...

    def misaligned_load(self, hart: Hart, vaddr: int, size: int) -> int:
        """A load of `hart` (its data view) done a byte at a time; raises Trap on a fault."""
        ...

    def misaligned_store(self, hart: Hart, vaddr: int, size: int, value: int) -> None:
        """A store of `hart` done a byte at a time, nothing written if a byte faults."""
        ...

    def write_phys(self, paddr: int, data: bytes) -> bool:
        """Writes `data` to RAM at paddr (no translation, no guard); False if not all RAM."""
        ...

    # Devices and time
    def device(self, role: str) -> Device | None:
        ...

    def time(self) -> int:
        ...
