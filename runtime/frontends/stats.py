"""Run statistics: what `mirage jit-run --stats FILE` writes and `mirage cache stats` shows.

Counting costs the run nothing in Python: blocks count their own executions in native globals
(@<name>_n per block, @<name>_l for a self-loop's iterations, @<name>_l<k> for a region's), the dispatcher counts lookups and
jump-cache misses in the hart struct, and everything else is counted where Python already runs
(translation, jump-cache misses, callouts, the monitor). `collect` reads it all once, at the end.

The JSON document (schema "mirage-stats", version 2; version 1 had the keys marked *):
  schema*, version*      "mirage-stats", 2
  program, kernel        what ran (paths as given; kernel may be null)
  started                Unix time the command started
  guest_insns*           instructions retired (all harts)
  harts                  {count, insns: [instructions retired by hart 0, 1, ...]}
  run_seconds*           guest execution, translation and compilation included
  total_seconds*         from the start of the command (set-up and loading included)
  jit:
    blocks*, insns*      blocks and guest instructions translated, all tiers
    blocks_by_tier*      {"0": n, "1": n}
    promotions*          tier-0 blocks recompiled at tier 1
    modules*, functions* modules compiled or linked from the persistent cache (the dispatcher's
                         module included) and their functions
    compile_seconds*     in Engine.compile: LLVM code generation (or the cache lookup) and linking
    translate_seconds*   in TranslationCache.translate: scanning, IR, compiling, inserting
    object_bytes*        object files linked
    code_bytes           host machine code (.text) in them
    tiers                {"0"|"1": {blocks, insns, modules, compiled, cached, compile_seconds,
                         object_bytes, code_bytes, never_run}} (compiled: by LLVM; cached: from
                         the pcache; never_run: translated ahead of need and never executed)
    modes                {"M"|"S"|"U": {blocks, insns}} by the privilege the code ran at
                         (M = the firmware in virtual M-mode)
    memory               the translations' host memory at the end of the run and its bound
                         (runtime/core/tcache.py): {limit (bytes, --tb-size; 0: none), estimated
                         (bytes the JIT holds: a module's object plus tcache.MODULE_COST,
                         RELEASED_COST once unloaded), peak (highest estimate), flushes (times the
                         bound was reached: every translation dropped and the JIT replaced),
                         live_modules, live_blocks, live_code_bytes (host code of those
                         modules), released (modules unloaded one by one when all their
                         blocks were dropped)}
  block_table            {lookups, hits, misses}: the translation table (a Python dict), consulted
                         when the native jump cache misses
  jump_cache             {lookups, hits, misses}: native dispatcher lookups, all harts
  dispatch*              {lookups, jump_cache_misses}: version 1's names for the same counts
  transitions:
    executions           block executions: entries plus self-loop and region iterations
    entries              block entries (a tier-0 block's hand-back for promotion not included)
    loop_iterations      back edges taken inside self-loop blocks
    region_iterations    branches from member to member taken inside regions
    dispatched           entries through the dispatcher (jump-cache hits)
    chained              entries through chain slots (block to block): all entries, hand-backs
                         included, minus dispatched; exact but for the rare entries that found
                         the instruction budget spent (polls). Under -d exec, where blocks run one
                         at a time from Python and nothing chains, those entries count here
  regions                {formed, blocks, iterations}: regions installed (several hot blocks of a
                         page in one function, runtime/core/tcache.py), their member blocks, and
                         branches between members taken inside them
  callouts*              {mem, sys, miss, poll, fetch, warm}: entries into Python from native code
                         (mem, sys, fetch: callouts) and from the run loop (miss: no translation
                         at pc and the interpreter off or unable; warm: a head the interpreter
                         found warm; poll: budget spent or a callout stopped the block)
  interpreter            the cold tier (translator/interp.py): {enabled, warm_threshold (the
                         run's: tcache.WARM_START_FACTOR times the machine's after a warm set was
                         installed), insns (instructions it ran), heads_warmed (heads queued for translation),
                         blocks_translated (installed from them), stale_dropped (their guest
                         bytes changed before install)}
  warm_start             translations of the last run with the same key (runtime/core/pcache.py warm
                         sets): {loaded (blocks in it), restored (installed), changed (their guest
                         bytes were others), failed (module not in the cache or not linkable),
                         left (never reached), at_start (of the restored, those installed before
                         the run), unprimed (heads found warm only for sharing a counter with one
                         of them), seconds (installing them), finish_promoted (tier-0 blocks
                         promoted at the end for the next run, tcache.finish_warm), finish_seconds
                         (that end's wait for the heads, promotions and blocks it compiled)}
  time                   host seconds of the run loop: {interpreter, compiled (native code but
                         the interpreter, callouts excluded), python: {cause: s} (mem, sys,
                         fetch: estimated from those made during one run-loop slice in
                         machine.TIME_SAMPLE; miss, warm, poll, hot: each), translate (main
                         thread's translation)}
  invalidations*         {cause: n}: "code-write" (blocks dropped: their guest bytes were written),
                         "fence.i" (fence.i executed; the writes had already dropped the code),
                         "satp", "sfence.vma" (with those native code did), "pmp" (jump-cache
                         flushes), "breakpoint" (blocks dropped for the debugger), "eviction"
                         (blocks dropped by the flushes that bound the translations' memory,
                         jit.memory)
  fence_i*               fence.i executed
  mmu*                   {walks, fills} (in Python), native_walks (TLB refills in native
                         code, translator/softmmu.py), notdirty_stores (stores to pages with
                         code or watched words done in native code), native_sfences (S-mode
                         sfence.vma with an address done in native code)
  pcache                 persistent translation cache (runtime/core/pcache.py): {enabled, dir,
                         lookups, hits, misses, rejected, writes, write_errors, bytes_written,
                         evicted, skipped, seconds_saved}; {"enabled": false} without it
                         (skipped: modules of self-modifying code kept out of it)
  vfm*                   Monitor.stats: monitor entries by cause (layout in vfm/monitor.py)
  hot_blocks             the most executed blocks, most first: [{pc, ppc, flags, mode, tier,
                         insns, executions, entries, iterations, translations, code}]; by block
                         key (virtual pc, physical pc, flags) over all its translations; tier is
                         the latest's; code is the hex of the guest bytes (as in memory) of the
                         most executed translation, so it disassembles offline
  events                 [[seconds, kind, count]] since the machine was made: "translate"
                         (blocks compiled in one module) or an invalidation cause; runs with
                         many events are summed into at most 1000 time buckets per kind
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import stat
import string
import time
from pathlib import Path

SCHEMA = "mirage-stats"
VERSION = 2
HOT_BLOCKS = 20
MAX_EVENTS = 2000
MODES = {0: "U", 1: "S", 3: "M"}
CAUSES = ("code-write", "fence.i", "satp", "sfence.vma", "pmp", "breakpoint", "eviction")


def last_stats_path() -> Path:
    from runtime.core.pcache import cache_root

    return cache_root() / "last-stats.json"


def _count(addr: int, wide: bool) -> int:
    if not addr:
        return 0
    return (ctypes.c_uint64 if wide else ctypes.c_uint32).from_address(addr).value


def block_counts(tc) -> tuple[list[dict], dict[str, int]]:
    """Per block key, executions over all its translations (most executed first), and totals."""
    by_key: dict[tuple[int, int, int], dict] = {}
    entries = iterations = handbacks = in_regions = 0
    regions: set[int] = set()
    members = 0
    unrun: dict[str, int] = {}
    for rec in tc.history:
        n = _count(rec.counter, rec.tier > 0)
        it = _count(rec.loop_counter, True)
        if rec.tier == 0 and rec.hot and n >= rec.hot:
            n -= 1  # The count that reached the threshold handed the block back unexecuted
            handbacks += 1
        if n + it == 0:
            unrun[str(rec.tier)] = unrun.get(str(rec.tier), 0) + 1
        entries += n
        if rec.region:
            regions.add(rec.region)
            members += 1
            in_regions += it
        else:
            iterations += it
        key = (rec.vpc, rec.ppc, rec.flags)
        b = by_key.get(key)
        if b is None:
            b = by_key[key] = {"pc": rec.vpc, "ppc": rec.ppc, "flags": rec.flags,
                               "mode": MODES.get(rec.flags & 3, "?"), "tier": rec.tier, "insns": rec.n_insns,
                               "executions": 0, "entries": 0, "iterations": 0, "translations": 0,
                               "code": rec.code.hex(), "_best": -1}
        b["executions"] += n + it
        b["entries"] += n
        b["iterations"] += it
        b["translations"] += 1
        b["tier"] = rec.tier
        if n + it > b["_best"]:
            b["_best"] = n + it
            b["code"] = rec.code.hex()
            b["insns"] = rec.n_insns
    blocks = sorted(by_key.values(), key=lambda b: (-b["executions"], b["pc"]))
    for b in blocks:
        del b["_best"]
    return blocks, {"entries": entries, "iterations": iterations, "handbacks": handbacks, "unrun": unrun,
                    "regions": {"formed": len(regions), "blocks": members, "iterations": in_regions}}


def _events(events: list[tuple[float, str, int]]) -> list[list]:
    if len(events) <= MAX_EVENTS:
        return [[round(t, 6), k, n] for t, k, n in events]
    end = max(t for t, _, _ in events) or 1.0
    bins = 1000
    sums: dict[tuple[str, int], int] = {}
    for t, k, n in events:
        i = min(bins - 1, int(t / end * bins))
        sums[(k, i)] = sums.get((k, i), 0) + n
    return [[round(i * end / bins, 6), k, n] for (k, i), n in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def collect(m, t_start: float, t_run: float, t_end: float, pcache=None, program: str | None = None,
            kernel: str | None = None, started: float | None = None, hot: int = HOT_BLOCKS) -> dict:
    """The statistics document of a finished run (layout in the module docstring)."""
    tc = m.tcache
    es = m.engine.stats
    dispatch = sum(int(h.s.stat_dispatch) for h in m.harts)
    jc_miss = sum(int(h.s.stat_jc_miss) for h in m.harts)
    blocks, totals = block_counts(tc)
    dispatched = dispatch - jc_miss
    invalidations = {c: 0 for c in CAUSES}
    invalidations.update(tc.invalidations)
    for cause, n in m.native_invalidations().items():
        invalidations[cause] += n
    invalidations["fence.i"] = tc.fence_i
    invalidations.pop("reset", None)
    tiers = {}
    for t, ts in sorted(tc.tier_stats.items()):
        tiers[str(t)] = {"blocks": ts.blocks, "insns": ts.insns, "modules": ts.modules, "compiled": ts.compiled,
                         "cached": ts.cached, "compile_seconds": ts.compile_seconds,
                         "object_bytes": ts.object_bytes, "code_bytes": ts.code_bytes,
                         "never_run": totals["unrun"].get(str(t), 0)}
    modes = {MODES.get(k, str(k)): {"blocks": tc.by_mode[k], "insns": tc.insns_by_mode[k]}
             for k in sorted(tc.by_mode, reverse=True)}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "program": program,
        "kernel": kernel,
        "started": started if started is not None else time.time() - (t_end - t_start),
        "guest_insns": sum(h.retired() for h in m.harts),
        "harts": {"count": len(m.harts), "insns": [h.retired() for h in m.harts]},
        "run_seconds": t_end - t_run,
        "total_seconds": t_end - t_start,
        "jit": {
            "blocks": tc.translated_blocks,
            "blocks_by_tier": {str(k): v for k, v in sorted(tc.by_tier.items())},
            "promotions": tc.promotions,
            "insns": tc.translated_insns,
            "modules": es.modules,
            "functions": es.functions,
            "compile_seconds": es.seconds,
            "translate_seconds": tc.translate_seconds,
            "object_bytes": es.object_bytes,
            "code_bytes": es.code_bytes,
            "tiers": tiers,
            "modes": modes,
            "memory": {"limit": tc.tb_size, "estimated": tc.jit_bytes, "peak": tc.peak_jit_bytes,
                       "flushes": tc.flushes, "live_modules": len(tc.modules), "live_blocks": len(tc.blocks),
                       "live_code_bytes": tc.live_code_bytes, "released": tc.released},
        },
        "block_table": {"lookups": tc.lookups, "hits": tc.lookup_hits, "misses": tc.lookups - tc.lookup_hits},
        "jump_cache": {"lookups": dispatch, "hits": dispatched, "misses": jc_miss},
        "dispatch": {"lookups": dispatch, "jump_cache_misses": jc_miss},
        "transitions": {
            "executions": totals["entries"] + totals["iterations"] + totals["regions"]["iterations"],
            "entries": totals["entries"],
            "loop_iterations": totals["iterations"],
            "region_iterations": totals["regions"]["iterations"],
            "dispatched": dispatched,
            "chained": max(0, totals["entries"] + totals["handbacks"] - dispatched),
        },
        "regions": totals["regions"],
        "callouts": dict(m.stats_callouts),
        "interpreter": _interpreter(m),
        "warm_start": {"loaded": tc.warm_loaded, "restored": tc.restored, "changed": tc.restore_changed,
                       "failed": tc.restore_failed, "left": len(tc.prepared), "unprimed": tc.unprimed,
                       "at_start": tc.restored_at_start,
                       "seconds": tc.restore_seconds, "finish_promoted": tc.finish_promoted,
                       "finish_seconds": tc.finish_seconds},
        "time": _time_split(m),
        "invalidations": invalidations,
        "fence_i": tc.fence_i,
        "mmu": {"walks": m.mmu.stats_walks, "fills": m.mmu.stats_fills,
                "native_walks": sum(h.s.stat_walks for h in m.harts),
                "notdirty_stores": sum(h.s.stat_notdirty for h in m.harts),
                "native_sfences": m.native_invalidations()["sfence.vma"]},
        "pcache": pcache.as_dict() if pcache is not None else {"enabled": False},
        "vfm": m.monitor.stats if m.monitor is not None else {},
        "hot_blocks": blocks[:hot],
        "events": _events([e for e in tc.events if e[1] != "reset"]),
    }


def _interpreter(m) -> dict:
    tc = m.tcache
    return {"enabled": m.warm_threshold > 0, "warm_threshold": tc.warm_threshold or m.warm_threshold,
            "insns": sum(int(h.s.stat_interp) for h in m.harts), "heads_warmed": tc.warm_heads,
            "blocks_translated": tc.warm_blocks, "stale_dropped": tc.warm_dropped}


def _time_split(m) -> dict:
    """Host seconds of the run loop: in the interpreter, in compiled code (dispatcher included),
    in Python by cause of entry (callouts from native code and the run loop's exits; warm, miss
    and hot include the main thread's translation work), measured with perf_counter and, for the
    interpreter, the host cycle counter."""
    interp_total = 0.0
    if m.cycles_per_second:
        interp_total = sum(int(h.s.stat_interp_cycles) for h in m.harts) / m.cycles_per_second
    callouts, from_interp = m.callout_seconds()
    interp = max(0.0, interp_total - from_interp)
    compiled = max(0.0, m.native_seconds - interp_total - (sum(callouts.values()) - from_interp))
    return {"interpreter": interp, "compiled": compiled, "python": {**m.stats_seconds, **callouts},
            "translate": m.tcache.translate_seconds}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def write(doc: dict, path: Path) -> None:
    """Writes a statistics document: a regular file atomically (through a symlink, its target);
    a FIFO, a device or another special file directly, as a shell's redirection would, never
    replacing it. Raises OSError."""
    text = dumps(doc)
    target = Path(os.path.realpath(path))
    try:
        special = not stat.S_ISREG(target.stat().st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(target, "w") as f:
            f.write(text)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def save_last(doc: dict) -> Path | None:
    """Keeps the document as the last run's (for `mirage cache stats`); never fails the run."""
    path = last_stats_path()
    try:
        write(doc, path)
    except OSError:
        return None
    return path


def load(path: Path) -> dict:
    """Reads a statistics document; raises ValueError if it is not one."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from e
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a Mirage statistics file")
    try:
        _check(doc, DOC, "")
    except ValueError as e:
        raise ValueError(f"{path}: not a valid Mirage statistics file: {e}") from None
    return doc


# The document's shape, checked once when it is read (the module docstring says what each key
# means). Every key may be missing (version 1 files lack some) unless marked required ("!"
# prefix); a key that is there must have this type. "int", "num" (int or float), "str", "str?"
# (or null), "bool", "hex" (a string of hex digits), "tree" (nested objects of ints); ("map", V):
# an object of V; ("list", V); ("row", V1, V2, ...): a list of exactly these.
_BLOCKS = {"!lookups": "int", "!hits": "int", "!misses": "int"}
_TIER = {"!blocks": "int", "never_run": "int", "!insns": "int", "!modules": "int", "!compiled": "int",
         "!cached": "int", "!compile_seconds": "num", "!object_bytes": "int", "!code_bytes": "int"}
DOC = {
    "schema": "str", "version": "int", "program": "str?", "kernel": "str?", "started": "num",
    "guest_insns": "int", "run_seconds": "num", "total_seconds": "num",
    "harts": {"!count": "int", "!insns": ("list", "int")},
    "jit": {"blocks": "int", "insns": "int", "blocks_by_tier": ("map", "int"), "promotions": "int",
            "modules": "int", "functions": "int", "compile_seconds": "num", "translate_seconds": "num",
            "object_bytes": "int", "code_bytes": "int", "tiers": ("map", _TIER),
            "modes": ("map", {"!blocks": "int", "!insns": "int"}),
            "memory": {"!limit": "int", "!estimated": "int", "!peak": "int", "!flushes": "int",
                       "!live_modules": "int", "!live_blocks": "int", "!live_code_bytes": "int",
                       "!released": "int"}},
    "block_table": _BLOCKS, "jump_cache": _BLOCKS,
    "dispatch": {"lookups": "int", "jump_cache_misses": "int"},
    "transitions": {"!executions": "int", "entries": "int", "!loop_iterations": "int", "region_iterations": "int",
                    "!dispatched": "int", "!chained": "int"},
    "regions": {"!formed": "int", "!blocks": "int", "!iterations": "int"},
    "callouts": ("map", "int"), "invalidations": ("map", "int"), "fence_i": "int",
    "interpreter": {"!enabled": "bool", "!warm_threshold": "int", "!insns": "int", "!heads_warmed": "int",
                    "!blocks_translated": "int", "!stale_dropped": "int"},
    "warm_start": {"!loaded": "int", "!restored": "int", "!changed": "int", "!failed": "int", "!left": "int",
                   "unprimed": "int", "at_start": "int", "!seconds": "num", "finish_promoted": "int",
                   "finish_seconds": "num"},
    "time": {"!interpreter": "num", "!compiled": "num", "!python": ("map", "num"), "!translate": "num"},
    "mmu": ("map", "int"),
    "pcache": {"!enabled": "bool", "dir": "str", "lookups": "int", "hits": "int", "misses": "int",
               "rejected": "int", "writes": "int", "write_errors": "int", "bytes_written": "int",
               "evicted": "int", "skipped": "int", "seconds_saved": "num", "run_loaded": "bool",
               "runs_rejected": "int", "run_saved": "bool"},
    "vfm": "tree",
    "hot_blocks": ("list", {"!pc": "int", "ppc": "int", "!flags": "int", "!mode": "str", "!tier": "int",
                            "!insns": "int", "!executions": "int", "entries": "int", "!iterations": "int",
                            "!translations": "int", "!code": "hex"}),
    "events": ("list", ("row", "num", "str", "num")),
}
_PCACHE_ON = ("lookups", "hits", "misses", "rejected", "writes", "seconds_saved")


def _check(v, spec, where: str) -> None:
    """Raises ValueError naming the first value of `v` that does not match `spec`."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{where or 'the document'} should be {what}, not {json.dumps(v)[:40]}")

    if isinstance(spec, str):
        ok = {"int": lambda: isinstance(v, int) and not isinstance(v, bool),
              "num": lambda: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
              "str": lambda: isinstance(v, str),
              "str?": lambda: v is None or isinstance(v, str),
              "bool": lambda: isinstance(v, bool),
              "hex": lambda: isinstance(v, str) and len(v) % 2 == 0 and all(c in string.hexdigits for c in v),
              "tree": lambda: _is_tree(v)}[spec]()
        if not ok:
            raise bad({"num": "a number", "str?": "a string or null", "hex": "a string of hex digits",
                       "tree": "nested objects of integers"}.get(spec, f"a {spec}"))
    elif isinstance(spec, dict):
        if not isinstance(v, dict):
            raise bad("an object")
        for key, sub in spec.items():
            name = key.lstrip("!")
            if name in v:
                _check(v[name], sub, f"{where}.{name}" if where else name)
            elif key.startswith("!"):
                raise ValueError(f"{where or 'the document'} has no {name!r}")
        if spec is DOC["pcache"] and v.get("enabled"):
            for name in _PCACHE_ON:
                if name not in v:
                    raise ValueError(f"{where} has no {name!r}")
    elif spec[0] == "map":
        if not isinstance(v, dict):
            raise bad("an object")
        for key, sub in v.items():
            _check(sub, spec[1], f"{where}.{key}")
    elif spec[0] == "list":
        if not isinstance(v, list):
            raise bad("a list")
        for i, sub in enumerate(v):
            _check(sub, spec[1], f"{where}[{i}]")
    else:  # "row"
        if not isinstance(v, list) or len(v) != len(spec) - 1:
            raise bad(f"a list of {len(spec) - 1}")
        for i, (sub, sub_spec) in enumerate(zip(v, spec[1:], strict=True)):
            _check(sub, sub_spec, f"{where}[{i}]")


def _is_tree(v, depth: int = 0) -> bool:
    if isinstance(v, dict):
        return depth < 5 and all(_is_tree(x, depth + 1) for x in v.values())
    return isinstance(v, int) and not isinstance(v, bool) and depth > 0
