"""QEMU-style trace logging (`-d in_asm,exec,int,vfm,mmu`, `-D FILE`).

When a category is off its hook is not installed, so logging costs nothing: no per-block Python
work and no change to generated code. `exec` runs every block through the run loop (no jump
cache, no chaining) so that each execution can be logged.
"""

from __future__ import annotations

import sys
from typing import TextIO

from translator import csrs as C
from translator.isa import disasm

CATEGORIES = {
    "in_asm": "each block's guest disassembly when it is translated",
    "exec": "each block executed: pc and privilege",
    "int": "every trap and interrupt: cause, tval, epc, from/to privilege",
    "vfm": "every monitor entry, emulated instruction and world switch",
    "mmu": "page walks and page faults",
}
PRIV_NAMES = {C.PRV_U: "U", C.PRV_S: "S", C.PRV_M: "vM"}


def parse_categories(spec: str) -> set[str]:
    """`in_asm,exec` -> {"in_asm", "exec"}; raises ValueError naming an unknown category."""
    cats = {c.strip() for c in spec.split(",") if c.strip()}
    unknown = cats - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown -d category {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(CATEGORIES)})")
    return cats


class Tracer:
    def __init__(self, categories: set[str], out: TextIO | None = None, name: str = "stderr") -> None:
        self.cats = categories
        self.out = out or sys.stderr
        self.name = name  # Of the output, for errors
        self.error: str | None = None  # Why the trace could not be written, once it could not
        self.exec_on = "exec" in categories
        self.int_on = "int" in categories
        self.vfm_on = "vfm" in categories
        self.mmu_on = "mmu" in categories

    def attach(self, machine) -> None:
        machine.trace = self
        if "in_asm" in self.cats or self.exec_on:
            machine.warm_threshold = 0  # Every block translated (and so shown) on its first execution
        if "in_asm" in self.cats:
            machine.tcache.on_translate = self.in_asm
        if self.exec_on:
            machine.tcache.chaining = False
            machine.tcache.loops = False
            machine.tcache.unchain_all()
        if self.mmu_on:
            machine.mmu.trace = self
        if self.vfm_on:
            # Every CSR access of the firmware goes to the monitor, which logs it.
            machine.unmap_csr(C.PRV_M)

    def _w(self, line: str) -> None:
        if self.error is None:
            try:
                self.out.write(line + "\n")
            except (OSError, ValueError) as e:
                self._failed(e)

    def _failed(self, e: Exception) -> None:
        """The trace cannot be written (a full disk, a closed pipe): the run goes on untraced and
        the error is reported at its end."""
        self.error = f"-D {self.name}: {getattr(e, 'strerror', None) or e}"

    def flush(self) -> None:
        if self.error is None:
            try:
                self.out.flush()
            except (OSError, ValueError) as e:
                self._failed(e)

    def in_asm(self, code) -> None:
        self._w("----------------")
        self._w(f"IN: {code.name} flags={code.flags:#x}")
        for pc, insn, raw in code.insns:
            text = disasm(insn, pc) if insn is not None else "(illegal)"
            width = 4 if raw & 3 != 3 else 8
            self._w(f"0x{pc:016x}:  {raw & ((1 << (4 * width)) - 1):0{width}x}  {text}")
        self._w("")

    def exec(self, hart, blk) -> None:
        self._w(f"Trace {hart.id}: {blk.fn:#x} [{blk.vpc:016x}] {PRIV_NAMES.get(hart.priv, '?')}")

    def trap(self, hart, cause: int, tval: int, epc: int, interrupt: bool) -> None:
        if not self.int_on:
            return
        kind = "interrupt" if cause & C.INTERRUPT_BIT else "exception"
        self._w(f"{kind} hart={hart.id} cause={cause & ~C.INTERRUPT_BIT} tval={tval:#x} epc={epc:#x} "
                f"from={PRIV_NAMES.get(hart.priv, '?')}")

    def delivered(self, hart, cause: int, to_priv: int, pc: int) -> None:
        if self.int_on:
            self._w(f"  -> {PRIV_NAMES.get(to_priv, '?')} at {pc:#x}")

    def vfm(self, hart, message: str) -> None:
        if self.vfm_on:
            self._w(f"vfm hart={hart.id}: {message}")

    def mmu(self, message: str) -> None:
        if self.mmu_on:
            self._w(f"mmu: {message}")
