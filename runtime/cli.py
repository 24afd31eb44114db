"""The `mirage` command line: wires translator, runtime, vfm and platforms together."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from runtime.loader import LoadError

SIZE_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """QEMU-style sizes: 256M, 2G, 65536 (a bare number means MiB as in QEMU's -m)."""
    t = text.strip().lower().rstrip("b")
    if t and t[-1] in SIZE_SUFFIX:
        return int(float(t[:-1]) * SIZE_SUFFIX[t[-1]])
    return int(t) << 20


def fail(message: str, status: int = 2) -> None:
    click.echo(f"mirage: error: {message}", err=True)
    sys.exit(status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mirage")
def main() -> None:
    """Mirage: a virtual firmware monitor for RISC-V on an LLVM JIT."""


@main.command("jit-run")
@click.argument("program")
@click.option("--signature", type=click.Path(dir_okay=False), help="Write begin_signature..end_signature here.")
@click.option("--signature-granularity", type=click.Choice(["4", "8"]), default="4", show_default=True)
@click.option("--max-insns", type=int, help="Stop after this many guest instructions.")
@click.option("--stats", "stats_file", type=click.Path(dir_okay=False), help="Write run statistics (JSON).")
@click.option("-m", "memory", default="256M", show_default=True, help="Guest RAM size.")
@click.option("--opt", type=click.IntRange(0, 3), default=2, show_default=True, help="LLVM codegen level.")
@click.option("--icount", is_flag=True, help="Time advances with retired instructions (reproducible).")
@click.option("--hot-threshold", type=click.IntRange(0, 1 << 30), default=None, envvar="MIRAGE_HOT_THRESHOLD",
              help="Executions before a block is recompiled optimized (0: optimize everything at once).")
@click.option("--kernel", type=click.Path(dir_okay=False), help="Payload (ELF or raw) loaded at 0x80200000.")
@click.option("--dtb", type=click.Path(dir_okay=False), help="Device tree blob (default: generated).")
@click.option("-d", "debug", metavar="CATS", help="Trace: in_asm,exec,int,vfm,mmu (comma separated).")
@click.option("-D", "debug_file", type=click.Path(dir_okay=False), help="Write the trace to FILE.")
def jit_run(program: str, signature: str | None, signature_granularity: str, max_insns: int | None,
            stats_file: str | None, memory: str, opt: int, icount: bool, hot_threshold: int | None,
            kernel: str | None,
            dtb: str | None, debug: str | None, debug_file: str | None) -> None:
    """Run PROGRAM (an ELF, a raw binary at 0x80000000, or a named image: demo) as firmware
    under the monitor."""
    from platforms import qemu_virt
    from runtime import board
    from runtime.devices.htif import Htif
    from runtime.loader import load
    from vfm.monitor import Monitor

    try:
        ram = parse_size(memory)
    except ValueError:
        fail(f"bad memory size {memory!r}")
    t_start = time.perf_counter()
    m = board.build(qemu_virt, ram_size=ram, opt=opt, icount=icount)
    if hot_threshold is not None:
        m.tcache.set_hot_threshold(hot_threshold)
    from runtime.images import build as images

    if program in images.NAMED and not Path(program).exists():
        try:
            program = str(images.NAMED[program]())
        except images.ImageError as e:
            fail(str(e))
    try:
        img = load(m.mem, Path(program), qemu_virt.RAM_BASE)
    except LoadError as e:
        fail(str(e))
    if "tohost" in img.symbols:
        Htif(m, img.symbols["tohost"], img.symbols.get("fromhost"))
    if kernel:
        try:
            load(m.mem, Path(kernel), qemu_virt.PAYLOAD_ADDR)
        except LoadError as e:
            fail(str(e))
    if dtb:
        try:
            blob = Path(dtb).read_bytes()
        except OSError as e:
            fail(f"{dtb}: {e.strerror}")
    else:
        from runtime import fdt

        blob = fdt.encode(qemu_virt.device_tree(ram_size=ram, harts=len(m.harts)))
    # Near the top of RAM, 2 MiB aligned, as QEMU places it.
    dtb_addr = (m.mem.ram_end - len(blob) - (1 << 21)) & ~((1 << 21) - 1)
    m.mem.load_bytes(dtb_addr, blob)
    if debug:
        from runtime import trace

        try:
            cats = trace.parse_categories(debug)
        except ValueError as e:
            fail(str(e))
        try:
            out = open(debug_file, "w", buffering=1 << 16) if debug_file else sys.stderr
        except OSError as e:
            fail(f"{debug_file}: {e.strerror}")
        trace.Tracer(cats, out).attach(m)
    # fw_dynamic's info block (OpenSBI include/sbi/fw_dynamic.h, version 2): magic "OSBI",
    # version, next address, next mode (1 = S), options, boot hart. fw_jump ignores a2.
    info_addr = dtb_addr - 0x1000
    info = (0x4942534F, 2, qemu_virt.PAYLOAD_ADDR, 1, 0, 0)
    m.mem.load_bytes(info_addr, b"".join(v.to_bytes(8, "little") for v in info))
    mon = Monitor()
    mon.attach(m)
    hart = m.harts[0]
    mon.reset(hart, img.entry, hart.id, dtb_addr, info_addr)
    m.max_insns = max_insns
    t_run = time.perf_counter()
    try:
        result = m.run()
    except KeyboardInterrupt:
        click.echo("\nmirage: interrupted", err=True)
        sys.exit(130)
    t_end = time.perf_counter()
    sys.stdout.flush()
    if m.trace is not None:
        m.trace.out.flush()
    if signature:
        write_signature(m, img, Path(signature), int(signature_granularity))
    if stats_file:
        write_stats(m, Path(stats_file), t_start, t_run, t_end)
    if result.message and result.code != 0:
        click.echo(f"mirage: {result.message}", err=True)
    sys.exit(result.code)


def write_signature(m, img, path: Path, granularity: int) -> None:
    """Spike's convention: one hex word per line, lowest address first."""
    begin = img.symbols.get("begin_signature")
    end = img.symbols.get("end_signature")
    if begin is None or end is None:
        fail(f"{img.path}: no begin_signature/end_signature symbols for --signature")
    data = m.mem.read_bytes(begin, end - begin)
    lines = []
    for off in range(0, len(data), granularity):
        word = int.from_bytes(data[off:off + granularity].ljust(granularity, b"\0"), "little")
        lines.append(f"{word:0{2 * granularity}x}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def collect_stats(m, t_start: float, t_run: float, t_end: float) -> dict:
    hart = m.harts[0]
    s = hart.s
    tc = m.tcache
    return {
        "schema": "mirage-stats",
        "version": 1,
        "guest_insns": sum(h.retired() for h in m.harts),
        "run_seconds": t_end - t_run,
        "total_seconds": t_end - t_start,
        "jit": {
            "blocks": tc.translated_blocks,
            "blocks_by_tier": {str(k): v for k, v in sorted(tc.by_tier.items())},
            "promotions": tc.promotions,
            "insns": tc.translated_insns,
            "modules": m.engine.stats.modules,
            "functions": m.engine.stats.functions,
            "compile_seconds": m.engine.stats.seconds,
            "translate_seconds": tc.translate_seconds,
            "object_bytes": m.engine.stats.object_bytes,
        },
        "dispatch": {
            "lookups": int(s.stat_dispatch),
            "jump_cache_misses": int(s.stat_jc_miss),
        },
        "callouts": dict(m.stats_callouts),
        "invalidations": dict(tc.invalidations),
        "fence_i": tc.fence_i,
        "mmu": {"walks": m.mmu.stats_walks, "fills": m.mmu.stats_fills},
        "vfm": dict(m.monitor.stats) if m.monitor is not None else {},
    }


def write_stats(m, path: Path, t_start: float, t_run: float, t_end: float) -> None:
    path.write_text(json.dumps(collect_stats(m, t_start, t_run, t_end), indent=2) + "\n")


def _register_subcommands() -> None:
    from runtime import gate
    from runtime.cli_dtb import dtb

    main.add_command(gate.gate)
    main.add_command(dtb)


_register_subcommands()
