"""`mirage cache`: translation statistics of a run, and the persistent translation cache.

  mirage cache stats [FILE] [--json] [--plot OUT.png] [--top N] [--disasm K]
      FILE is a `jit-run --stats` file; without it, the last run's (every jit-run saves its
      statistics to <cache dir>/last-stats.json). Schema in runtime/frontends/stats.py.
  mirage cache info      entries, size and age of the persistent cache (runtime/core/pcache.py)
  mirage cache clear     deletes its entries
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from runtime.frontends.cli_args import fail

BRANCHES = {"beq", "bne", "blt", "bge", "bltu", "bgeu", "beqz", "bnez", "blez", "bgez", "bltz", "bgtz", "bgt",
            "ble", "bgtu", "bleu", "j", "jal", "c.j", "c.jal", "c.beqz", "c.bnez"}


@click.group("cache", context_settings={"help_option_names": ["-h", "--help"]})
def cache() -> None:
    """Translation statistics and the persistent translation cache."""


@cache.command("stats")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="OUT.png",
              help="Draw translations and invalidations over time and the hottest blocks.")
@click.option("--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="Hot blocks listed.")
@click.option("--disasm", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="Hot blocks shown with their guest disassembly.")
def stats_cmd(file: str | None, as_json: bool, plot: str | None, top: int, disasm: int) -> None:
    """Show the statistics of a run: FILE from `jit-run --stats FILE`, else the last run's."""
    from runtime.frontends import stats

    path = Path(file) if file else stats.last_stats_path()
    if not file and not path.exists():
        fail(f"no statistics yet ({path}): run `mirage jit-run` first, or name a --stats FILE")
    try:
        doc = stats.load(path)
    except ValueError as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        render(doc, top=top, disasm=disasm, source=str(path))
    if plot:
        try:
            draw(doc, Path(plot))
        except OSError as e:
            fail(f"{plot}: {e.strerror}")
        if not as_json:
            click.echo(f"plot written to {plot}")


def _pcache():
    """The persistent translation cache, its directory checked (a one-line error if unusable)."""
    from runtime.core.pcache import PersistentCache

    pc = PersistentCache()
    try:
        pc.check_dir()
    except ValueError as e:
        fail(str(e))
    return pc


@cache.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info_cmd(as_json: bool) -> None:
    """Show the persistent translation cache: entries, size, age of the oldest and newest."""
    from rich.table import Table

    info = _pcache().info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    now = time.time()
    t = Table(title="Persistent translation cache", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("directory", info["dir"])
    t.add_row("entries", f"{info['entries']:,}")
    t.add_row("warm sets", f"{info['warm_sets']:,}")
    t.add_row("size", f"{_mib(info['bytes'])} of {_mib(info['max_bytes'])}")
    t.add_row("oldest", _age(now, info["oldest"]))
    t.add_row("newest", _age(now, info["newest"]))
    t.add_row("key environment", info["environment"].split(" features=")[0])
    _console().print(t)


@cache.command("clear")
def clear_cmd() -> None:
    """Delete every entry (and warm set) of the persistent translation cache."""
    pc = _pcache()
    n = pc.clear()
    click.echo(f"removed {n} entries and {pc.runs_cleared} warm sets from {pc.dir}")


# Rendering
def _console():
    from rich.console import Console

    # Wide enough for the tables when not on a terminal (pipes, tests).
    c = Console(highlight=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=120)
    return c


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _age(now: float, t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, now - t)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit} ago ({time.strftime('%Y-%m-%d %H:%M', time.localtime(t))})"
    return f"{s:.0f} s ago"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def disassemble(code_hex: str, pc: int) -> list[str]:
    """Guest disassembly (capstone, RV64GC) of a block's bytes: 'address: bytes  mnemonic operands'."""
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    code = bytes.fromhex(code_hex)
    out = []
    off = 0
    while off < len(code):
        got = False
        for insn in md.disasm(code[off:], pc + off):
            got = True
            text = f"{insn.mnemonic} {insn.op_str}".strip()
            target = _branch_offset(insn.mnemonic, insn.op_str)
            if target is not None:
                text += f"  # {insn.address + target:#x}"
            out.append(f"{insn.address:#018x}:  {insn.bytes[::-1].hex():>8}  {text}")
            off += insn.size
        if off < len(code):
            # Not decodable (an illegal instruction ends a block): show its raw bits.
            size = 4 if code[off] & 3 == 3 and off + 4 <= len(code) else 2
            raw = int.from_bytes(code[off:off + size], "little")
            out.append(f"{pc + off:#018x}:  {raw:>8x}  .insn {raw:#x}  (illegal)")
            off += size
        elif not got:
            break
    return out


