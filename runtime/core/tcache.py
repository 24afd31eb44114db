"""Translation cache: blocks keyed by (virtual pc, physical pc, flags), the native jump cache in
front of it, chain slots between blocks, and invalidation by cause.

Blocks on one guest page chain directly (a slot per static exit, patched when the target exists);
anything else goes through the native dispatcher's jump cache. Invalidation unpatches slots and
clears jump-cache entries. A module whose blocks are all dropped is unloaded at the next safe
point (a translation or promotion, which the run loop calls with no guest code on the stack),
after the jump-cache entries of its blocks are cleared: nothing can run or reach it any more.
Code on a page whose code keeps being overwritten is kept out of the persistent cache.

The memory of translations is bounded (`tb_size`, as QEMU's tb-size): when the modules linked
since the last flush reach it, at the next such safe point every translation is dropped and the
JIT that held them is replaced, which frees them for real (unloading a module alone leaves LLVM's
bookkeeping of it behind). Code that still runs is translated again as it warms up, from the
persistent cache when its module is the same.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from runtime.core.hart import Hart
from translator import abi
from translator.block import (
    MAX_BLOCK_INSNS,
    BlockCode,
    FetchFault,
    build,
    build_region,
    insns_end,
    module_text,
    scan,
)
from translator.interp import HEADS_SIZE, heads_index
from translator.ir import HOT_THRESHOLD
from translator.jit import Compilation, Engine

_u64 = ctypes.c_uint64
_MASK64 = (1 << 64) - 1
# Warm heads go to the worker at once when it is idle (a hot loop waits for its code in the
# interpreter, about 8 times slower), else WARM_BATCH at a time or when its work is done: fewer,
# larger modules, each of which costs the main thread a link and keeps LLVM memory.
WARM_BATCH = 32
# Seconds of one bucket of the statistics' event time line, at first: when it holds MAX_EVENTS
# entries, its buckets are made twice as wide (a day-long run keeps a few thousand entries).
EVENT_BUCKET = 0.05
MAX_EVENTS = 4096
# A queued head's counter: far below the threshold until its translation is in.
HEAD_QUEUED = -(1 << 30)
# Blocks recompiled together when one becomes hot (the hot one plus warm ones).
PROMOTE_BATCH = 32
# Regions (several blocks of a page in one function, see `_form_regions`): at most this many
# members, so a region's header phis (registers and counters, per member) stay few.
REGION_BLOCKS = 8
# ... and at most this much IR text in its members' own blocks: a region saves a block transition
# per branch between members, but LLVM's time grows with the IR, and large members (FP code,
# whose blocks are many times the IR of integer ones) save little relative to their work
# (fpkernel: regions of 100 FP instructions took its tier-1 code from 74 to 107 KB, compile from
# 0.3 to 0.7 s, for no faster loops).
REGION_IR = 24_000
# Regions are formed at all (off: every block keeps its own function, as before regions).
REGIONS = True
# Code-write invalidations of a physical page after which code translated from it is not kept
# in the persistent cache (self-modifying code: each version would be a new entry).
VOLATILE_WRITES = 8
# Host memory a linked module costs beyond its object file, and what an unloaded one keeps until
# the JIT is replaced (LLVM's library and symbol tables): 40 to 50 KB and about 10 KB measured
# (RSS against modules linked) with linux-shell's modules, most of them of one to a few blocks.
MODULE_COST = 48 << 10
RELEASED_COST = 10 << 10


def _insn_count(raw: bytes) -> int:
    """How many instructions guest bytes `raw` hold (16- and 32-bit)."""
    n = at = 0
    while at < len(raw):
        n += 1
        at += 4 if raw[at] & 3 == 3 else 2
    return n


def _guest_bytes(insns: list[tuple[int, object, int]]) -> bytes:
    """The guest bytes of scanned instructions (pc, insn, raw)."""
    return b"".join(r.to_bytes(4 if r & 3 == 3 else 2, "little") for _, _, r in insns)


# A block's or region's function name (`_block_name`): its base, and its number if not the first
_FUNCTION_NAME = re.compile(r"([br][0-9a-f]+_[0-9a-f]+_[0-9a-f]+_[0-9]+)(?:v([0-9]+))?")
# A head of a block in the warm set: its first execution reaches the warm threshold.
HEAD_PRIMED = (1 << 31) - (1 << 16)
# In a run that installed a warm set, a head must run this many times the warm threshold before it
# is translated. What runs often is in already; heads that warm later are mostly code whose count
# straddles the threshold from run to run (timing, interrupts), and a translation (about 1 ms of
# the main thread) pays only for a head that goes on running. linux-shell's first warm boot
# translated about 90 such heads at 1x, about 10 at 4x, and interpreted as many instructions.
WARM_START_FACTOR = 4
# Blocks a warm set holds at most (a linux-shell boot translates about 2,000).
MAX_WARM_SET = 50_000
# Default bound of the translations' host memory (estimated as above): reaching it flushes the
# cache. A linux-shell boot needs about 20 MiB of it, a shell loop's first minutes 170 MiB.
TB_SIZE = 192 << 20


@dataclass(eq=False)
class Block:
    vpc: int
    ppc: int
    flags: int
    fn: int
    n_insns: int
    end_ppc: int  # Physical end (exclusive) of the guest bytes it was translated from
    pages: tuple[int, ...]  # Physical pages of those bytes (sorted)
    slots: list[tuple[int, tuple[int, int, int]]] = field(default_factory=list)  # (slot addr, target key)
    execs: int = 0
    valid: bool = True
    tier: int = 1
    counter: int = 0  # Address of its execution counter (@<name>_n)
    module: _Module | None = None  # The linked module its code is in
    # A region's physical byte ranges [lo, hi), one per member (a block's own is [ppc, end_ppc));
    # a block crossing pages: the end of its first page, then the start of `second`
    ranges: tuple[tuple[int, int], ...] = ()
    interpreted: int = 0  # Its executions in the interpreter before it went in (a warm head's)
    # A block whose first instruction crosses into the next virtual page: the physical address
    # of the frame that page mapped to when it was translated (any frame, not the first's next)
    second: int | None = None

    def covers(self, lo: int, hi: int) -> bool:
        """Whether guest bytes it was translated from lie in the physical range [lo, hi)."""
        return any(a < hi and lo < b for a, b in self.ranges or ((self.ppc, self.end_ppc),))

    def covers_vpc(self, vpc: int) -> bool:
        """Whether the instruction bytes it was translated from include virtual address vpc."""
        if self.second is not None:  # Contiguous virtually, not physically
            return self.vpc <= vpc < self.vpc + sum(b - a for a, b in self.ranges)
        return any(self.vpc <= vpc + self.ppc - a < self.vpc + (b - a) for a, b in
                   self.ranges or ((self.ppc, self.end_ppc),))


@dataclass(eq=False)
class _Module:
    """A linked module: unloaded once none of its blocks is in the cache any more."""

    lib: object  # The engine's library (resource tracker)
    blocks: list[Block] = field(default_factory=list)
    records: list[int] = field(default_factory=list)  # Its translations' indices in `history`
    live: int = 0  # Its blocks still in the cache
    cost: int = 0  # Estimated host memory (MODULE_COST plus its object's size)
    code_bytes: int = 0  # Host machine code in it
    # Its object's persistent-cache key and exported symbols, if it is in that cache (a warm set
    # can name it then).
    key: str | None = None
    exports: tuple[str, ...] = ()


class _Saved(NamedTuple):
    """A translation as a warm set keeps it: tier, guest bytes, symbol, chain slots (symbol,
    target pc), its module (cache key, exports) and, for a region, each member's pc and guest
    bytes (the first is the region's own block: `raw`)."""

    tier: int
    raw: bytes
    name: str
    slots: tuple[tuple[str, int], ...]
    module: tuple[str, tuple[str, ...]]
    members: tuple[tuple[int, bytes], ...] = ()

    def parts(self, vpc: int) -> tuple[tuple[int, bytes], ...]:
        """(pc, guest bytes) of each member, or of the block alone."""
        return self.members or ((vpc, self.raw),)


@dataclass(eq=False)
class _WarmModule:
    """A module of the warm set loaded at start: its cache key, exports and the keys of its
    blocks not yet installed; `mod`/`addrs` once linked."""

    key: str
    exports: tuple[str, ...]
    members: list[tuple[int, int, int]] = field(default_factory=list)
    mod: _Module | None = None
    addrs: dict[str, int] | None = None
    failed: bool = False
    # Its object linked by the worker thread at start (`_link_object`'s result)
    linked: concurrent.futures.Future | None = None


class BlockRecord(NamedTuple):
    """A translation as the statistics see it (kept after the block is dropped): its key, tier,
    guest code, and the addresses of its execution counters (@<name>_n: i32 at tier 0, i64 at
    tier 1; @<name>_l: i64 loop iterations of a self-loop block, or 0). A region member's
    record has its in-region entries as loop counter (its first member also the region's entries)
    and the region's number in `region`."""

    vpc: int
    ppc: int
    flags: int
    tier: int
    n_insns: int
    counter: int
    loop_counter: int
    code: bytes  # Guest bytes it was translated from
    hot: int  # Tier 0: the promotion threshold compiled in (its last count did not execute)
    region: int = 0  # Region number (from 1), 0 for a block's own translation


@dataclass
class TierStats:
    blocks: int = 0
    insns: int = 0
    modules: int = 0
    compiled: int = 0  # Modules LLVM compiled (the others were linked from the persistent cache)
    cached: int = 0
    compile_seconds: float = 0.0
    object_bytes: int = 0
    code_bytes: int = 0


@dataclass(eq=False)
class _Job:
    """A module being translated: its blocks (with physical pcs), their flags and tier, the
    compilation, and for a promotion the tier-0 blocks it replaces."""

    codes: list[tuple[BlockCode, int]]
    flags: int
    tier: int
    compilation: Compilation
    olds: dict[tuple[int, int, int], Block] = field(default_factory=dict)
    warm: bool = False  # New blocks the interpreter found warm (see TranslationCache.warm)
    second: int | None = None  # The first block's second frame, if it crosses pages (Block.second)


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
        self.regions = 0  # Regions formed (numbered from 1; runtime/frontends/stats.py counts those installed)
        self.events: list[tuple[float, str, int]] = []  # (time, kind, count) for the statistics tool
        self._last_event: dict[str, int] = {}
        self.event_bucket = EVENT_BUCKET
        self.t0 = time.perf_counter()
        self.on_translate = None  # Hook for -d in_asm: fn(block_code)
        self.on_pages = None  # fn(physical pages, lo, hi): bytes [lo, hi) from them are now code
        self.read_phys = None  # fn(paddr, n) -> bytes: guest RAM, to check background work is current
        # Chaining patches exits to their targets; off while every block must pass through Python
        # (-d exec, single-stepping).
        self.chaining = True
        # Self-loops iterate inside their function; off when every execution must be seen (-d exec).
        self.loops = True
        # Debugger breakpoints (virtual pcs): blocks end before them and a block starting at one
        # is a debug stop (runtime/frontends/gdbstub.py).
        self.breakpoints: set[int] = set()
        # Statistics (runtime/frontends/stats.py): every translation, per-tier compile work, blocks and
        # instructions per privilege mode, block-table lookups (on jump-cache misses).
        self.history: list[BlockRecord] = []
        self.tier_stats: dict[int, TierStats] = {0: TierStats(), 1: TierStats()}
        self.by_mode: Counter[int] = Counter()
        self.insns_by_mode: Counter[int] = Counter()
        self.lookups = 0
        self.lookup_hits = 0
        self._name_uses: Counter[str] = Counter()
        # Promotions compiled in the engine's worker thread (install_ready puts them in).
        self.background = False
        self.pending: list[_Job] = []
        self.promoting: set[tuple[int, int, int]] = set()
        # Warm heads waiting for the worker (queued by flags) and the keys of blocks on their way.
        self.warm_queue: dict[int, list[tuple[int, int]]] = {}
        self.warming: set[tuple[int, int, int]] = set()
        self.warm_dropped = 0  # Background translations whose guest bytes changed before install
        self.warm_heads = 0  # Heads queued for translation
        self.warm_queued = 0
        # The interpreter's tables (translator/interp.py), set by the machine: head counters and
        # the native block table, and the RAM base its physical keys are relative to.
        self.heads = 0
        self.btab = 0
        self.ram_base = 0
        self.warm_blocks = 0  # Blocks installed from them
        # Blocks in a jump cache that cross into a second page, by (hart, second page).
        self.jc_cross: dict[tuple[int, int], set[Block]] = {}
        self.jc_harts: dict[int, Hart] = {}  # Harts whose jump cache holds blocks, by struct address
        # Modules whose blocks are all dropped, unloaded at the next safe point (`reap`).
        self.dead: list[_Module] = []
        self.released = 0  # Modules unloaded
        self._frozen: list = []  # Final execution counts of unloaded translations (for `history`)
        # Code-write invalidations by physical page (VOLATILE_WRITES).
        self.code_writes: Counter[int] = Counter()
        # The bound of the translations' memory (0: none), and what the engine's JIT holds
        # towards it: estimated bytes, and the modules not unloaded (their blocks and code).
        self.tb_size = TB_SIZE
        self.jit_bytes = 0
        self.modules: set[_Module] = set()
        self.live_code_bytes = 0
        self.flushes = 0  # Whole-cache flushes (tb_size reached)
        self.peak_jit_bytes = 0
        # Warm start: every translation of this run that the persistent cache holds, by key (the
        # last one made wins: a promotion replaces its tier-0 block), saved for the next run; and
        # those loaded from the last run's warm set, installed when their guest bytes are in memory.
        # Off for runs whose translations are special (debugger breakpoints, -d exec, stepping).
        self.warm_start = True
        self.saved: dict[tuple[int, int, int], _Saved] = {}
        self.prepared: dict[tuple[int, int, int], tuple[_Saved, _WarmModule]] = {}
        self.primed: set[int] = set()  # Head counters primed for them (interp.heads_index)
        self.unprimed = 0  # Heads found warm only for sharing such a counter
        self.warm_loaded = 0  # Blocks in the warm set loaded
        self.restored = 0  # Blocks installed from it
        self.restored_at_start = 0  # Of those, installed before the run (their code was loaded)
        self.restore_changed = 0  # Not installed: their guest bytes had changed
        self.restore_failed = 0  # Not installed: their module was not in the cache or did not link
        self.restore_seconds = 0.0
        # At the end of a run saving its warm set (finish_warm): tier-0 blocks promoted, seconds
        self.finish_promoted = 0
        self.finish_seconds = 0.0
        # Executions of a head in the interpreter before it is translated, and where the counter
        # of a head whose warm-set translation could not be used starts (set_warm_threshold)
        self.warm_threshold = 0
        self.rewarm = 0
        self.unusable: set[tuple[int, int, int]] = set()  # Those heads (bytes changed, no module)

    def _event(self, kind: str, count: int) -> None:
        """Records `count` events of `kind` for the statistics' time line, in buckets of
        `event_bucket` seconds per kind: memory stays bounded, not by event count (a shell loop
        makes thousands of sfence.vma a second) nor by run time (MAX_EVENTS)."""
        t = time.perf_counter() - self.t0
        last = self._last_event.get(kind)
        if last is not None and t - self.events[last][0] < self.event_bucket:
            at, k, n = self.events[last]
            self.events[last] = (at, k, n + count)
            return
        self._last_event[kind] = len(self.events)
        self.events.append((t, kind, count))
        if len(self.events) > MAX_EVENTS:
            self._coarsen()

    def note_event(self, kind: str, count: int) -> None:
        """Records `count` events of `kind` made outside the cache (native code's) on the time line."""
        self._event(kind, count)

    def _coarsen(self) -> None:
        """Doubles the event buckets' width: entries of a kind in one wider bucket are summed
        (at the time of the first)."""
        self.event_bucket *= 2
        merged: dict[tuple[int, str], tuple[float, str, int]] = {}
        for t, k, n in self.events:
            key = (int(t / self.event_bucket), k)
            first = merged.get(key)
            merged[key] = (t, k, n) if first is None else (first[0], k, first[2] + n)
        self.events = sorted(merged.values(), key=lambda e: e[0])
        self._last_event = {k: i for i, (_, k, _) in enumerate(self.events)}

    def lookup(self, vpc: int, ppc: int, flags: int) -> Block | None:
        self.lookups += 1
        blk = self.blocks.get((vpc, ppc, flags))
        if blk is not None:
            self.lookup_hits += 1
        return blk

    def translate(self, hart: Hart, vpc: int, ppc: int, flags: int, fetch16, to_phys,
                  tier: int | None = None, also: list[tuple[int, int]] | None = None,
                  batch: int | None = None, second: int | None = None) -> Block:
        """Translates the block at vpc and, in the same module, code likely to run soon: its static
        successors and the return sites of its calls (breadth first, up to `batch` blocks).
        Under FLAG_STEP: only the one-instruction block at vpc, optimized, breakpoints ignored.
        `second`: the frame the page after vpc's maps to (RAM), if the block may cross into it."""
        t0 = time.perf_counter()
        self.reap()
        saved = self.batch
        if batch is not None:
            self.batch = batch
        try:
            job = self._prepare(vpc, ppc, flags, fetch16, to_phys, tier, also, background=False, second=second)
        finally:
            self.batch = saved
        first = self._install(job)
        self.translate_seconds += time.perf_counter() - t0
        assert first is not None
        return first

    def _prepare(self, vpc: int, ppc: int, flags: int, fetch16, to_phys, tier: int | None,
                 also: list[tuple[int, int]] | None, background: bool, only_listed: bool = False,
                 heat: dict[int, int] | None = None, second: int | None = None) -> _Job:
        """Scans and builds the module's blocks and starts compiling it; with `heat` (a promotion's
        tier-0 execution counts by pc), forms regions of them (`_form_regions`). Only the first
        block may cross pages, and only with `second` (its second frame) known: it is read from
        ppc's and that frame (the others are left out: they are translated when first reached)."""
        step = bool(flags & abi.FLAG_STEP)
        if step:
            tier = 1
        block_tier = self.tier if tier is None else tier
        codes: list[tuple[BlockCode, int]] = []
        crossing = None  # The first block's second frame, if it crosses
        work = [(vpc, ppc), *(also or ())]
        seen = {vpc, *(pc for pc, _ in also or ())}
        replace = {(pc, phys) for pc, phys in work}
        while work and len(codes) < (1 if step else self.batch):
            pc, phys = work.pop(0)
            if (pc, phys) not in replace and (pc, phys, flags) in self.blocks:
                continue
            debug = not step and pc in self.breakpoints
            head = not codes and (pc, phys) == (vpc, ppc)
            if head and second is not None:
                fetch = self._phys_fetch(pc, phys, second)
            else:
                fetch = self._phys_fetch(pc, phys) if only_listed else fetch16
            try:
                insns = scan(pc, flags, fetch, 1 if step or debug else MAX_BLOCK_INSNS,
                             () if step else self.breakpoints)
            except Exception:
                if pc == vpc:
                    raise
                continue
            last_pc, _, last_raw = insns[-1]
            if (last_pc + (3 if last_raw & 3 == 3 else 1)) >> abi.PAGE_BITS != pc >> abi.PAGE_BITS:
                if head and second is None:
                    raise FetchFault(pc + 2)  # (Not reached: its callers pass `second`)
                if not head:
                    continue  # Read through the mapping, its second frame unknown
                crossing = second
            name = self._block_name(pc, phys, flags, block_tier)
            code = build(pc, flags, insns, name, loops=self.loops and not step,
                         tier=block_tier, hot=self.hot_threshold, debug=debug)
            codes.append((code, phys))
            if only_listed:
                continue
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
        from translator.emit import rvf

        if heat is not None and block_tier == 1 and not step:
            codes = self._form_regions(codes, flags, heat)
        codes_only = [c for c, _ in codes]
        exports = [c.name for c in codes_only] + [s for c in codes_only for s, _ in c.chain_slots]
        exports += [f"{c.name}_n" for c in codes_only]
        # Loop iteration counters: @<name>_l, and @<name>_l1, ... of a region's other members
        exports += [g.split(" ", 1)[0][1:] for c in codes_only for g in c.globals
                    if g.startswith(f"@{c.name}_l")]
        table = f"{codes_only[0].name}_x"
        text = module_text(codes_only, self._extra_decls(), (table, exports))
        rvf.import_slow_functions(self.engine, text)
        # Code that keeps being rewritten is compiled without the persistent cache: a new entry
        # per version would only fill it (PersistentCache.volatile).
        cache = self.engine.object_cache
        volatile = cache is not None and any(
            self.code_writes.get(p, 0) >= VOLATILE_WRITES
            for c, phys in codes for p in (phys >> abi.PAGE_BITS, (phys + c.end_pc - c.pc - 1) >> abi.PAGE_BITS))
        if crossing is not None and cache is not None:
            volatile = volatile or self.code_writes.get(crossing >> abi.PAGE_BITS, 0) >= VOLATILE_WRITES
        if volatile:
            cache.volatile = True
        try:
            compilation = self.engine.start(text, exports, len(codes_only), opt=self.tier0_opt if block_tier == 0 else None,
                                            background=background, table=table)
        finally:
            if volatile:
                cache.volatile = False
        return _Job(codes, flags, block_tier, compilation, second=crossing)

    def _form_regions(self, codes: list[tuple[BlockCode, int]], flags: int,
                      heat: dict[int, int]) -> list[tuple[BlockCode, int]]:
        """Joins promoted blocks into regions: blocks of one page (same flags) that reach each
        other through direct exits (a strongly connected set: a loop whose body spans blocks)
        become one function entered at the most executed of them. That one's own block is left
        out (the region enters there); the others keep theirs, entered from outside the region.
        Never with chaining or self-loops off (-d exec, stepping) nor over a breakpoint."""
        if not (REGIONS and self.chaining and self.loops):
            return codes
        nodes: dict[tuple[int, int], tuple[BlockCode, int]] = {}
        for code, phys in codes:
            page = code.pc >> abi.PAGE_BITS
            if (code.pc in self.breakpoints or code.members or len(code.insns) == 0
                    or (code.end_pc - 1) >> abi.PAGE_BITS != page
                    or (phys + (code.end_pc - code.pc) - 1) >> abi.PAGE_BITS != phys >> abi.PAGE_BITS):
                continue
            nodes[(code.pc, phys)] = (code, phys)
        # Edges between blocks of the same page mapping (virtual and physical offsets agree).
        succ: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for (pc, phys), (code, _) in nodes.items():
            succ[(pc, phys)] = [(t, phys + (t - pc)) for t in dict.fromkeys(code.direct)
                                if (t, phys + (t - pc)) in nodes and t >> abi.PAGE_BITS == pc >> abi.PAGE_BITS]

        def reach(start: tuple[int, int]) -> set[tuple[int, int]]:
            seen, work = {start}, [start]
            while work:
                for t in succ[work.pop()]:
                    if t not in seen:
                        seen.add(t)
                        work.append(t)
            return seen

        reached = {k: reach(k) for k in nodes}
        done: set[tuple[int, int]] = set()
        heads: dict[tuple[int, int], BlockCode] = {}
        for k in sorted(nodes):
            if k in done:
                continue
            scc = sorted(j for j in reached[k] if k in reached[j])
            done.update(scc)
            if not 2 <= len(scc) <= REGION_BLOCKS or sum(len(nodes[j][0].text) for j in scc) > REGION_IR:
                continue
            head = max(scc, key=lambda j: (heat.get(j[0], 0), -j[0]))
            order = [head, *(j for j in scc if j != head)]
            hcode, hphys = nodes[head]
            name = self._block_name(hcode.pc, hphys, flags, 1, "r")
            region = build_region([(j[0], nodes[j][0].insns) for j in order], flags, name, self.hot_threshold)
            if region is not None:
                self.regions += 1
                region.region = self.regions
                heads[head] = region
        if not heads:
            return codes
        return [(heads.get((c.pc, phys), c), phys) for c, phys in codes]

    def _install(self, job: _Job, keep=None) -> Block | None:
        """Links a prepared module and enters its blocks (those `keep(key)` accepts); the first."""
        addrs, obj, code_bytes = self._finish(job)
        comp = job.compilation
        mod = self._new_module(len(obj), code_bytes, comp.key if comp.stored else None, comp.exports)
        first = None
        for code, phys in job.codes:
            flags = job.flags
            if keep is not None and not keep((code.pc, phys, flags)):
                continue
            # A region (all on its first member's page): the bytes of every member
            ranges = tuple((phys + (mpc - code.pc), phys + (insns_end(mi) - code.pc)) for mpc, mi in code.members)
            second = job.second if code is job.codes[0][0] else None
            blk = self._enter((code.pc, phys, flags), mod, addrs, code.name, code.n_insns,
                              phys + (code.end_pc - code.pc), job.tier, code.chain_slots, ranges, second)
            self.translated_blocks += 1
            self.by_tier[job.tier] += 1
            self.translated_insns += code.n_insns
            members = code.members or [(code.pc, code.insns)]
            parts = tuple((mpc, _guest_bytes(mi)) for mpc, mi in members)
            self._record(mod, code.name, (code.pc, phys, flags), job.tier, parts, [len(mi) for _, mi in members],
                         addrs, code.region)
            # A warm set keeps a block's bytes as contiguous from ppc (_Saved.raw): one crossing
            # pages is not kept, it is translated anew in each run.
            if mod.key is not None and self.warm_start and not flags & abi.FLAG_STEP and second is None:
                self.saved[(code.pc, phys, flags)] = _Saved(job.tier, parts[0][1], code.name, tuple(code.chain_slots),
                                                            (mod.key, mod.exports), parts if code.members else ())
            if first is None:
                first = blk
            if self.on_translate is not None and not code.members:
                self.on_translate(code)
        self._event("translate", len(job.codes))
        if mod.live == 0:
            self.dead.append(mod)  # Nothing of it was kept (a promotion overtaken by events)
        return first

    def _enter(self, key: tuple[int, int, int], mod: _Module, addrs: dict[str, int], name: str,
               n_insns: int, end_ppc: int, tier: int, slots, ranges: tuple[tuple[int, int], ...] = (),
               second: int | None = None) -> Block:
        """Enters a block of a linked module (a translation, or one from a warm set): lookup, chain
        slots (symbol, target pc), the pages its bytes are on; returns it. `end_ppc` is as if its
        bytes were contiguous from ppc; those of a block crossing pages continue at `second`."""
        vpc, ppc, flags = key
        if second is not None:
            split = (ppc | (abi.PAGE_SIZE - 1)) + 1
            ranges = ((ppc, split), (second, second + (end_ppc - split)))
            end_ppc = ranges[1][1]
        spans = ranges or ((ppc, end_ppc),)
        pages = tuple(sorted({p for lo, hi in spans for p in (lo >> abi.PAGE_BITS, (hi - 1) >> abi.PAGE_BITS)}))
        blk = Block(vpc, ppc, flags, addrs[name], n_insns, end_ppc, pages, tier=tier,
                    counter=addrs.get(f"{name}_n", 0), module=mod, ranges=ranges, second=second)
        mod.blocks.append(blk)
        mod.live += 1
        self._insert(blk, [(addrs[s], (t, ppc + (t - vpc), flags)) for s, t in slots])
        if self.on_pages is not None:
            for lo, hi in spans:
                self.on_pages(tuple(sorted({lo >> abi.PAGE_BITS, (hi - 1) >> abi.PAGE_BITS})), lo, hi)
        return blk

    def _new_module(self, obj_bytes: int, code_bytes: int, key: str | None, exports, lib=None) -> _Module:
        """Accounts for the module the engine just linked (into `lib`, else its last library)."""
        mod = _Module(self.engine.last_library if lib is None else lib, cost=obj_bytes + MODULE_COST,
                      code_bytes=code_bytes, key=key, exports=tuple(exports))
        self.modules.add(mod)
        self.jit_bytes += mod.cost
        self.peak_jit_bytes = max(self.peak_jit_bytes, self.jit_bytes)
        self.live_code_bytes += code_bytes
        return mod

    def _extra_decls(self) -> str:
        from translator.emit import rvf
        return rvf.DECLS

    def _block_name(self, pc: int, phys: int, flags: int, tier: int, kind: str = "b") -> str:
        """A symbol name derived from what the block (kind "b") or region ("r") is, so that the same
        guest code gets the same module text in every run (the persistent cache's key); unique
        within this cache."""
        base = f"{kind}{pc:x}_{phys:x}_{flags:x}_{tier}"
        n = self._name_uses[base]
        self._name_uses[base] = n + 1
        return base if n == 0 else f"{base}v{n}"

    def _finish(self, job: _Job) -> tuple[dict[str, int], bytes, int]:
        """Links a module (waiting for its code if need be) and accounts for it by tier; its
        exports' addresses, object and host code size."""
        st = self.engine.stats
        before = (st.seconds, st.object_bytes, st.code_bytes, st.emitted, st.cached)
        addrs, obj = job.compilation.finish()
        ts = self.tier_stats.setdefault(job.tier, TierStats())
        ts.modules += 1
        ts.compile_seconds += st.seconds - before[0]
        ts.object_bytes += st.object_bytes - before[1]
        ts.code_bytes += st.code_bytes - before[2]
        ts.compiled += st.emitted - before[3]
        ts.cached += st.cached - before[4]
        return addrs, obj, st.code_bytes - before[2]

    def _record(self, mod: _Module, name: str, key: tuple[int, int, int], tier: int,
                parts: tuple[tuple[int, bytes], ...], counts: list[int], addrs: dict[str, int], region: int) -> None:
        """Adds a translation of `mod` to `history`: a block, or a region as one record per member
        (parts: each one's pc and guest bytes; counts: its instructions)."""
        vpc, phys, flags = key
        for k, ((mpc, raw), n) in enumerate(zip(parts, counts, strict=True)):
            mod.records.append(len(self.history))
            self.history.append(BlockRecord(mpc, phys + (mpc - vpc), flags, tier, n, addrs.get(f"{name}_n", 0) if k == 0 else 0,
                                            addrs.get(f"{name}_l{k or ''}", 0), raw,
                                            self.hot_threshold if tier == 0 else 0, region))
        self._count(flags, tier, sum(counts))

    def _count(self, flags: int, tier: int, n_insns: int) -> None:
        ts = self.tier_stats.setdefault(tier, TierStats())
        ts.blocks += 1
        ts.insns += n_insns
        mode = flags & abi.FLAG_PRIV_MASK
        self.by_mode[mode] += 1
        self.insns_by_mode[mode] += n_insns

    def _insert(self, blk: Block, slots: list[tuple[int, tuple[int, int, int]]]) -> None:
        key = (blk.vpc, blk.ppc, blk.flags)
        old = self.blocks.get(key)
        if old is not None:
            self._drop(old)
        self.blocks[key] = blk
        self.by_fn[blk.fn] = blk
        self._btab_set(blk)
        for p in blk.pages:
            self.by_page.setdefault(p, set()).add(blk)
        if blk.flags & abi.FLAG_STEP:
            return  # Single-step blocks always leave through the dispatcher
        blk.slots = slots
        # Patch this block's exits to existing targets, or wait for them.
        for addr, tkey in slots:
            target = self.blocks.get(tkey)
            if target is not None and target.second is None and self.chaining:
                _u64.from_address(addr).value = target.fn
                self.patched.setdefault(target, []).append(addr)
            else:
                self.waiting.setdefault(tkey, []).append(addr)
        # Patch slots that were waiting for this block.
        if blk.second is None and self.chaining:
            for addr in self.waiting.pop(key, ()):
                _u64.from_address(addr).value = blk.fn
                self.patched.setdefault(blk, []).append(addr)

    def _drop(self, blk: Block) -> None:
        """Removes a block from lookup: unpatch slots into it, forget its own slots."""
        if not blk.valid:
            return
        blk.valid = False
        self._btab_clear(blk)
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
            # A slot patched to its target is listed under it: forget it, it is about to go.
            target = self.blocks.get(tkey)
            lst = self.patched.get(target) if target is not None else None
            if lst is not None and addr in lst:
                lst.remove(addr)
        mod = blk.module
        if mod is not None:
            mod.live -= 1
            if mod.live == 0:
                self.dead.append(mod)

    def reap(self) -> bool:
        """Unloads the modules whose blocks are all dropped, or flushes the whole cache if the
        translations' memory reached `tb_size` (True: every Block is gone). Only where no guest
        code can be on the stack of any hart (translate, promote, flush_warm and install_ready,
        called by the run loop): chain slots into their blocks were unpatched when they were
        dropped, and the jump-cache entries go here. Their translations' execution counts are
        copied out first, for the statistics."""
        if self.tb_size and self.jit_bytes >= self.tb_size:
            self.flush()
            return True
        dead, self.dead = self.dead, []
        for mod in dead:
            for blk in mod.blocks:
                for h in self.jc_harts.values():
                    self.jc_remove(h, blk)
                    if blk.second is not None:
                        second = (blk.vpc | (abi.PAGE_SIZE - 1)) + 1
                        s = self.jc_cross.get((h.ptr, second))
                        if s is not None:
                            s.discard(blk)
                            if not s:
                                del self.jc_cross[(h.ptr, second)]
                                self._cross_count(h, second, -1)
            self._freeze(mod)
            self.engine.release(mod.lib)
            self.modules.discard(mod)
            self.jit_bytes -= mod.cost - RELEASED_COST
            self.live_code_bytes -= mod.code_bytes
            self.released += 1
        return False

    def _freeze(self, mod: _Module) -> None:
        """Copies the execution counts of a module's translations out of its memory (it is about
        to be unloaded) into `_frozen`, where `history` then finds them."""
        if mod.records:
            frozen = (_u64 * (2 * len(mod.records)))()
            base = ctypes.addressof(frozen)
            for j, i in enumerate(mod.records):
                rec = self.history[i]
                # Tier-0 counters are 32-bit: the low half of the 64-bit copy (little-endian).
                frozen[2 * j] = (ctypes.c_uint32 if rec.tier == 0 else _u64).from_address(rec.counter).value \
                    if rec.counter else 0
                frozen[2 * j + 1] = _u64.from_address(rec.loop_counter).value if rec.loop_counter else 0
                self.history[i] = rec._replace(counter=base + 16 * j if rec.counter else 0,
                                               loop_counter=base + 16 * j + 8 if rec.loop_counter else 0)
            self._frozen.append(frozen)
        mod.records.clear()
        mod.blocks.clear()

    def flush(self) -> int:
        """Drops every translation and replaces the engine's JIT, freeing all their memory
        (QEMU's tb_flush); returns how many blocks were dropped. Every hart's jump cache, the
        interpreter's block table and head counters, chain slots (inside the code that goes) and
        background promotions of dropped blocks go with them; warm heads still compiling are
        kept (they are installed into the new JIT). Only where no guest code can be on the stack
        of any hart (see `reap`)."""
        n = len(self.blocks)
        for mod in self.modules:
            for blk in mod.blocks:
                blk.valid = False
            self._freeze(mod)
        for blk in self.blocks.values():
            blk.valid = False
        self.blocks.clear()
        self.by_page.clear()
        self.by_fn.clear()
        self.waiting.clear()
        self.patched.clear()
        for h in self.jc_harts.values():
            ctypes.memset(h.ptr + abi.OFF_JC, 0xFF, abi.JC_SIZE * abi.JC_ENTRY)
            ctypes.memset(h.ptr + abi.OFF_CROSS_PAGES, 0, 4 * abi.SFENCE_PAGES)
        self.jc_cross.clear()
        if self.btab:
            ctypes.memset(self.btab, 0xFF, 32 * HEADS_SIZE)  # No pc matches (pcs are even)
        if self.heads:
            # Every head counts afresh: code still in use warms up again, the rest stays cold.
            ctypes.memset(self.heads, 0, 4 * HEADS_SIZE)
            for vpc, _ppc, flags in self.warming:
                self._set_head(vpc, flags, HEAD_QUEUED)
        # Promotions replace blocks that are gone; warm heads' modules are new code.
        self.pending = [j for j in self.pending if j.warm]
        self.promoting.clear()
        self.modules.clear()
        self.dead.clear()
        self.engine.recycle()
        # Names (and so module texts) start over: code translated again as before is found in
        # the persistent cache.
        self._name_uses.clear()
        self.jit_bytes = self.live_code_bytes = 0
        self.flushes += 1
        if n:
            self.invalidations["eviction"] += n
            self._event("eviction", n)
        return n

    def set_warm_threshold(self, n: int) -> None:
        """The machine's warm threshold (interpreted executions of a head before its translation),
        WARM_START_FACTOR times higher after a warm set was loaded, but for the heads whose
        warm-set translation could not be used. The interpreter's is `warm_threshold`."""
        self.warm_threshold = n * (WARM_START_FACTOR if self.warm_loaded else 1)
        self.rewarm = self.warm_threshold - n
        for vpc, _ppc, flags in self.unusable:
            self._set_head(vpc, flags, self.rewarm)

    def set_hot_threshold(self, n: int) -> None:
        self.hot_threshold = n
        self.tier = 0 if n > 0 else 1

    def promote(self, old: Block, hart: Hart, harts: list[Hart], fetch16) -> Block | None:
        """Recompiles a tier-0 block that reached its threshold at tier 1, together with the tier-0
        blocks of the same mode that are warm (a quarter of the threshold), so hot code shares
        a module and its pages; the new code replaces the old in chain slots and jump caches.
        With `background` set, LLVM works in the engine's worker thread while the old code goes
        on running, and `install_ready` (called by the run loop) puts the new code in: None."""
        if (old.vpc, old.ppc, old.flags) in self.promoting:
            return None  # Already on its way
        if self.reap() or not old.valid:
            return None  # Flushed: it warms up afresh
        warm = []
        floor = max(1, self.hot_threshold // 4)
        for b in list(self.blocks.values()):
            if (b is not old and b.tier == 0 and b.flags == old.flags and b.counter and b.second is None
                    and (b.vpc, b.ppc, b.flags) not in self.promoting
                    and ctypes.c_uint32.from_address(b.counter).value >= floor):
                warm.append(b)
        warm = warm[:PROMOTE_BATCH - 1]
        olds = {(b.vpc, b.ppc, b.flags): b for b in (old, *warm)}
        # Execution counts so far, by pc: a region is entered at its most executed member.
        heat = {b.vpc: ctypes.c_uint32.from_address(b.counter).value if b.counter else 0 for b in olds.values()}
        t0 = time.perf_counter()
        # Only the old blocks (the batch stops before any successor), so the job replaces
        # exactly what it read. One crossing pages is read from the frames it was (its lookup
        # checks its second frame is still the one mapped); the others cross none.
        batch, self.batch = self.batch, len(olds)
        try:
            job = self._prepare(old.vpc, old.ppc, old.flags, fetch16, None, 1,
                                [(b.vpc, b.ppc) for b in warm], background=self.background, heat=heat,
                                second=old.second)
        finally:
            self.batch = batch
        self.promotions += len(olds)
        job.olds = olds
        if self.background:
            self.pending.append(job)
            self.promoting.update(olds)
            self.translate_seconds += time.perf_counter() - t0
            return None
        new = self._enter_promoted(job, harts)
        self.translate_seconds += time.perf_counter() - t0
        return new

    def warm(self, hart: Hart, vpc: int, ppc: int) -> None:
        """The interpreter found the block head at vpc warm: queue it for translation in the worker
        thread (the interpreter runs it meanwhile). Heads are batched per mode while the worker is
        busy, so a module holds many blocks; the queue goes out when the worker is idle."""
        flags = hart.s.flags
        key = (vpc, ppc, flags)
        if key in self.warming:
            return
        self.warming.add(key)
        self.warm_heads += 1
        self._set_head(vpc, flags, HEAD_QUEUED)
        self.warm_queue.setdefault(flags, []).append((vpc, ppc))
        self.warm_queued += 1
        if self.warm_queued >= WARM_BATCH or not any(j.warm for j in self.pending):
            self.flush_warm()

    def keep_interpreted(self, vpc: int, ppc: int, flags: int) -> bool:
        """Whether a warm head stays in the interpreter: code on a page rewritten over and over
        (VOLATILE_WRITES), which the interpreter runs from the bytes in memory, instead of being
        translated anew after each rewrite. Its counter is held back."""
        if self.code_writes.get(ppc >> abi.PAGE_BITS, 0) < VOLATILE_WRITES:
            return False
        self._set_head(vpc, flags, HEAD_QUEUED)
        return True

    def _head(self, vpc: int, flags: int) -> int:
        """The interpreter's execution counter of a head."""
        return ctypes.c_int32.from_address(self.heads + 4 * heads_index(vpc, flags)).value if self.heads else 0

    def _set_head(self, vpc: int, flags: int, value: int) -> None:
        """Sets the interpreter's execution counter of a head (0: count afresh)."""
        if self.heads:
            ctypes.c_int32.from_address(self.heads + 4 * heads_index(vpc, flags)).value = value

    def _btab_set(self, blk: Block) -> None:
        """Enters a single-page block in the interpreter's native block table."""
        if self.btab and blk.second is None and not blk.flags & abi.FLAG_STEP:
            e = (_u64 * 4).from_address(self.btab + 32 * heads_index(blk.vpc, blk.flags))
            e[0], e[1], e[2], e[3] = blk.vpc, blk.flags, (blk.ppc - self.ram_base) & _MASK64, blk.fn

    def _btab_clear(self, blk: Block) -> None:
        if self.btab:
            e = (_u64 * 4).from_address(self.btab + 32 * heads_index(blk.vpc, blk.flags))
            if e[3] == blk.fn:
                e[0] = _MASK64  # No pc matches (pcs are even)
            self._set_head(blk.vpc, blk.flags, 0)

    def _phys_fetch(self, vpc: int, ppc: int, second: int | None = None):
        """A fetcher for the page of vpc read through its physical page (the mapping may have
        changed since the head was found warm); blocks end at the page's end. With `second`, the
        next page is read from that frame (a block crossing into it)."""
        def fetch16(vaddr: int) -> int:
            if vaddr >> abi.PAGE_BITS == vpc >> abi.PAGE_BITS:
                return int.from_bytes(self.read_phys(ppc + (vaddr - vpc), 2), "little")
            if second is not None and vaddr >> abi.PAGE_BITS == (vpc >> abi.PAGE_BITS) + 1:
                return int.from_bytes(self.read_phys(second + (vaddr & (abi.PAGE_SIZE - 1)), 2), "little")
            raise FetchFault(vaddr)
        return fetch16

    def flush_warm(self) -> None:
        """Sends the queued warm heads to the worker, one module per mode."""
        self.reap()
        queue, self.warm_queue = self.warm_queue, {}
        self.warm_queued = 0
        for flags, heads in queue.items():
            t0 = time.perf_counter()
            (vpc, ppc), rest = heads[0], heads[1:]
            batch, self.batch = self.batch, len(heads)
            try:
                job = self._prepare(vpc, ppc, flags, None, None, None, rest, background=True, only_listed=True)
            except Exception:
                for pc, p in heads:
                    self.warming.discard((pc, p, flags))
                    self._set_head(pc, flags, 0)
                continue
            finally:
                self.batch = batch
            job.warm = True
            self.pending.append(job)
            self.translate_seconds += time.perf_counter() - t0

    def _current(self, code: BlockCode, phys: int, read_phys) -> bool:
        """Whether the guest bytes a block was scanned from are still in memory."""
        raw = _guest_bytes(code.insns)
        return read_phys(phys, len(raw)) == raw

    def install_ready(self, harts: list[Hart], wait: bool = False) -> int:
        """Puts in the background promotions that are compiled (all of them with `wait`); how many
        modules. A block changed or dropped meanwhile keeps its current code."""
        done = 0
        while self.pending and (wait or self.pending[0].compilation.ready()):
            if self.reap():
                continue  # Flushed: the promotions are gone, warm heads' jobs are left
            job = self.pending.pop(0)
            self.promoting.difference_update(job.olds)
            t0 = time.perf_counter()
            if job.warm:
                self._enter_warm(job, harts)
                if self.warm_queue and not any(j.warm for j in self.pending):
                    self.flush_warm()
            else:
                self._enter_promoted(job, harts)
            self.translate_seconds += time.perf_counter() - t0
            done += 1
        return done

    def finish_warm(self, harts: list[Hart]) -> None:
        """At the end of a run whose warm set is to be saved, what the next run would otherwise
        translate again is compiled and installed (not run): the heads found warm, the promotions
        queued, and the tier-0 blocks that would reach their threshold in a run that has them from
        the start (their executions here, in the interpreter first, reached it)."""
        t0 = time.perf_counter()
        self.flush_warm()
        self.install_ready(harts, wait=True)
        hot: dict[int, list[Block]] = {}
        for b in self.blocks.values():
            # Not one crossing pages: the warm set does not keep it (_install)
            if (b.tier == 0 and b.counter and b.second is None and (b.vpc, b.ppc, b.flags) not in self.promoting
                    and b.interpreted + ctypes.c_uint32.from_address(b.counter).value >= self.hot_threshold > 0):
                hot.setdefault(b.flags, []).append(b)
        for bs in hot.values():
            for i in range(0, len(bs), PROMOTE_BATCH):
                self._promote_listed(bs[i:i + PROMOTE_BATCH])
        self.install_ready(harts, wait=True)
        self.finish_seconds = time.perf_counter() - t0

    def _promote_listed(self, olds: list[Block]) -> None:
        """Promotes tier-0 blocks of one mode together in the worker, each read from its physical
        page (the run is over, no hart's mapping matters)."""
        heat = {b.vpc: ctypes.c_uint32.from_address(b.counter).value for b in olds}
        batch, self.batch = self.batch, len(olds)
        try:
            job = self._prepare(olds[0].vpc, olds[0].ppc, olds[0].flags, None, None, 1,
                                [(b.vpc, b.ppc) for b in olds[1:]], background=True, only_listed=True, heat=heat)
        except Exception:
            return  # Its code is no longer readable: the next run promotes it if it gets hot
        finally:
            self.batch = batch
        job.olds = {(b.vpc, b.ppc, b.flags): b for b in olds}
        self.promotions += len(olds)
        self.finish_promoted += len(olds)
        self.pending.append(job)
        self.promoting.update(job.olds)

    def abandon(self) -> None:
        """Forgets promotions still compiling (the run is over) and stops the worker thread, without
        waiting for the compilation it is in (the front end need not wait for it either)."""
        self.pending.clear()
        self.warm_queue.clear()
        self.warming.clear()
        self.promoting.clear()
        self.engine.shutdown(wait=False)

    def _enter_warm(self, job: _Job, harts: list[Hart]) -> None:
        """Installs background translations of warm heads whose guest bytes did not change since
        they were scanned (the page was not watched meanwhile); the first hart's jump cache gets
        them, others find them on their next warm head."""
        fresh = set()
        runs = {}
        for code, phys in job.codes:
            key = (code.pc, phys, job.flags)
            self.warming.discard(key)
            # The interpreter went on running a queued head, counting up from HEAD_QUEUED.
            queued = self._head(code.pc, job.flags) - HEAD_QUEUED
            runs[key] = self.warm_threshold + (queued if 0 <= queued < 1 << 30 else 0)
            self._set_head(code.pc, job.flags, 0)
            if key in self.blocks:
                continue
            if self.read_phys is not None and not self._current(code, phys, self.read_phys):
                self.warm_dropped += 1
                continue
            fresh.add(key)
        self._install(job, keep=lambda key: key in fresh)
        self.warm_blocks += len(fresh)
        for key in fresh:
            blk = self.blocks.get(key)
            if blk is not None:
                blk.interpreted = runs[key]
                for h in harts:
                    if h.s.flags == blk.flags:
                        self.jc_insert(h, blk)

    def _enter_promoted(self, job: _Job, harts: list[Hart]) -> Block | None:
        olds = job.olds
        new = self._install(job, keep=lambda key: key in olds and self.blocks.get(key) is olds[key])
        for key, ob in olds.items():
            nb = self.blocks.get(key)
            if nb is None or nb is ob:
                continue
            for h in harts:
                e = h.s.jc[(nb.vpc >> 1) & (abi.JC_SIZE - 1)]
                if int(abi.ffi.cast("uintptr_t", e.fn)) == ob.fn:
                    self.jc_insert(h, nb)
        return new

    def unchain_all(self) -> None:
        """Points every patched slot back at the dispatcher (entering -d exec or stepping)."""
        self.warm_start = False
        for blk, addrs in self.patched.items():
            key = (blk.vpc, blk.ppc, blk.flags)
            for addr in addrs:
                _u64.from_address(addr).value = self.dispatch_addr
                self.waiting.setdefault(key, []).append(addr)
        self.patched.clear()

    def invalidate_range(self, paddr: int, size: int, cause: str, harts: list[Hart]) -> int:
        """Drops blocks whose source bytes overlap [paddr, paddr+size). Returns how many."""
        hit = [b for b in self.by_page.get(paddr >> abi.PAGE_BITS, ()) if b.covers(paddr, paddr + size)]
        for b in hit:
            self._drop(b)
            for h in harts:
                self.jc_remove(h, b)
        if hit:
            self.invalidations[cause] += len(hit)
            self._event(cause, len(hit))
            if cause == "code-write":
                self.code_writes[paddr >> abi.PAGE_BITS] += 1
        return len(hit)

    def set_breakpoint(self, vpc: int, present: bool, paddr: int | None, harts: list[Hart]) -> int:
        """Adds or removes a debugger breakpoint at virtual pc `vpc` (physical `paddr` through the
        current translation, if it has one). Translations covering it are dropped, so the next ones
        end before it and the block starting at it is a debug stop. Returns how many were dropped."""
        self.warm_start = False
        if present:
            self.breakpoints.add(vpc)
        else:
            self.breakpoints.discard(vpc)
        n = self.invalidate_range(paddr, 1, "breakpoint", harts) if paddr is not None else 0
        # Also by virtual address: blocks of other address spaces that cover vpc.
        hit = [b for b in self.blocks.values() if b.covers_vpc(vpc)]
        for b in hit:
            self._drop(b)
            for h in harts:
                self.jc_remove(h, b)
        if hit:
            self.invalidations["breakpoint"] += len(hit)
        return n + len(hit)

    # Warm start: the translations of an earlier run with the same key (runtime/core/pcache.py)
    def warm_set(self) -> tuple[list, list]:
        """This run's warm set for `PersistentCache.save_run`: modules [cache key, exports] and
        blocks [vpc, ppc, flags, tier, guest bytes (hex), module index, symbol, slots, members (a
        region's [pc, guest bytes (hex)] each, [] for a block)]. Blocks of the loaded set that were not reached stay in it; those whose
        bytes had changed do not."""
        modules: dict[tuple[str, tuple[str, ...]], int] = {}
        blocks = []
        entries = [*((k, sv) for k, (sv, _) in self.prepared.items() if k not in self.saved), *self.saved.items()]
        for (vpc, ppc, flags), sv in entries[-MAX_WARM_SET:]:
            if not sv.raw.strip(b"\0"):
                continue  # Zeroed memory: nothing worth installing ahead
            mi = modules.setdefault(sv.module, len(modules))
            blocks.append([vpc, ppc, flags, sv.tier, sv.raw.hex(), mi, sv.name, [list(x) for x in sv.slots],
                           [[pc, raw.hex()] for pc, raw in sv.members]])
        return [[k, list(e)] for k, e in modules], blocks

    def load_warm_set(self, doc: dict) -> bool:
        """Takes in a warm set (`warm_set` of an earlier run): its blocks whose guest bytes are in
        memory now are installed at once, the others when the interpreter or the dispatcher first
        reaches them (their heads are primed) if their bytes are those they were translated from
        then. False if it is malformed (nothing kept)."""
        try:
            mods = [_WarmModule(str(k), tuple(str(x) for x in ex)) for k, ex in doc["modules"]]
            prepared = {}
            for vpc, ppc, flags, tier, raw, mi, name, slots, members in doc["blocks"]:
                if not all(isinstance(v, int) and 0 <= v <= _MASK64 for v in (vpc, ppc, flags, tier)):
                    raise ValueError("not a 64-bit key")
                if flags & abi.FLAG_STEP or vpc & 1 or tier not in (0, 1) or not isinstance(mi, int) or mi < 0:
                    raise ValueError("not a block")
                wm = mods[mi]
                parts = tuple((int(pc), bytes.fromhex(r)) for pc, r in members)
                sv = _Saved(tier, bytes.fromhex(raw), str(name), tuple((str(a), int(t)) for a, t in slots),
                            (wm.key, wm.exports), parts)
                if not sv.raw or sv.name not in wm.exports or any(a not in wm.exports for a, _ in sv.slots):
                    raise ValueError("symbol not exported")
                if parts and (parts[0] != (vpc, sv.raw) or any(not r or pc & 1 or abs(pc - vpc) >= abi.PAGE_SIZE
                                                                for pc, r in parts)):
                    raise ValueError("not a region")
                if (vpc & (abi.PAGE_SIZE - 1)) + len(sv.raw) > abi.PAGE_SIZE:
                    continue  # Crossing pages (an older run's): its second frame is unknown
                key = (vpc, ppc, flags)
                if key not in prepared:
                    wm.members.append(key)
                prepared[key] = (sv, wm)
        except (KeyError, IndexError, TypeError, ValueError):
            return False
        self.prepared = prepared
        self.warm_loaded = len(prepared)
        # Code already in memory (the firmware's and the kernel's, loaded before the run) goes in
        # now, a module at a time; the rest waits for its heads. The worker thread links the
        # modules (read here first) while this thread installs the blocks of those linked before:
        # a third less time on linux-shell's. (Reading them there too was slower: each file
        # operation handed the interpreter lock back and forth.)
        eager = []
        for wm in {id(wm): wm for _, wm in prepared.values()}.values():
            present = next((k for k in wm.members if self._current_bytes(k, prepared[k][0])), None)
            if present is not None:
                eager.append((wm, present))
        cache = self.engine.object_cache
        if eager and self.background and cache is not None:
            self.engine.prepare_link()
            for wm, _ in eager:
                wm.linked = self.engine.submit(self._link_object, wm, cache.get(wm.key))
        for _, present in eager:
            self.restore(*present)
        self.restored_at_start = self.restored
        for vpc, _ppc, flags in self.prepared:
            self._set_head(vpc, flags, HEAD_PRIMED)
            self.primed.add(heads_index(vpc, flags))
        return True

    def _current_bytes(self, key: tuple[int, int, int], sv: _Saved) -> bool:
        """Whether the guest bytes a warm-set block (every member of a region) was translated from
        are those in memory."""
        vpc, ppc, _ = key
        try:
            return all(self.read_phys(ppc + (mpc - vpc), len(raw)) == raw for mpc, raw in sv.parts(vpc))
        except ValueError:
            return False  # Not RAM (this machine has less)

    def unprime(self, vpc: int, ppc: int, flags: int) -> bool:
        """A head found warm at once because it shares its counter with a warm-set block's (or
        that block could not be used): it counts afresh instead, the latter as if no warm set had
        been loaded (`rewarm`: it was warm in the last run). Whether that was the case."""
        idx = heads_index(vpc, flags)
        key = (vpc, ppc, flags)
        if idx not in self.primed or key in self.prepared:
            return False
        self.primed.discard(idx)
        self._set_head(vpc, flags, self.rewarm if key in self.unusable else 0)
        self.unprimed += 1
        return True

    def restore(self, vpc: int, ppc: int, flags: int) -> bool:
        """Installs the warm set's block at (vpc, ppc, flags), if it has one and its guest bytes are
        those in memory, with every other block of its module whose bytes are in memory too (one
        link for them all). Whether the block is in the cache now."""
        entry = self.prepared.get((vpc, ppc, flags))
        if entry is None:
            return False
        t0 = time.perf_counter()
        wm = entry[1]
        addrs = self._link_warm(wm, entry[0].tier)
        for key in wm.members:
            e = self.prepared.get(key)
            if e is None or e[1] is not wm:
                continue
            sv = e[0]
            if addrs is None:
                del self.prepared[key]
                self.restore_failed += 1
                self.unusable.add(key)
                continue
            if key in self.blocks:
                del self.prepared[key]  # Translated meanwhile
                continue
            if not self._current_bytes(key, sv):
                if key == (vpc, ppc, flags):
                    del self.prepared[key]
                    self.restore_changed += 1
                    self.unusable.add(key)
                continue  # Maybe later (code not loaded yet)
            del self.prepared[key]
            self._restore_block(key, sv, wm.mod, addrs)
        wm.members = [k for k in wm.members if self.prepared.get(k, (None, None))[1] is wm]
        mod = wm.mod
        if mod is not None and mod.live == 0 and not wm.members and mod not in self.dead:
            self.dead.append(mod)  # Linked for blocks whose bytes had all changed
        self.restore_seconds += time.perf_counter() - t0
        return (vpc, ppc, flags) in self.blocks

    def _link_warm(self, wm: _WarmModule, tier: int) -> dict[str, int] | None:
        """The module of a warm-set block, linked (again if it was unloaded); None if unusable."""
        if wm.failed:
            return None
        if wm.mod is not None and wm.mod in self.modules and wm.mod not in self.dead:
            return wm.addrs
        if wm.linked is not None:
            got, wm.linked = wm.linked.result(), None
        else:
            cache = self.engine.object_cache
            got = self._link_object(wm, cache.get(wm.key) if cache is not None else None)
        if not got:
            if got is False:
                self.engine.object_cache.reject(wm.key)
            wm.failed = True
            return None
        addrs, lib, obj, code_bytes = got
        es = self.engine.stats
        es.cached += 1
        es.modules += 1
        es.object_bytes += len(obj)
        es.code_bytes += code_bytes
        ts = self.tier_stats.setdefault(tier, TierStats())
        ts.modules += 1
        ts.cached += 1
        ts.object_bytes += len(obj)
        ts.code_bytes += code_bytes
        wm.mod = self._new_module(len(obj), code_bytes, wm.key, wm.exports, lib)
        wm.addrs = addrs
        # Names stay unique in this cache: later translations of the same code get other names.
        for name in wm.exports:
            m = _FUNCTION_NAME.fullmatch(name)
            if m is not None:
                uses = int(m[2]) + 1 if m[2] else 1
                self._name_uses[m[1]] = max(self._name_uses[m[1]], uses)
        return addrs

    def _link_object(self, wm: _WarmModule, hit: tuple[bytes, int] | None
                     ) -> tuple[dict[str, int], object, bytes, int] | None | bool:
        """A warm-set module's object (and code bytes) from the persistent cache, linked:
        (addresses, library, object, code bytes); None if it was not there, False if it does
        not link (the caller rejects it). The worker thread does this at start (`load_warm_set`)."""
        if hit is None:
            return None
        obj, code_bytes = hit
        try:
            addrs, lib = self.engine.link_library(obj, list(wm.exports), table=f"{wm.exports[0]}_x")
        except RuntimeError:
            return False
        return addrs, lib, obj, code_bytes

    def _restore_block(self, key: tuple[int, int, int], sv: _Saved, mod: _Module, addrs: dict[str, int]) -> None:
        vpc, ppc, flags = key
        parts = sv.parts(vpc)
        ranges = tuple((ppc + (mpc - vpc), ppc + (mpc - vpc) + len(raw)) for mpc, raw in sv.members)
        counts = [_insn_count(raw) for _, raw in parts]
        self._enter(key, mod, addrs, sv.name, sum(counts), ppc + len(sv.raw), sv.tier, sv.slots, ranges)
        self.restored += 1
        self.by_tier[sv.tier] += 1
        region = 0
        if sv.members:
            self.regions += 1
            region = self.regions
        self._record(mod, sv.name, key, sv.tier, parts, counts, addrs, region)
        if self.warm_start:
            self.saved[key] = sv

    def page_has_code(self, ppn: int) -> bool:
        return ppn in self.by_page

    # Jump cache (native, per hart)
    def jc_insert(self, hart: Hart, blk: Block) -> None:
        self.jc_harts[hart.ptr] = hart
        e = hart.s.jc[(blk.vpc >> 1) & (abi.JC_SIZE - 1)]
        e.vpc = blk.vpc
        e.flags = blk.flags
        e.fn = abi.ffi.cast("void *", blk.fn)
        if blk.second is not None:
            # Its slot belongs to its first page: remember it under the second page too.
            second = (blk.vpc | (abi.PAGE_SIZE - 1)) + 1
            s = self.jc_cross.get((hart.ptr, second))
            if s is None:
                s = self.jc_cross[(hart.ptr, second)] = set()
                self._cross_count(hart, second, 1)
            s.add(blk)

    @staticmethod
    def _cross_count(hart: Hart, page: int, n: int) -> None:
        """Adds n to the count of `jc_cross` keys of `hart` whose page an sfence.vma of `page`
        must see (abi.SFENCE_PAGES)."""
        hart.s.cross_pages[(page >> abi.PAGE_BITS) & (abi.SFENCE_PAGES - 1)] += n

    @staticmethod
    def jc_remove(hart: Hart, blk: Block) -> None:
        e = hart.s.jc[(blk.vpc >> 1) & (abi.JC_SIZE - 1)]
        if int(abi.ffi.cast("uintptr_t", e.fn)) == blk.fn:
            e.vpc = (1 << 64) - 1
            e.fn = abi.ffi.NULL

    def jc_flush_page(self, hart: Hart, vaddr: int, cause: str) -> None:
        """Clears the jump-cache slots of blocks starting on the page of vaddr (2048 consecutive
        slots, indexed by vpc >> 1) and those of blocks that cross into it (`jc_cross`)."""
        vpage = vaddr & ~(abi.PAGE_SIZE - 1) & ((1 << 64) - 1)
        first = (vpage >> 1) & (abi.JC_SIZE - 1)
        ctypes.memset(hart.ptr + abi.OFF_JC + first * abi.JC_ENTRY, 0xFF, (abi.PAGE_SIZE >> 1) * abi.JC_ENTRY)
        crossing = self.jc_cross.pop((hart.ptr, vpage), None)
        if crossing is not None:
            self._cross_count(hart, vpage, -1)
            for blk in crossing:
                self.jc_remove(hart, blk)
        self.invalidations[cause] += 1
        self._event(cause, 1)

    def jc_flush(self, hart: Hart, cause: str) -> None:
        """Clears the virtual-pc lookup (satp, sfence.vma); translations stay valid."""
        for key in [k for k in self.jc_cross if k[0] == hart.ptr]:
            del self.jc_cross[key]
        ctypes.memset(hart.ptr + abi.OFF_CROSS_PAGES, 0, 4 * abi.SFENCE_PAGES)
        ctypes.memset(hart.ptr + abi.OFF_JC, 0xFF, abi.JC_SIZE * abi.JC_ENTRY)
        self.invalidations[cause] += 1
        self._event(cause, 1)
