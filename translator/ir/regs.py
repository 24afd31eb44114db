"""Guest registers in a block: SSA values cached between accesses, written back (flushed) at exits
and slow paths; tier 0 writes them through. Forward branches inside a block meet in `join`, where
registers the paths disagree on get phis."""

from __future__ import annotations

from translator import abi


class Registers:
    """Register access (uses x_cache/x_dirty, f_cache/f_dirty, touched, pending, budget)."""

    def x(self, r: int) -> str:
        if r == 0:
            return "0"
        self.touched.add(("x", r))
        if self.tier == 0:
            return self.load_field(abi.OFF_X + 8 * r)
        v = self.x_cache.get(r)
        if v is None:
            v = self.load_field(abi.OFF_X + 8 * r)
            self.x_cache[r] = v
        return v

    def set_x(self, r: int, value: str) -> None:
        if r == 0:
            return
        self.touched.add(("x", r))
        self.written.add(("x", r))
        if self.tier == 0:
            self.store_field(abi.OFF_X + 8 * r, value)
            return
        self.x_cache[r] = value
        self.x_dirty.add(r)

    def f(self, r: int) -> str:
        self.touched.add(("f", r))
        if self.tier == 0:
            return self.load_field(abi.OFF_F + 8 * r)
        v = self.f_cache.get(r)
        if v is None:
            v = self.load_field(abi.OFF_F + 8 * r)
            self.f_cache[r] = v
        return v

    def set_f(self, r: int, value: str) -> None:
        self.touched.add(("f", r))
        self.written.add(("f", r))
        if self.tier == 0:
            self.store_field(abi.OFF_F + 8 * r, value)
            return
        self.f_cache[r] = value
        self.f_dirty.add(r)

    def store_x(self, r: int, value: str) -> None:
        """Writes an integer register through to the hart struct (for paths that leave at once)."""
        if r:
            self.store_field(abi.OFF_X + 8 * r, value)

    def flush(self) -> None:
        """Writes dirty registers back; they stay cached (used on slow paths that rejoin)."""
        for r in sorted(self.x_dirty):
            self.store_field(abi.OFF_X + 8 * r, self.x_cache[r])
        for r in sorted(self.f_dirty):
            self.store_field(abi.OFF_F + 8 * r, self.f_cache[r])

    def forget(self) -> None:
        """After a callout that may change registers: drop cached values (call flush first)."""
        self.x_cache.clear()
        self.x_dirty.clear()
        self.f_cache.clear()
        self.f_dirty.clear()

    def preload(self, regs: set[tuple[str, int]]) -> None:
        """Loads every register the block touches at its entry, so values dominate every join."""
        for kind, r in sorted(regs):
            if kind == "x":
                self.x(r)
            else:
                self.f(r)

    def join(self, index: int) -> None:
        """Starts instruction `index` where forward branches land: merge the register states."""
        for cond, xs, fs, skipped in self.spec.pop(index, ()):
            # If-converted: where the branch was taken, the values from before the skipped
            # instructions, and the budget they were counted in given back.
            for cache, before, dirty in ((self.x_cache, xs, self.x_dirty), (self.f_cache, fs, self.f_dirty)):
                for r, v in list(cache.items()):
                    old = before.get(r)
                    if old is None:
                        # Only in a dry run, where nothing was preloaded: forget it
                        del cache[r]
                        dirty.discard(r)
                    elif old != v:
                        cache[r] = self.select(cond, old, v)
            back = self.select(cond, str(skipped), "0")
            if self.budget is not None:
                self.budget = self.op("add", self.budget, back)
            else:
                b = self.load_field(abi.OFF_BUDGET)
                self.store_field(abi.OFF_BUDGET, self.op("add", b, back))
        incoming = self.pending.pop(index, None)
        if not incoming:
            return
        fall = self._last_label()
        self.emit(f"br label %join{index}")
        self.start_block(f"join{index}")
        states = [*incoming, (fall, self.x_cache, self.f_cache, self.budget)]
        for pos, kind in ((1, "x"), (2, "f")):
            merged: dict[int, str] = {}
            for r in set().union(*(st[pos].keys() for st in states)):
                vals = [st[pos].get(r) for st in states]
                if any(v is None for v in vals):
                    # Only in a dry run, where nothing was preloaded: forget it
                    (self.x_dirty if kind == "x" else self.f_dirty).discard(r)
                    continue
                if len(set(vals)) == 1:
                    merged[r] = vals[0]
                    continue
                phi = self.tmp()
                arms = ", ".join(f"[ {v}, %{st[0]} ]" for v, st in zip(vals, states, strict=True))
                self.emit(f"{phi} = phi i64 {arms}")
                merged[r] = phi
            if kind == "x":
                self.x_cache = merged
            else:
                self.f_cache = merged
        if self.budget is not None:
            vals = [st[3] for st in states]
            if len(set(vals)) > 1:
                phi = self.tmp()
                arms = ", ".join(f"[ {v}, %{st[0]} ]" for v, st in zip(vals, states, strict=True))
                self.emit(f"{phi} = phi i64 {arms}")
                self.budget = phi
            else:
                self.budget = vals[0]
