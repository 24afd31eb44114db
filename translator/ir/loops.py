"""Self-loops: a block that branches back to its own start loops inside its function, registers and
the instruction budget flowing around the back edge in phis, leaving when the budget runs out."""

from __future__ import annotations

from translator import abi
from translator.ir.text import const


class Loops:
    """The loop header and latch (uses _phis, x_cache, f_cache, budget)."""

    def begin_loop(self, regs: set[tuple[str, int]]) -> None:
        """Starts the loop header: phis for the budget and for every register the body touches."""
        self.loop = True
        inits = []
        for kind, r in sorted(regs):
            off = (abi.OFF_X if kind == "x" else abi.OFF_F) + 8 * r
            inits.append((kind, r, self.load_field(off)))
        self.emit("br label %loop")
        self.start_block("loop")
        self.budget = "%lb"
        self.emit("%lb = phi i64 [ %b1, %body ], [ %lbnext, %latch ]")
        for kind, r, init in inits:
            phi = f"%p{kind}{r}"
            # The back edge's value is known at the latch, which completes this line.
            self._phis.append((kind, r, phi, len(self.lines)))
            self.emit(f"{phi} = phi i64 [ {init}, %body ]")
            if kind == "x":
                self.x_cache[r] = phi
                self.x_dirty.add(r)
            else:
                self.f_cache[r] = phi
                self.f_dirty.add(r)

    def _latch(self) -> None:
        """The back edge: count the next iteration, or leave to the run loop when the budget is out."""
        for kind, r, phi, at in self._phis:
            cache = self.x_cache if kind == "x" else self.f_cache
            self.lines[at] = f"{self.lines[at]}, [ {cache.get(r, phi)}, %latch ]"
        self.emit(f"%lbnext = sub i64 {self.budget}, {self.n_insns}")
        self.emit("%lbout = icmp slt i64 %lbnext, 0")
        self.emit("br i1 %lbout, label %loopout, label %latch, !prof !1")
        self.start_block("latch")
        # Iteration counter (statistics): carried in a phi, stored without reloading it.
        self.emit("%lcn = add i64 %lc, 1")
        self.emit(f"store i64 %lcn, ptr @{self.name}_l")
        self.emit("br label %loop")
        self.start_block("loopout")
        self.flush()
        self.sync_budget()
        self.store_field(abi.OFF_PC, const(self.pc))
        self.emit(f"ret i64 {abi.EXIT_POLL}")
        at = self.lines.index("loop:") + 1
        self.lines.insert(at, "  %lc = phi i64 [ %lc0, %body ], [ %lcn, %latch ]")
        self.latched = True
