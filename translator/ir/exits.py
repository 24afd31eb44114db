"""How a block ends: direct exits (chained through slots on the same page), indirect exits through the
dispatcher, branches (side exits or forward joins), and the callouts that leave native code."""

from __future__ import annotations

from translator import abi
from translator.ir.text import const


class Exits:
    """Block exits and callouts (uses name, pc, tier, chain_slots, targets, budget, index)."""

    def sync_budget(self, extra: int = 0) -> None:
        """In a self-loop the budget lives in SSA: write it back before leaving or calling out."""
        if self.budget is not None:
            v = self.budget if not extra else self.op("add", self.budget, str(extra))
            self.store_field(abi.OFF_BUDGET, v)

    def _give_back(self, skipped: int, write: bool = False) -> str | None:
        """Returns `skipped` counted-but-not-executed instructions to the budget on this path:
        in SSA inside a self-loop (written back if `write`), else in the hart struct."""
        if self.budget is not None:
            v = self.op("add", self.budget, str(skipped)) if skipped else self.budget
            if write:
                self.store_field(abi.OFF_BUDGET, v)
            return v
        if skipped:
            b = self.load_field(abi.OFF_BUDGET)
            self.store_field(abi.OFF_BUDGET, self.op("add", b, str(skipped)))
        return None

    def exit_direct(self, target: int) -> None:
        """Ends the block jumping to a static target: a branch to its header when it is a member
        of this function's loop (loops.py), else chained when on the same guest page."""
        self.direct.append(target)
        k = self.members.get(target)
        if k is not None:
            self.edge(k)
            return
        self.flush()
        self.sync_budget()
        self.targets.append(target)
        self.store_field(abi.OFF_PC, const(target))
        if target >> abi.PAGE_BITS == self.pc >> abi.PAGE_BITS:
            slot = f"@{self.name}_s{len(self.chain_slots)}"
            self.chain_slots.append((slot[1:], target))
            self.globals.append(f"{slot} = internal global ptr @mirage_dispatch")
            fn = self.tmp()
            self.emit(f"{fn} = load ptr, ptr {slot}")
            r = self.tmp()
            if self.tier == 0:
                # Cold code hands the slot's function to the loop in mirage_enter, which calls it.
                self.emit(f"{r} = ptrtoint ptr {fn} to i64")
            else:
                self.emit(f"{r} = musttail call i64 {fn}(ptr %h)")
            self.emit(f"ret i64 {r}")
        else:
            self.to_dispatcher()

    def exit_indirect(self, target: str) -> None:
        self.flush()
        self.sync_budget()
        self.store_field(abi.OFF_PC, target)
        self.to_dispatcher()

    def to_dispatcher(self) -> None:
        """Goes on at the pc just stored: tier 1 tail-calls the dispatcher; tier 0 returns to the
        loop in mirage_enter (a musttail call costs LLVM's fast instruction selector its fast
        path, doubling a cold block's compile time)."""
        if self.tier == 0:
            self.emit(f"ret i64 {abi.EXIT_NEXT}")
            return
        r = self.tmp()
        self.emit(f"{r} = musttail call i64 @mirage_dispatch(ptr %h)")
        self.emit(f"ret i64 {r}")

    def callout(self, name: str, args: str) -> str:
        """Calls into the runtime: through the preserve_most trampoline from tier 1 (its fast
        paths keep their registers), directly with the C convention from tier 0 (which keeps
        nothing in registers, and whose fast instruction selector handles only C calls)."""
        if self.tier == 0:
            return self.call("i64", f"@{name}_c", args)
        return self.call("preserve_mostcc i64", f"@{name}", args)

    def branch(self, cond: str, taken: int, fallthrough: int) -> None:
        j = self.internal.get(taken)
        skipped = range(self.index + 1, j) if j is not None else range(0)
        if (self.index < self.n_insns - 1 and 0 < len(skipped) <= self.speculate
                and all(k in self.speculable for k in skipped) and not any(k in self.pending for k in skipped)):
            # If-conversion: the skipped instructions run on this path too; join selects.
            self.spec.setdefault(j, []).append((cond, dict(self.x_cache), dict(self.f_cache), len(skipped)))
            return
        t, f = self.label("bt"), self.label("bf")
        self.emit(f"br i1 {cond}, label %{t}, label %{f}")
        self.start_block(t)
        last = self.index == self.n_insns - 1
        j = self.internal.get(taken)
        if not last and j is not None and j > self.index:
            # A forward branch to a later instruction of this block: both paths meet there, and
            # the registers they disagree on get phis (see join). The skipped instructions were
            # counted by the prologue, so the taken path gives them back.
            budget = self._give_back(j - self.index - 1)
            self.pending.setdefault(j, []).append((t, dict(self.x_cache), dict(self.f_cache), budget))
            self.emit(f"br label %join{j}")
            self.start_block(f)
            return
        if not last and taken in self.members:
            # A side exit to a loop member: give the skipped instructions back, in SSA.
            cur = self.budget
            self.budget = self._give_back(self.n_insns - self.index - 1)
            self.exit_direct(taken)
            self.budget = cur
            self.start_block(f)
            return
        if not last:
            # A side exit: the block goes on with the fall-through path.
            cur = self.budget
            self.flush()
            self._give_back(self.n_insns - self.index - 1, write=True)
            self.budget = None  # Written back for this path
            self.exit_direct(taken)
            self.budget = cur
            self.start_block(f)
            return
        self.exit_direct(taken)
        self.start_block(f)
        self.exit_direct(fallthrough)
        self.terminated = True

    def sys_callout(self, raw: int, desc: int = 0) -> None:
        """Ends the block with a system callout that performs the instruction and sets pc."""
        self.flush()
        self.sync_budget()
        remain = self.n_insns - self.index - 1
        d = desc | (remain << abi.DESC_REMAIN_SHIFT) | (abi.DESC_COMPRESSED if self.insn_len == 2 else 0)
        self.callout("mirage_sys", f"ptr %h, i64 {raw}, i64 {const(self.insn_pc)}, i64 {d}")
        stop = self.load_field(abi.OFF_EXIT_NOW, "i32")
        c = self.icmp("ne", stop, "0", "i32")
        out, cont = self.label("sysexit"), self.label("sysok")
        self.emit(f"br i1 {c}, label %{out}, label %{cont}")
        self.start_block(out)
        self.emit(f"ret i64 {abi.EXIT_CALLOUT}")
        self.start_block(cont)
        self.to_dispatcher()
        self.terminated = True