def _branch_offset(mnemonic: str, op_str: str) -> int | None:
    """A branch's or jump's pc-relative offset (capstone prints it as the last operand)."""
    if mnemonic not in BRANCHES:
        return None
    try:
        return int(op_str.replace(" ", "").split(",")[-1], 0)
    except ValueError:
        return None


def _flatten_vfm(vfm: dict) -> dict[str, int]:
    """Monitor entries by cause, one level: 'csr mstatus', 'os_traps ecall_s', 'sbi TIME.set_timer'."""
    out: dict[str, int] = {}
    for k, v in vfm.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, dict):
                    # Deeper levels (policies' counters: 'policies protect-payload.blocked.read')
                    stack = [(f"{k} {k2}", v2)]
                    while stack:
                        name, d = stack.pop()
                        for k3, v3 in d.items():
                            if isinstance(v3, dict):
                                stack.append((f"{name}.{k3}", v3))
                            else:
                                out[f"{name}.{k3}"] = v3
                else:
                    out[f"{k} {k2}"] = v2
        elif v:
            out[k] = v
    return {k: v for k, v in out.items() if v}


def time_split(doc: dict) -> dict[str, float]:
    """Where the run loop's host time went: native code by tier, then Python by cause of entry."""
    t = doc.get("time")
    if not t:
        return {}
    out = {"interpreter": t["interpreter"], "compiled code": t["compiled"]}
    for cause, secs in t["python"].items():
        out[f"python: {cause}"] = secs
    return out


