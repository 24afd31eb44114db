"""SiFive CLINT (qemu-virt: 0x2000000): per-hart software interrupt and machine timer.

Layout as in QEMU's hw/intc/riscv_aclint.c used as a SiFive CLINT:
  0x0000 + 4 * hart   msip[hart]      bit 0 drives mip.MSIP
  0x4000 + 8 * hart   mtimecmp[hart]  64-bit; MTIP is pending while mtime >= mtimecmp
  0xBFF8              mtime           64-bit, 10 MHz; writes move an offset against machine.time()

Registers accept 4- and 8-byte accesses, and the 64-bit ones also their 4-byte halves. Narrower
accesses read or merge bytes of the containing register; an access spanning two registers (an
8-byte access to two msip words) is split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.core.device import Device
from translator import csrs as C

if TYPE_CHECKING:
    from runtime.core.hart import Hart
    from runtime.core.machine import Machine

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1

MSIP_BASE = 0x0000
MTIMECMP_BASE = 0x4000
MTIME = 0xBFF8
SIZE = 0x10000

MIP_MSIP = 1 << C.IRQ_MSI
MIP_MTIP = 1 << C.IRQ_MTI


class Clint(Device):
    """The CLINT of a machine: one msip/mtimecmp pair per hart and the shared mtime; the platform
    timer (role "timer", runtime/devices `Timer`)."""

    role = "timer"

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        n = len(machine.harts)
        self.msip = [0] * n
        # The ACLINT spec leaves mtimecmp unknown at reset; all-ones keeps MTIP clear until written.
        self.mtimecmp = [MASK64] * n
        self.offset = 0  # mtime = machine.time() + offset (mod 2^64)
        self._next_change: int | None = None  # machine.time() at which some MTIP may rise
        self.update()

    # Time
    def mtime(self) -> int:
        return (self.m.time() + self.offset) & MASK64

    def timecmp(self, hart: int) -> int:
        return self.mtimecmp[hart]

    def set_timecmp(self, hart: int, value: int) -> None:
        self.write(MTIMECMP_BASE + 8 * hart, 8, value & MASK64)

    def set_mtime(self, value: int) -> None:
        self.offset = (value & MASK64) - self.m.time()
        self.m.set_time_offset(self.offset)
        self.update()

    # Interrupt lines
    def _set_mip(self, hart: Hart, bit: int, level: bool) -> None:
        new = (hart.mip | bit) if level else (hart.mip & ~bit)
        if new != hart.mip:
            hart.mip = new
            self.m.request_exit(hart)

    def update(self, machine: Machine | None = None) -> None:
        """Re-evaluates every hart's MTIP. Privileged spec 3.2.1: "A machine timer interrupt becomes
        pending whenever mtime contains a value greater than or equal to mtimecmp, treating the
        values as unsigned integers. The interrupt remains posted until mtimecmp becomes greater
        than mtime (typically as a result of writing mtimecmp)." """
        now = self.m.time()
        mtime = (now + self.offset) & MASK64
        nxt = None
        for hart, cmp in zip(self.m.harts, self.mtimecmp, strict=False):
            due = mtime >= cmp
            self._set_mip(hart, MIP_MTIP, due)
            if not due and cmp != MASK64:
                t = now + (cmp - mtime)
                if nxt is None or t < nxt:
                    nxt = t
        self._next_change = nxt

    def poll(self, machine: Machine | None = None) -> None:
        """Run-loop poller: cheap until the nearest mtimecmp has been reached."""
        nxt = self._next_change
        if nxt is not None and self.m.time() >= nxt:
            self.update()

    def deadline(self) -> int | None:
        """The nearest future mtimecmp on machine.time()'s scale (what wfi sleeps until), or None.
        mtimecmp = all-ones is "no timer" (how OpenSBI and Linux stop it)."""
        return self._next_change

    # Registers
    def _locate(self, offset: int) -> tuple[str, int, int, int] | None:
        """(kind, hart, register base, register width) of the register holding `offset`."""
        if MSIP_BASE <= offset < MTIMECMP_BASE:
            h = (offset - MSIP_BASE) // 4
            return ("msip", h, MSIP_BASE + 4 * h, 4)
        if MTIMECMP_BASE <= offset < MTIME:
            h = (offset - MTIMECMP_BASE) // 8
            return ("mtimecmp", h, MTIMECMP_BASE + 8 * h, 8)
        if MTIME <= offset < MTIME + 8:
            return ("mtime", 0, MTIME, 8)
        return None

    def _get(self, kind: str, h: int) -> int:
        if kind == "mtime":
            self.poll()
            return self.mtime()
        regs = self.msip if kind == "msip" else self.mtimecmp
        return regs[h] if h < len(regs) else 0

    def _put(self, kind: str, h: int, value: int) -> None:
        if kind == "mtime":
            self.set_mtime(value)
            return
        if h >= len(self.m.harts):
            return  # No such hart: writes are ignored
        hart = self.m.harts[h]
        if kind == "msip":
            # Only bit 0 is implemented; the rest read as zero (SiFive CLINT, QEMU aclint swi).
            self.msip[h] = value & 1
            self._set_mip(hart, MIP_MSIP, bool(value & 1))
        else:
            # Writing mtimecmp is how MTIP is cleared (privileged spec 3.1.9: "The MTIP bit is read-only
            # in mip, and is cleared by writing to the memory-mapped machine-mode timer compare register").
            self.mtimecmp[h] = value & MASK64
            self.update()

    def _pieces(self, offset: int, size: int):
        """Splits an access into per-register pieces: (kind, hart, width, done, shift, n), where
        `done` bytes of the access came before and `n` bytes fall in the register at `shift`."""
        done = 0
        while done < size:
            loc = self._locate(offset + done)
            if loc is None:
                done += 1
                continue
            kind, h, base, width = loc
            shift = (offset + done - base) * 8
            n = min(size - done, width - (offset + done - base))
            yield kind, h, width, done, shift, n
            done += n

    def read(self, offset: int, size: int) -> int:
        out = 0
        for kind, h, _width, done, shift, n in self._pieces(offset, size):
            out |= ((self._get(kind, h) >> shift) & ((1 << (8 * n)) - 1)) << (8 * done)
        return out

    def write(self, offset: int, size: int, value: int) -> None:
        for kind, h, width, done, shift, n in self._pieces(offset, size):
            mask = ((1 << (8 * n)) - 1) << shift
            part = ((value >> (8 * done)) << shift) & mask
            if n == width:
                new = part
            else:
                new = (self._get(kind, h) & ~mask) | part
            self._put(kind, h, new)
