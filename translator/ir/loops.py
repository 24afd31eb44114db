"""Loops inside one function: a self-loop (a block that branches back to its own start) and a region
(several blocks of a page, each a member with a header; a direct exit to a member branches to its
header). Registers, the instruction budget and the members' iteration counters flow along these
in-function edges in phis; each edge counts the member it enters against the budget, and leaves to
the run loop when the budget runs out, as the block's prologue does."""

from __future__ import annotations

from translator import abi
from translator.ir.text import const


class Loops:
    """Member headers and in-function edges (uses members, _phis, _incoming, x_cache, f_cache,
    budget, counts)."""

    def begin_loop(self, regs: set[tuple[str, int]], members: list[tuple[int, int]] | None = None,
                   written: set[tuple[str, int]] | None = None) -> None:
        """Starts the loop at the first member: every register the members touch is loaded here;
        those they write (`written`, default all) are carried in phis, the others keep the value
        loaded here. `members`: (pc, instruction count) of each; default the block itself."""
        members = members or [(self.pc, self.n_insns)]
        self.loop = True
        self.fixed = {}
        if written is not None:
            for kind, r in sorted(regs - written):
                self.fixed[(kind, r)] = self.load_field((abi.OFF_X if kind == "x" else abi.OFF_F) + 8 * r)
            regs = regs & written
        self.members = {pc: k for k, (pc, _) in enumerate(members)}
        self.member_insns = [n for _, n in members]
        self.member_pcs = [pc for pc, _ in members]
        self.carried = sorted(regs)
        inits = {}
        for kind, r in self.carried:
            inits[(kind, r)] = self.load_field((abi.OFF_X if kind == "x" else abi.OFF_F) + 8 * r)
        entry = self._last_label()
        if entry == "entry":
            entry = "body"  # The prologue's last block (function_text)
        self._incoming = {k: [] for k in range(len(members))}
        # The entry edge: the prologue counted the first member; counters as loaded there.
        state = {("b", 0): "%b1", **{("c", k): f"%lce{k}" for k in range(len(members))}, **inits}
        self._incoming[0].append((entry, state))
        self.emit("br label %loop")
        self.enter_member(0)

    def enter_member(self, k: int) -> None:
        """Starts member k at its header: phis for the budget, the counters and the registers."""
        self.start_block("loop" if k == 0 else f"loop{k}")
        self.n_insns = self.member_insns[k]
        self.terminated = False
        self.internal = {}
        self.pending = {}
        self.spec = {}
        self.speculable = set()
        self.x_cache, self.x_dirty, self.f_cache, self.f_dirty = {}, set(), {}, set()
        for (kind, r), v in self.fixed.items():
            (self.x_cache if kind == "x" else self.f_cache)[r] = v
        keys = [("b", 0), *(("c", j) for j in range(len(self.member_insns))), *self.carried]
        self.counts = {}
        for key in keys:
            kind, r = key
            phi = f"%lb{k}" if kind == "b" else f"%l{kind}{r}_{k}" if kind == "c" else f"%p{kind}{r}_{k}"
            # The incoming values are known once every edge is emitted (finish_loop).
            self._phis.append((k, key, phi, len(self.lines)))
            self.emit(f"{phi} = phi i64")
            if kind == "b":
                self.budget = phi
            elif kind == "c":
                self.counts[r] = phi
            elif kind == "x":
                self.x_cache[r] = phi
                self.x_dirty.add(r)
            else:
                self.f_cache[r] = phi
                self.f_dirty.add(r)

    def edge(self, k: int) -> None:
        """Branches to member k's header: count it against the budget, or leave to the run loop
        at its pc when the budget is out. The current path's state is left unchanged."""
        n = self.op("sub", self.budget, str(self.member_insns[k]))
        out = self.icmp("slt", n, "0")
        go, stop = self.label("edge"), self.label("edgeout")
        self.emit(f"br i1 {out}, label %{stop}, label %{go}, !prof !1")
        self.start_block(go)
        # Iteration counter (statistics): carried in a phi, stored without reloading it.
        c = self.op("add", self.counts[k], "1")
        self.emit(f"store i64 {c}, ptr @{self.name}_l{k or ''}")
        state = {("b", 0): n, **{("c", j): (c if j == k else v) for j, v in self.counts.items()}}
        for kind, r in self.carried:
            cache = self.x_cache if kind == "x" else self.f_cache
            v = cache.get(r)
            if v is None:
                # Dropped after a callout (which wrote it back): read it without caching it here
                v = self.load_field((abi.OFF_X if kind == "x" else abi.OFF_F) + 8 * r)
            state[(kind, r)] = v
        self._incoming[k].append((go, state))
        self.emit(f"br label %{'loop' if k == 0 else f'loop{k}'}")
        self.start_block(stop)
        self.flush()
        self.sync_budget()
        self.store_field(abi.OFF_PC, const(self.member_pcs[k]))
        self.emit(f"ret i64 {abi.EXIT_POLL}")

    def finish_loop(self) -> bool:
        """Completes the header phis; False if a member other than the first is never branched to
        (then the loop cannot be built this way)."""
        if any(not arms for arms in self._incoming.values()):
            return False
        for k, key, phi, at in self._phis:
            arms = ", ".join(f"[ {state[key]}, %{label} ]" for label, state in self._incoming[k])
            self.lines[at] = f"  {phi} = phi i64 {arms}"
        return True
