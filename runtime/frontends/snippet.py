"""Running a piece of raw guest code in-process: Mirage as a library for tests and tools.

The code runs as firmware (virtual M-mode) at `code_addr`; the first trap it takes (ebreak at
the end, or anything unexpected) stops it, and the final state is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.core.hart import GuestExit, Hart
from runtime.core.machine import Machine
from translator import csrs as C
from vfm.monitor import Monitor


@dataclass
class SnippetResult:
    x: list[int]
    f: list[int]
    pc: int
    fflags: int
    frm: int
    cause: int | None  # Trap that stopped it (3 = the final ebreak), None if the limit stopped it
    tval: int
    retired: int
    machine: Machine = field(repr=False)

    def mem(self, addr: int, n: int) -> bytes:
        return self.machine.mem.read_bytes(addr, n)


class _StopOnTrap(Monitor):
    """A monitor that ends the run at the first trap the firmware would take."""

    def __init__(self) -> None:
        super().__init__()
        self.trap: tuple[int, int, int] | None = None

    def inject(self, hart: Hart, cause: int, tval: int, epc: int) -> None:
        self.trap = (cause, tval, epc)
        hart.pc = epc
        raise GuestExit(0, "trap")


_machines: dict[tuple[int, int], Machine] = {}


def run_code(code: bytes, *, x: list[int] | None = None, f: list[int] | None = None, fcsr: int = 0,
             data: bytes = b"", data_addr: int = 0x8010_0000, code_addr: int = 0x8000_0000,
             max_insns: int = 10_000_000, ram_size: int = 4 << 20, fs_on: bool = True,
             opt: int = 2, hot_threshold: int = 0, warm_threshold: int = 0) -> SnippetResult:
    """Runs `code` with the given registers and data; stops at the first trap. `warm_threshold` 0
    (the default) translates every block; N > 0 interprets code until a block head has run N
    times. `hot_threshold` 0 (the default) compiles at the optimized tier at once; N > 0 starts
    at tier 0."""
    m = Machine(ram_size=ram_size, opt=opt)
    m.tcache.set_hot_threshold(hot_threshold)
    m.warm_threshold = warm_threshold
    mon = _StopOnTrap()
    mon.attach(m)
    m.mem.load_bytes(code_addr, code)
    if data:
        m.mem.load_bytes(data_addr, data)
    hart = m.harts[0]
    mon.reset(hart, code_addr, 0, 0)
    for i, v in enumerate(x or []):
        hart.set_x(i, v)
    for i, v in enumerate(f or []):
        hart.s.f[i] = v & 0xFFFFFFFFFFFFFFFF
    hart.s.fflags = fcsr & 0x1F
    hart.s.frm = (fcsr >> 5) & 7
    if fs_on:
        hart.mstatus = hart.mstatus | C.MSTATUS_FS
        hart.update_flags()
    m.max_insns = max_insns
    m.run()
    trap = mon.trap
    return SnippetResult(
        x=[hart.get_x(i) for i in range(32)], f=[int(hart.s.f[i]) for i in range(32)], pc=hart.pc,
        fflags=int(hart.s.fflags), frm=int(hart.s.frm), cause=None if trap is None else trap[0],
        tval=0 if trap is None else trap[1], retired=hart.retired(), machine=m)