def render(doc: dict, top: int = 10, disasm: int = 5, source: str = "") -> None:
    from rich.table import Table

    con = _console()

    def table(title: str, *cols: str) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold")
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 else "right")
        return t

    jit = doc.get("jit", {})
    insns = doc.get("guest_insns", 0)
    run = doc.get("run_seconds", 0.0)
    head = f"[bold]Mirage run statistics[/bold]  {source}\n"
    if doc.get("program"):
        head += f"program {doc['program']}" + (f"  kernel {doc['kernel']}" if doc.get("kernel") else "") + "\n"
    head += (f"{insns:,} guest instructions in {run:.3f} s"
             + (f" ({insns / run / 1e6:,.1f} MIPS)" if run else "")
             + f"; {doc.get('total_seconds', 0.0):.3f} s in all; schema version {doc.get('version')}")
    con.print(head)

    it = doc.get("interpreter")
    if it:
        t = table("Interpreter (cold tier)", "warm threshold", "instructions", "share", "heads warmed",
                  "blocks translated", "stale dropped")
        t.add_row(f"{it['warm_threshold']:,}" if it["enabled"] else "off", f"{it['insns']:,}",
                  _pct(it["insns"], insns), f"{it['heads_warmed']:,}", f"{it['blocks_translated']:,}",
                  f"{it['stale_dropped']:,}")
        con.print(t)
    ws = doc.get("warm_start")
    if ws and ws["loaded"]:
        t = table("Warm start (translations of the last run, from the persistent cache)", "loaded", "installed",
                  "bytes changed", "unusable", "not reached", "seconds")
        t.add_row(f"{ws['loaded']:,}", f"{ws['restored']:,}", f"{ws['changed']:,}", f"{ws['failed']:,}",
                  f"{ws['left']:,}", f"{ws['seconds']:.3f}")
        con.print(t)
    split = time_split(doc)
    if split:
        t = table("Host time of the run loop", "where", "seconds", "share")
        total = sum(split.values())
        for name, secs in split.items():
            t.add_row(name, f"{secs:.3f}", _pct(secs, total))
        con.print(t)

    t = table("Translation by tier", "tier", "blocks", "never run", "guest insns", "modules", "compiled",
              "from pcache", "compile s", "object bytes", "host code bytes")
    for tier, ts in sorted(jit.get("tiers", {}).items()):
        t.add_row({"0": "0 (cold, counted)", "1": "1 (optimized)"}.get(tier, tier), f"{ts['blocks']:,}",
                  f"{ts.get('never_run', 0):,}", f"{ts['insns']:,}", f"{ts['modules']:,}", f"{ts['compiled']:,}",
                  f"{ts['cached']:,}", f"{ts['compile_seconds']:.3f}", f"{ts['object_bytes']:,}",
                  f"{ts['code_bytes']:,}")
    # Blocks of every tier, those a warm start installed included (jit.blocks: those translated)
    blocks = sum(ts["blocks"] for ts in jit.get("tiers", {}).values())
    insns = sum(ts["insns"] for ts in jit.get("tiers", {}).values())
    t.add_row("all (+ runtime module)", f"{blocks:,}", "", f"{insns:,}",
              f"{jit.get('modules', 0):,}", "", "", f"{jit.get('compile_seconds', 0.0):.3f}",
              f"{jit.get('object_bytes', 0):,}", f"{jit.get('code_bytes', 0):,}", style="bold")
    con.print(t)
    con.print(f"promotions to tier 1: {jit.get('promotions', 0):,}; time in translate (scan, IR, compile): "
              f"{jit.get('translate_seconds', 0.0):.3f} s")
    mem = jit.get("memory")
    if mem:
        t = table("Translations' host memory (at the end)", "bound", "estimated", "peak", "flushes",
                  "live modules", "live blocks", "live host code", "unloaded modules")
        t.add_row(_mib(mem["limit"]) if mem["limit"] else "none", _mib(mem["estimated"]), _mib(mem["peak"]),
                  f"{mem['flushes']:,}", f"{mem['live_modules']:,}", f"{mem['live_blocks']:,}",
                  _mib(mem["live_code_bytes"]), f"{mem['released']:,}")
        con.print(t)

    t = table("Translation by privilege mode", "mode", "blocks", "guest insns")
    for mode, ms in jit.get("modes", {}).items():
        t.add_row({"M": "M (firmware, virtual)", "S": "S", "U": "U"}.get(mode, mode), f"{ms['blocks']:,}",
                  f"{ms['insns']:,}")
    con.print(t)

    t = table("Lookups", "table", "lookups", "hits", "misses", "hit rate")
    for name, key in (("jump cache (native)", "jump_cache"), ("block table (on jump-cache miss)", "block_table")):
        s = doc.get(key)
        if s:
            t.add_row(name, f"{s['lookups']:,}", f"{s['hits']:,}", f"{s['misses']:,}", _pct(s["hits"], s["lookups"]))
    con.print(t)

    tr = doc.get("transitions")
    if tr:
        t = table("Block transitions", "kind", "count", "share")
        total = tr["executions"]
        for name, key in (("chained (slot to slot)", "chained"), ("dispatched (jump cache)", "dispatched"),
                          ("self-loop iterations", "loop_iterations"), ("region iterations", "region_iterations")):
            if key in tr:
                t.add_row(name, f"{tr[key]:,}", _pct(tr[key], total))
        t.add_row("block executions", f"{total:,}", "", style="bold")
        con.print(t)

    rg = doc.get("regions")
    if rg is not None:
        con.print(f"[bold]Regions[/bold]: {rg['formed']:,} formed, {rg['blocks']:,} blocks in them, "
                  f"{rg['iterations']:,} iterations inside")

    t = table("Invalidations", "cause", "count")
    for cause, n in sorted(doc.get("invalidations", {}).items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(cause, f"{n:,}")
    con.print(t)

    pc = doc.get("pcache", {})
    if pc.get("enabled"):
        t = table("Persistent translation cache", "lookups", "hits", "misses", "rejected", "written",
                  "compile s saved")
        t.add_row(f"{pc['lookups']:,}", f"{pc['hits']:,}", f"{pc['misses']:,}", f"{pc['rejected']:,}",
                  f"{pc['writes']:,}", f"{pc['seconds_saved']:.3f}")
        con.print(t)
    else:
        con.print("[bold]Persistent translation cache[/bold]: off")

    calls = doc.get("callouts", {})
    if calls:
        t = table("Callouts into Python", *calls.keys())
        t.columns[0].justify = "right"
        t.add_row(*(f"{v:,}" for v in calls.values()))
        con.print(t)

    vfm = _flatten_vfm(doc.get("vfm", {}))
    if vfm:
        t = table("Monitor (VFM) entries by cause", "cause", "count")
        for cause, n in sorted(vfm.items(), key=lambda kv: (-kv[1], kv[0]))[:20]:
            t.add_row(cause, f"{n:,}")
        if len(vfm) > 20:
            t.add_row(f"... {len(vfm) - 20} more", "")
        con.print(t)

    hot = doc.get("hot_blocks", [])[:top]
    if hot:
        total = (tr or {}).get("executions") or sum(b["executions"] for b in hot)
        t = table("Hottest blocks", "#", "pc", "mode", "flags", "tier", "insns", "executions", "share",
                  "loop iterations", "translations")
        for i, b in enumerate(hot, 1):
            t.add_row(str(i), f"{b['pc']:#x}", b["mode"], f"{b['flags']:#x}", str(b["tier"]), str(b["insns"]),
                      f"{b['executions']:,}",
                      _pct(b["executions"], total), f"{b['iterations']:,}", str(b["translations"]))
        con.print(t)
        for i, b in enumerate(hot[:disasm], 1):
            con.print(f"[bold]#{i} block at {b['pc']:#x}[/bold] ({b['mode']}-mode, {b['executions']:,} executions)")
            for line in disassemble(b["code"], b["pc"]):
                con.print("  " + line, markup=False)


# Plot
def draw(doc: dict, out: Path) -> None:
    """A PNG: cumulative translations and invalidations over time, and the hottest blocks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = doc.get("events", [])
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 11), gridspec_kw={"height_ratios": [1, 1.1, 0.45]})
    kinds = sorted({k for _, k, _ in events}, key=lambda k: (k != "translate", k))
    for kind in kinds:
        xs, ys, total = [0.0], [0], 0
        for t, k, n in events:
            if k == kind:
                total += n
                xs.append(t)
                ys.append(total)
        label = "blocks translated" if kind == "translate" else f"invalidated: {kind}"
        ax1.step(xs, ys, where="post", label=f"{label} ({total:,})", linewidth=2 if kind == "translate" else 1.2)
    ax1.set_title("Translations and invalidations over time")
    ax1.set_xlabel("seconds since the machine was made")
    ax1.set_ylabel("cumulative count")
    if kinds:
        ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(alpha=0.3)

    hot = doc.get("hot_blocks", [])[:15]
    if hot:
        labels = [f"{b['pc']:#x} {b['mode']} flags {b['flags']:#x} ({b['insns']} insns)" for b in hot][::-1]
        values = [b["executions"] for b in hot][::-1]
        bars = ax2.barh(range(len(hot)), values, color="tab:orange")
        ax2.set_yticks(range(len(hot)), labels, fontsize=8, family="monospace")
        ax2.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=7, padding=2)
        if max(values) > 100 * max(1, min(values)):
            ax2.set_xscale("log")
    ax2.set_title("Hottest blocks (executions)")
    ax2.set_xlabel("executions")

    split = {k: v for k, v in time_split(doc).items() if v > 0}
    left = 0.0
    for i, (name, secs) in enumerate(split.items()):
        ax3.barh([0], [secs], left=left, color=plt.cm.tab20(i % 20), label=f"{name} {secs:.2f} s")
        left += secs
    ax3.set_yticks([])
    ax3.set_xlabel("host seconds")
    it = doc.get("interpreter") or {}
    ax3.set_title(f"Host time of the run loop; {it.get('insns', 0):,} instructions interpreted, "
                  f"{it.get('heads_warmed', 0):,} heads warmed")
    if split:
        ax3.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=4, fontsize=7)
    fig.suptitle(f"Mirage: {doc.get('program') or 'run'} - {doc.get('guest_insns', 0):,} guest instructions "
                 f"in {doc.get('run_seconds', 0.0):.2f} s", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
