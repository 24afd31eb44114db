"""SiFive PLIC (qemu-virt: 0xc000000): platform-level interrupt controller.

Layout as in QEMU's hw/intc/sifive_plic.c for virt (RISC-V PLIC specification 1.0.0, chapter 3):
  0x000000 + 4 * source            priority (3 bits, 0 = never interrupts)
  0x001000                         pending bits, 32 sources per word (read-only)
  0x002000 + 0x80 * ctx            enable bits of a context, 32 sources per word
  0x200000 + 0x1000 * ctx          priority threshold of a context
  0x200004 + 0x1000 * ctx          claim (read) / complete (write)
Context 2 * h is hart h in M-mode (drives mip.MEIP), 2 * h + 1 hart h in S-mode (mip.SEIP).
Source 0 does not exist; sources are 1..num_sources. All registers are 32 bits wide; 8-byte
accesses are split into two 32-bit ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.core.device import Device
from translator import csrs as C

if TYPE_CHECKING:
    from runtime.core.machine import Machine

PRIORITY_BASE = 0x0
PENDING_BASE = 0x1000
ENABLE_BASE = 0x2000
ENABLE_STRIDE = 0x80
CONTEXT_BASE = 0x200000
CONTEXT_STRIDE = 0x1000
PRIORITY_MASK = 7  # QEMU virt: 7 priority levels, each register bit WARL
MIP_MEIP = 1 << C.IRQ_MEI
MIP_SEIP = 1 << C.IRQ_SEI


class Plic(Device):
    """Level-triggered gateways plus the PLIC core, for 2 contexts per hart."""

    role = "interrupt-controller"

    def __init__(self, machine: Machine, num_sources: int = 96) -> None:
        self.m = machine
        self.num_sources = num_sources
        self.num_contexts = 2 * len(machine.harts)
        n = num_sources + 1  # Index 0 is the reserved "no interrupt" id
        self.priority = [0] * n
        self.level = [False] * n  # The line from the device into the gateway
        self.pending = 0  # Bit per source
        self.claimed = 0  # Bit per source: claimed and not yet completed (gateway closed)
        self.enable = [0] * self.num_contexts  # Bit per source, per context
        self.threshold = [0] * self.num_contexts
        self._valid = ((1 << n) - 1) & ~1
        self._outputs = [False] * self.num_contexts

    # Gateways (PLIC spec 3.3: a level-triggered gateway forwards one request and then waits for
    # completion before it forwards another)
    def set_irq(self, source: int, level: bool) -> None:
        """A device drives its interrupt line (source 1..num_sources)."""
        if not 0 < source <= self.num_sources:
            raise ValueError(f"PLIC source {source} out of range 1..{self.num_sources}")
        level = bool(level)
        if self.level[source] == level:
            return
        self.level[source] = level
        bit = 1 << source
        if level:
            if not self.claimed & bit:
                self.pending |= bit
        elif not self.claimed & bit:
            # As QEMU does: a request the device withdrew before the claim is no longer pending.
            self.pending &= ~bit
        self.update()

    # Core
    def _best(self, ctx: int) -> int:
        """The source a claim by `ctx` returns: highest priority pending enabled source above the
        threshold, ties to the lowest id (PLIC spec 3.8 and 3.10)."""
        cand = self.pending & self.enable[ctx]
        best, best_prio = 0, self.threshold[ctx]
        while cand:
            low = cand & -cand
            src = low.bit_length() - 1
            cand ^= low
            p = self.priority[src]
            if p > best_prio:
                best, best_prio = src, p
        return best

    def update(self, machine: Machine | None = None) -> None:
        """Drives every context's output into its hart's mip (MEIP for M, SEIP for S).

        mip.SEIP is also writable by M-mode software (privileged spec 3.1.9: the value read is the
        OR of the software bit and the PLIC's signal); sharing hart.mip, the S-context output only
        changes SEIP when the output itself changes, so a software-set SEIP survives other updates."""
        harts = self.m.harts
        for ctx in range(self.num_contexts):
            level = self._best(ctx) != 0
            changed = level != self._outputs[ctx]
            self._outputs[ctx] = level
            if ctx & 1 and not changed:
                continue
            hart = harts[ctx >> 1]
            bit = MIP_SEIP if ctx & 1 else MIP_MEIP
            new = (hart.mip | bit) if level else (hart.mip & ~bit)
            if new != hart.mip:
                hart.mip = new
                self.m.request_exit(hart)

    def poll(self, machine: Machine | None = None) -> None:
        """Run-loop poller: re-asserts outputs that software cleared (mip.SEIP is writable)."""
        for ctx, level in enumerate(self._outputs):
            if level:
                hart = self.m.harts[ctx >> 1]
                bit = MIP_SEIP if ctx & 1 else MIP_MEIP
                if not hart.mip & bit:
                    hart.mip |= bit
                    self.m.request_exit(hart)

    def claim(self, ctx: int) -> int:
        src = self._best(ctx)
        if src:
            bit = 1 << src
            self.pending &= ~bit
            self.claimed |= bit
            self.update()
        return src

    def complete(self, ctx: int, src: int) -> None:
        # PLIC spec 3.11: "If the completion ID does not match an interrupt source that is currently
        # enabled for the target, the completion is silently ignored."
        if not 0 < src <= self.num_sources or not self.enable[ctx] >> src & 1:
            return
        bit = 1 << src
        if not self.claimed & bit:
            return
        self.claimed &= ~bit
        if self.level[src]:
            self.pending |= bit  # Still asserted: the gateway forwards a new request
        self.update()

    # Registers
    def _read32(self, off: int) -> int:
        if off < PENDING_BASE:
            src = off >> 2
            return self.priority[src] if src <= self.num_sources else 0
        if off < ENABLE_BASE:
            word = (off - PENDING_BASE) >> 2
            return (self.pending >> (32 * word)) & 0xFFFFFFFF
        if off < CONTEXT_BASE:
            ctx, rel = divmod(off - ENABLE_BASE, ENABLE_STRIDE)
            if ctx >= self.num_contexts:
                return 0
            return (self.enable[ctx] >> (8 * rel)) & 0xFFFFFFFF
        ctx, rel = divmod(off - CONTEXT_BASE, CONTEXT_STRIDE)
        if ctx >= self.num_contexts:
            return 0
        if rel == 0:
            return self.threshold[ctx]
        if rel == 4:
            return self.claim(ctx)
        return 0

    def _write32(self, off: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if off < PENDING_BASE:
            src = off >> 2
            if 0 < src <= self.num_sources:
                self.priority[src] = value & PRIORITY_MASK
                self.update()
            return
        if off < ENABLE_BASE:
            return  # Pending bits are read-only
        if off < CONTEXT_BASE:
            ctx, rel = divmod(off - ENABLE_BASE, ENABLE_STRIDE)
            if ctx >= self.num_contexts:
                return
            shift = 8 * rel
            en = (self.enable[ctx] & ~(0xFFFFFFFF << shift)) | (value << shift)
            self.enable[ctx] = en & self._valid
            self.update()
            return
        ctx, rel = divmod(off - CONTEXT_BASE, CONTEXT_STRIDE)
        if ctx >= self.num_contexts:
            return
        if rel == 0:
            self.threshold[ctx] = value & PRIORITY_MASK
            self.update()
        elif rel == 4:
            self.complete(ctx, value)

    def read(self, offset: int, size: int) -> int:
        if size == 8:
            return self._read32(offset) | (self._read32(offset + 4) << 32)
        word = self._read32(offset & ~3)
        return (word >> (8 * (offset & 3))) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size == 8:
            self._write32(offset, value)
            self._write32(offset + 4, value >> 32)
        elif size == 4:
            self._write32(offset, value)
        elif not offset & 3:
            self._write32(offset, value)  # Narrow aligned stores zero-extend
