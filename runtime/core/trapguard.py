"""Traps that make no progress: a guest whose handler faults again (or that has no handler at
all, or runs from unmapped memory) completes no instruction, so counting retired instructions
alone never stops it. `TrapGuard` sees every synchronous trap the machine takes:

- A trap taken while no instruction completed since the previous one is "idle"; idle traps count
  against --max-insns as instructions do (Machine.run adds them), so the limit always ends a run.
- The same trap (hart, pc, cause) repeated REPEATS times with no instruction completed in between
  can never end: nothing but the trap CSRs changed. The machine stops with a message naming the
  pc, the cause and the trap vectors, whatever the limit.
"""

from __future__ import annotations

from runtime.core.hart import GuestExit

REPEATS = 1000
EXIT_TRAP_LOOP = 5  # Exit status of a run stopped this way


class TrapGuard:
    def __init__(self, machine) -> None:
        self.m = machine
        self.idle = 0  # Traps taken with no instruction completed since the previous trap
        self._last: tuple[int, int, int, int] | None = None  # (hart id, pc, cause, retired)
        self._repeats = 0

    def trap(self, hart, cause: int, epc: int) -> None:
        retired = hart.retired()
        last = self._last
        if last is not None and last[0] == hart.id and last[3] == retired:
            self.idle += 1
            if last[1] == epc and last[2] == cause:
                self._repeats += 1
                if self._repeats >= REPEATS:
                    self._stop(hart, cause, epc)
            else:
                self._repeats = 0
        else:
            self._repeats = 0
        self._last = (hart.id, epc, cause, retired)

    def _stop(self, hart, cause: int, epc: int) -> None:
        if self.m.halted is not None:
            return
        vector = getattr(self.m.monitor, "trap_vector", None)
        mtvec = vector(hart) if vector is not None else None
        where = f"mtvec {mtvec:#x}" if mtvec is not None else "no monitor"
        self.m.halted = GuestExit(EXIT_TRAP_LOOP,
                                  f"trap loop: the trap at pc {epc:#x} (cause {cause}) repeated {REPEATS} times "
                                  f"with no instruction completing ({where}, stvec {hart.stvec:#x}); its "
                                  "handler cannot run")
        hart.s.exit_now = 1
