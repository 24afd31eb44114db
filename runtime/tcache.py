"""Translation cache: blocks keyed by (virtual pc, physical pc, flags), the native jump cache in
front of it, chain slots between blocks, and invalidation by cause.

Blocks on one guest page chain directly (a slot per static exit, patched when the target exists);
anything else goes through the native dispatcher's jump cache. Invalidation unpatches slots and
clears jump-cache entries; compiled code is never freed while a block could still be running.
"""

from __future__ import annotations

import ctypes
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

from runtime.hart import Hart
from translator import abi
from translator.block import BlockCode, build, module_text, scan
from translator.ir import HOT_THRESHOLD
from translator.jit import Engine

_u64 = ctypes.c_uint64


@dataclass(eq=False)
class Block:
    vpc: int
    ppc: int
    flags: int
    fn: int
    n_insns: int
    end_ppc: int  # Physical end (exclusive) of the guest bytes it was translated from
    pages: tuple[int, ...]
    slots: list[tuple[int, tuple[int, int, int]]] = field(default_factory=list)  # (slot addr, target key)
    execs: int = 0
    valid: bool = True
    tier: int = 1
    insn_pcs: list[int] = field(default_factory=list)


class TranslationCache:
    """Per-machine cache of translated blocks (shared by its harts)."""

    def __init__(self, engine: Engine, dispatch_addr: int, batch: int = 64) -> None:
        self.engine = engine
        self.dispatch_addr = dispatch_addr
        self.batch = batch
        self.blocks: dict[tuple[int, int, int], Block] = {}
        self.by_page: dict[int, set[Block]] = {}
        self.by_fn: dict[int, Block] = {}
        # Slots waiting for a target key, and slots currently patched to a block.
        self.waiting: dict[tuple[int, int, int], list[int]] = {}
        self.patched: dict[Block, list[int]] = {}
        self._names = itertools.count()
        self.invalidations: Counter[str] = Counter()
        self.translated_blocks = 0
        self.translated_insns = 0
        self.translate_seconds = 0.0
        self.fence_i = 0  # fence.i executed (stale code was already dropped when it was written)
        # New blocks start at tier 0 (compact, counted) and are recompiled at tier 1 after
        # `hot_threshold` executions; a threshold of 0 compiles everything at tier 1 at once.
        self.tier = 0
        self.hot_threshold = HOT_THRESHOLD
        self.tier0_opt = 0  # LLVM codegen level for tier 0
        self.by_tier: Counter[int] = Counter()
        self.promotions = 0
        self.events: list[tuple[float, str, int]] = []  # (time, kind, count) for the statistics tool
        self.t0 = time.perf_counter()
        self.on_translate = None  # Hook for -d in_asm: fn(block_code)
        self.on_pages = None  # fn(physical pages): they now hold code (the machine watches them)
        # Chaining patches exits to their targets; off while every block must pass through Python
        # (-d exec, single-stepping).
        self.chaining = True
        # Self-loops iterate inside their function; off when every execution must be seen (-d exec).
        self.loops = True

    def lookup(self, vpc: int, ppc: int, flags: int) -> Block | None:
        return self.blocks.get((vpc, ppc, flags))

    def translate(self, hart: Hart, vpc: int, ppc: int, flags: int, fetch16, to_phys,
                  tier: int | None = None) -> Block:
        """Translates the block at vpc and, in the same module, code likely to run soon: its static
        successors and the return sites of its calls (breadth first, up to `batch` blocks)."""
        t0 = time.perf_counter()
        codes: list[tuple[BlockCode, int]] = []
        work = [(vpc, ppc)]
        seen = {vpc}
        while work and len(codes) < self.batch:
            pc, phys = work.pop(0)
            if pc != vpc and (pc, phys, flags) in self.blocks:
                continue
            try:
                insns = scan(pc, flags, fetch16)
            except Exception:
                if pc == vpc:
                    raise
                continue
            name = f"b{next(self._names)}"
            code = build(pc, flags, insns, name, loops=self.loops, tier=self.tier if tier is None else tier,
                         hot=self.hot_threshold)
            codes.append((code, phys))
            for target in code.targets:
                if target in seen:
                    continue
                seen.add(target)
                if target >> abi.PAGE_BITS == pc >> abi.PAGE_BITS:
                    work.append((target, phys + (target - pc)))
                elif to_phys is not None:
                    tphys = to_phys(target)
                    if tphys is not None:
                        work.append((target, tphys))
        text = module_text(codes_only := [c for c, _ in codes], self._extra_decls())
        exports = [c.name for c in codes_only] + [s for c in codes_only for s, _ in c.chain_slots]
        block_tier = self.tier if tier is None else tier
        addrs, _obj = self.engine.compile(text, exports, len(codes_only),
                                          opt=self.tier0_opt if block_tier == 0 else None)
        first = None
        for code, phys in codes:
            last_pc = code.insns[-1][0]
            end_ppc = phys + (code.end_pc - code.pc)
            pages = tuple(sorted({phys >> abi.PAGE_BITS, (phys + (last_pc - code.pc)) >> abi.PAGE_BITS,
                                  (end_ppc - 1) >> abi.PAGE_BITS}))
            blk = Block(code.pc, phys, flags, addrs[code.name], code.n_insns, end_ppc, pages,
                        insn_pcs=[p for p, _, _ in code.insns], tier=block_tier)
            self._insert(blk, [(addrs[s], (t, phys + (t - code.pc), flags)) for s, t in code.chain_slots])
            if self.on_pages is not None:
                self.on_pages(pages)
            self.translated_blocks += 1
            self.by_tier[block_tier] += 1
            self.translated_insns += code.n_insns
            if first is None:
                first = blk
            if self.on_translate is not None:
                self.on_translate(code)
        self.translate_seconds += time.perf_counter() - t0
        self.events.append((time.perf_counter() - self.t0, "translate", len(codes)))
        assert first is not None
        return first

    def _extra_decls(self) -> str:
        from translator.emit import rvf
        return rvf.DECLS

    def _insert(self, blk: Block, slots: list[tuple[int, tuple[int, int, int]]]) -> None:
        key = (blk.vpc, blk.ppc, blk.flags)
        old = self.blocks.get(key)
        if old is not None:
            self._drop(old)
        self.blocks[key] = blk
        self.by_fn[blk.fn] = blk
        for p in blk.pages:
            self.by_page.setdefault(p, set()).add(blk)
        blk.slots = slots
        # Patch this block's exits to existing targets, or wait for them.
        for addr, tkey in slots:
            target = self.blocks.get(tkey)
            if target is not None and len(target.pages) == 1 and self.chaining:
                _u64.from_address(addr).value = target.fn
                self.patched.setdefault(target, []).append(addr)
            else:
                self.waiting.setdefault(tkey, []).append(addr)
        # Patch slots that were waiting for this block.
        if len(blk.pages) == 1 and self.chaining:
            for addr in self.waiting.pop(key, ()):
                _u64.from_address(addr).value = blk.fn
                self.patched.setdefault(blk, []).append(addr)

    def _drop(self, blk: Block) -> None:
        """Removes a block from lookup: unpatch slots into it, forget its own slots."""
        if not blk.valid:
            return
        blk.valid = False
        key = (blk.vpc, blk.ppc, blk.flags)
        if self.blocks.get(key) is blk:
            del self.blocks[key]
        self.by_fn.pop(blk.fn, None)
        for p in blk.pages:
            s = self.by_page.get(p)
            if s is not None:
                s.discard(blk)
                if not s:
                    del self.by_page[p]
        for addr in self.patched.pop(blk, ()):
            _u64.from_address(addr).value = self.dispatch_addr
            self.waiting.setdefault(key, []).append(addr)
        for addr, tkey in blk.slots:
            lst = self.waiting.get(tkey)
            if lst is not None and addr in lst:
                lst.remove(addr)

    def set_hot_threshold(self, n: int) -> None:
        self.hot_threshold = n
        self.tier = 0 if n > 0 else 1

    def promote(self, old: Block, hart: Hart, harts: list[Hart], fetch16) -> Block:
        """Recompiles a tier-0 block that reached its threshold at tier 1 and makes the new code
        reachable wherever the old one was (chain slots, jump caches)."""
        batch, self.batch = self.batch, 1
        try:
            new = self.translate(hart, old.vpc, old.ppc, old.flags, fetch16, None, tier=1)
        finally:
            self.batch = batch
        self.promotions += 1
        for h in harts:
            e = h.s.jc[(new.vpc >> 1) & (abi.JC_SIZE - 1)]
            if int(abi.ffi.cast("uintptr_t", e.fn)) == old.fn:
                self.jc_insert(h, new)
        return new

    def unchain_all(self) -> None:
        """Points every patched slot back at the dispatcher (entering -d exec or stepping)."""
        for blk, addrs in self.patched.items():
            key = (blk.vpc, blk.ppc, blk.flags)
            for addr in addrs:
                _u64.from_address(addr).value = self.dispatch_addr
                self.waiting.setdefault(key, []).append(addr)
        self.patched.clear()

    def invalidate_range(self, paddr: int, size: int, cause: str, harts: list[Hart]) -> int:
        """Drops blocks whose source bytes overlap [paddr, paddr+size). Returns how many."""
        hit = [b for b in self.by_page.get(paddr >> abi.PAGE_BITS, ()) if b.ppc < paddr + size and paddr < b.end_ppc]
        for b in hit:
            self._drop(b)
            for h in harts:
                self.jc_remove(h, b)
        if hit:
            self.invalidations[cause] += len(hit)
            self.events.append((time.perf_counter() - self.t0, cause, len(hit)))
        return len(hit)

    def page_has_code(self, ppn: int) -> bool:
        return ppn in self.by_page

    # Jump cache (native, per hart)
    @staticmethod
    def jc_insert(hart: Hart, blk: Block) -> None:
        e = hart.s.jc[(blk.vpc >> 1) & (abi.JC_SIZE - 1)]
        e.vpc = blk.vpc
        e.flags = blk.flags
        e.fn = abi.ffi.cast("void *", blk.fn)

    @staticmethod
    def jc_remove(hart: Hart, blk: Block) -> None:
        e = hart.s.jc[(blk.vpc >> 1) & (abi.JC_SIZE - 1)]
        if int(abi.ffi.cast("uintptr_t", e.fn)) == blk.fn:
            e.vpc = (1 << 64) - 1
            e.fn = abi.ffi.NULL

    def jc_flush(self, hart: Hart, cause: str) -> None:
        """Clears the virtual-pc lookup (satp, sfence.vma); translations stay valid."""
        ctypes.memset(hart.ptr + abi.OFF_JC, 0xFF, abi.JC_SIZE * abi.JC_ENTRY)
        self.invalidations[cause] += 1
        self.events.append((time.perf_counter() - self.t0, cause, 1))
