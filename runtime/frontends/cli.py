"""The `mirage` command line: wires translator, runtime, vfm and platforms together."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from pathlib import Path

import click

from runtime.frontends.cli_args import fail, parse_size, ram_size

MAX_HARTS = 8  # -smp


def _gate() -> click.Command:
    from runtime.tools.gate import gate

    return gate


def _cache() -> click.Command:
    from runtime.frontends.cli_cache import cache

    return cache


def _dtb() -> click.Command:
    from runtime.frontends.cli_dtb import dtb

    return dtb


def _images() -> click.Command:
    from runtime.frontends.cli_images import images

    return images


class _Commands(click.Group):
    """`mirage`'s subcommands; those defined in other modules are imported only when named (or
    listed by --help), so that a jit-run does not pay for them at start-up."""

    LAZY = {"cache": _cache, "dtb": _dtb, "gate": _gate, "images": _images}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands:
            # An unknown name loads them all: click suggests close matches among self.commands.
            for lazy in [name] if name in self.LAZY else self.LAZY:
                if lazy not in self.commands:
                    self.add_command(self.LAZY[lazy](), lazy)
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("-smp", "--smp", "smp", type=click.IntRange(1, MAX_HARTS), default=1, show_default=True,
              help="Number of harts (as QEMU's -smp); they take turns in one host thread, all starting at "
                   "the firmware's entry with a0 = their hart id.")
@click.option("--icount", is_flag=True, help="Time advances with retired instructions (reproducible).")
@click.option("--hot-threshold", type=click.IntRange(0, 1 << 30), default=None, envvar="MIRAGE_HOT_THRESHOLD",
              help="Executions before a block is recompiled optimized (0: optimize everything at once).")
@click.option("--warm-threshold", type=click.IntRange(0, 1 << 30), default=None, envvar="MIRAGE_WARM_THRESHOLD",
              help="Executions of a block head in the interpreter before it is translated (0: no interpreter, "
                   "translate every block on its first execution).")
@click.option("--jit-thread/--no-jit-thread", default=True, show_default=True, envvar="MIRAGE_JIT_THREAD",
              help="Compile code in a worker thread while the guest runs on (off, and always under --icount: "
                   "in the run loop, so translations go in at reproducible points).")
@click.option("--tb-size", metavar="SIZE", envvar="MIRAGE_TB_SIZE",
              help="Host memory for translations (e.g. 64M; a bare number is MiB, as QEMU's tb-size); "
                   "reaching it flushes them all. 0: no bound. Default: runtime/core/tcache.py's TB_SIZE.")
@click.option("--firmware", type=click.Path(dir_okay=False),
              help="With a named image: run this firmware instead of its own (as QEMU's -bios).")
@click.option("--kernel", type=click.Path(dir_okay=False), help="Payload (ELF or raw) loaded at 0x80200000.")
@click.option("--dtb", type=click.Path(dir_okay=False), help="Device tree blob (default: generated).")
@click.option("--initrd", type=click.Path(dir_okay=False), help="Initial ramdisk (placed as QEMU does, range in /chosen).")
@click.option("--append", help="Kernel command line (/chosen/bootargs).")
@click.option("-d", "debug", metavar="CATS", help="Trace: in_asm,exec,int,vfm,mmu (comma separated).")
@click.option("-D", "debug_file", type=click.Path(dir_okay=False), help="Write the trace to FILE.")
@click.option("-s", "gdb_default", is_flag=True, help="gdb stub on tcp 127.0.0.1:1234 (as QEMU -s).")
@click.option("--gdb", "gdb_port", type=click.IntRange(0, 65535), help="gdb stub on this port (0: any free one).")
@click.option("-S", "gdb_stop", is_flag=True, help="Stop before the first instruction and wait for gdb.")
@click.option("--offload/--no-offload", default=None,
              help="The monitor's fast path for SBI calls and misaligned accesses of the OS (off: all go to "
                   "the firmware). Default: on for firmware that implements SBI (named images, OpenSBI, RustSBI).")
@click.option("--no-pcache", is_flag=True, envvar="MIRAGE_NO_PCACHE",
              help="Do not use the persistent translation cache (~/.cache/mirage/tcache).")
@click.option("--policy", "policies", multiple=True, metavar="NAME",
              help="Security policy of the monitor, repeatable (names in vfm/policy/; an unknown one lists them).")
@click.option("--audit-log", type=click.Path(dir_okay=False),
              help="With --policy audit: write the firmware's accesses to OS memory here (JSON lines).")
def jit_run(program: str, signature: str | None, signature_granularity: str, max_insns: int | None,
            stats_file: str | None, memory: str, opt: int, smp: int, icount: bool, hot_threshold: int | None,
            warm_threshold: int | None, kernel: str | None, gdb_default: bool, gdb_port: int | None, gdb_stop: bool,
            initrd: str | None, append: str | None,
            dtb: str | None, debug: str | None, debug_file: str | None, offload: bool | None,
            no_pcache: bool, jit_thread: bool, tb_size: str | None, firmware: str | None,
            policies: tuple[str, ...], audit_log: str | None) -> None:
    """Run PROGRAM (an ELF, a raw binary at 0x80000000, or a named image: demo, linux-shell) as
    firmware under the monitor."""
    from platforms import qemu_virt
    from runtime.boot import board, protocol
    from runtime.boot.loader import LoadError, read_capped
    from vfm import policy
    from vfm.monitor import MONITOR_RAM, Monitor

    try:
        ram = ram_size(memory)
    except ValueError as e:
        fail(str(e))
    try:
        chosen = policy.make(list(policies), audit_log)
    except policy.PolicyError as e:
        fail(str(e))
    if max_insns is not None and max_insns < 0:
        fail(f"--max-insns {max_insns}: must be 0 or more")
    tb_bytes = None
    if tb_size is not None:
        try:
            tb_bytes = parse_size(tb_size)
        except (ValueError, OverflowError):
            fail(f"--tb-size {tb_size!r}: give a size such as 64M (0: no bound)")
        if tb_bytes < 0:
            fail(f"--tb-size {tb_size!r}: must be 0 or more")
    if append is not None:
        try:
            append.encode("utf-8")
        except UnicodeEncodeError:
            fail("--append: the kernel command line is not valid UTF-8")
    _guard_stdout()
    t_start = time.perf_counter()
    # The monitor's own memory sits just above the guest's RAM, outside the device tree.
    try:
        m = board.build(qemu_virt, ram_size=ram + MONITOR_RAM, opt=opt, icount=icount, harts=smp)
    except (OSError, MemoryError, OverflowError) as e:
        fail(f"cannot allocate {memory} of guest RAM: {getattr(e, 'strerror', None) or 'out of memory'}")
    if hot_threshold is not None:
        m.tcache.set_hot_threshold(hot_threshold)
    if warm_threshold is not None:
        m.warm_threshold = warm_threshold
    # Under --icount a translation must go in at the same instruction in every run: the interpreter
    # gives way to compiled code there, and code stops for its budget (the harts' turns, timer
    # deadlines) at block boundaries instead of instruction ones.
    m.tcache.background = jit_thread and not icount
    if tb_bytes is not None:
        m.tcache.tb_size = tb_bytes
    pcache = None
    if not no_pcache:
        from runtime.core.pcache import PersistentCache

        pcache = PersistentCache()
        try:
            pcache.check_dir()
        except ValueError as e:
            fail(str(e))
        m.engine.object_cache = pcache
    from runtime.boot.images import build as images

    named_image = program in images.NAMED and not Path(program).exists()
    if named_image:
        try:
            named = images.resolve(program)
        except images.ImageError as e:
            fail(str(e))
        # A named image may bring a kernel, an initrd and a command line; options override them.
        program = firmware or str(named.firmware)
        kernel = kernel or (named.kernel and str(named.kernel))
        initrd = initrd or (named.initrd and str(named.initrd))
        append = named.append if append is None else append
    elif firmware is not None:
        fail("--firmware replaces a named image's firmware (linux-shell); PROGRAM is the firmware here")
    guest = protocol.Guest(program=Path(program), ram_size=ram, kernel=kernel and Path(kernel),
                           initrd=initrd and Path(initrd), dtb=dtb and Path(dtb), bootargs=append,
                           monitor_ram=MONITOR_RAM)
    try:
        booted = protocol.boot(m, guest)
    except LoadError as e:
        fail(str(e))
    img = booted.image
    if signature:
        _check_signature(img, *booted.ram)
    if debug:
        from runtime.frontends import trace

        try:
            cats = trace.parse_categories(debug)
        except ValueError as e:
            fail(str(e))
        try:
            out = open(debug_file, "w", buffering=1 << 16) if debug_file else sys.stderr
        except OSError as e:
            fail(f"{debug_file}: {e.strerror}")
        trace.Tracer(cats, out, name=debug_file or "stderr").attach(m)
    from vfm import sbi

    sbi_firmware = sbi.firmware_name(read_capped(Path(program), ram))
    if offload is None:
        # The fast path answers SBI calls: only for a firmware that is an SBI implementation,
        # else its mtvec must see the OS's ecalls (mcause 9, privileged spec 3.1.15).
        offload = (named_image and firmware is None) or sbi_firmware is not None
    # The OS owns the RAM from where the firmware hands over to it (the payload address) up.
    mon = Monitor(offload=offload, reserved=[booted.monitor_ram], policies=chosen, os_memory=booted.os_memory,
                  firmware=sbi_firmware)
    mon.attach(m)
    # Every hart starts at the firmware's entry, as QEMU's virt reset vector sends them.
    for hart in m.harts:
        mon.reset(hart, booted.entry, *booted.reset_args(hart.id))
    m.max_insns = max_insns
    stub = None
    if gdb_default or gdb_stop or gdb_port is not None:
        from runtime.frontends.gdbstub import GdbStub

        try:
            stub = GdbStub(m, 1234 if gdb_port is None else gdb_port)
        except OSError as e:
            fail(f"gdb stub: cannot listen on port {1234 if gdb_port is None else gdb_port}: {e.strerror}")
    uart = getattr(m, "devices", {}).get("uart0")
    console = None
    if uart is not None:
        from runtime.frontends.console import StdinFeed, TtyConsole

        if sys.stdin.isatty():
            # Interactive, as QEMU's -nographic: raw terminal for the run, Ctrl-A escapes.
            console = TtyConsole(uart, sys.stdin.fileno(), signals=stub is not None)
            console.attach(m)
        else:
            StdinFeed(uart, sys.stdin.fileno()).attach(m)
    # Warm start: translations of the last run of the same program on the same machine with the
    # same options go in without being translated again (not under --icount, whose runs must
    # translate at the same points every time, nor with a debugger or a trace).
    warm_key = None
    if pcache is not None and not icount and not debug and stub is None:
        warm_key = pcache.run_key(
            *(_file_identity(f) for f in (program, kernel, initrd, dtb)),
            f"ram={ram} smp={smp} append={append!r} offload={offload} policies={','.join(policies)}",
            m.translation_options())
        doc = pcache.load_run(warm_key)
        if doc is not None and not m.tcache.load_warm_set(doc):
            pcache.reject_run(warm_key)
        m.finish_translations = True
    t_run = time.perf_counter()
    try:
        with console or contextlib.nullcontext():
            if stub is not None and gdb_stop:
                stub.wait_and_stop()
            result = m.run()
    except KeyboardInterrupt:
        mon.close()
        click.echo("\nmirage: interrupted", err=True)
        sys.exit(130)
    t_end = time.perf_counter()
    mon.close()
    if console is not None and console.quit:
        click.echo("mirage: terminated by Ctrl-A x", err=True)
    if stub is not None:
        stub.finish(result)
    # After the run, a file that cannot be written is reported and the guest's status is kept.
    errors = []
    if m.trace is not None:
        m.trace.flush()
        if m.trace.error:
            errors.append(m.trace.error)
    if signature:
        try:
            write_signature(m, img, Path(signature), int(signature_granularity))
        except OSError as e:
            errors.append(f"--signature {signature}: {e.strerror}")
    if warm_key is not None:
        pcache.save_run(warm_key, *m.tcache.warm_set())
    from runtime.frontends import stats

    doc = stats.collect(m, t_start, t_run, t_end, pcache, program, kernel)
    if stats_file:
        try:
            stats.write(doc, Path(stats_file))
        except OSError as e:
            errors.append(f"--stats {stats_file}: {e.strerror}")
    stats.save_last(doc)
    if pcache is not None:
        pcache.close()
    if result.message and result.code != 0:
        click.echo(f"mirage: {result.message}", err=True)
    for err in errors:
        click.echo(f"mirage: error: {err}", err=True)
    _flush_stdout()
    global _exit_at_once
    _exit_at_once = True
    sys.exit(result.code)


@main.command("audit")
@click.argument("log", type=click.Path(dir_okay=False))
def audit(log: str) -> None:
    """Summarize an audit log of `jit-run --policy audit --audit-log LOG`: the OS pages the
    firmware touched, by SBI call."""
    from vfm.policy.audit import AuditLogError, summarize

    try:
        click.echo(summarize(Path(log)), nl=False)
    except AuditLogError as e:
        fail(str(e))


class _ClosedStdout:
    """Stands for a stdout the process was started without: writing to it fails as on a closed fd."""

    def write(self, data) -> int:
        raise OSError(errno.EBADF, "stdout is closed")

    def flush(self) -> None:
        pass

    @property
    def buffer(self) -> _ClosedStdout:
        return self


def _guard_stdout() -> None:
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()


def _flush_stdout() -> None:
    """Flushes stdout; if it cannot take the output (full, broken pipe), what is left goes to
    /dev/null, so the interpreter's own flush at exit prints no traceback either."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.close(fd)
        except OSError:
            pass


def _file_identity(path: str | None) -> str:
    """A file as a warm set's key sees it: where it is, its size and modification time."""
    if path is None:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return f"{path} missing"
    return f"{os.path.realpath(path)} {st.st_size} {st.st_mtime_ns}"


def _check_signature(img, ram_base: int, ram_end: int) -> None:
    """--signature needs begin_signature <= end_signature, both inside the guest's RAM."""
    begin = img.symbols.get("begin_signature")
    end = img.symbols.get("end_signature")
    if begin is None or end is None:
        fail(f"{img.path}: no begin_signature/end_signature symbols for --signature")
    if end < begin:
        fail(f"{img.path}: end_signature {end:#x} is below begin_signature {begin:#x}")
    if not (ram_base <= begin and end <= ram_end):
        fail(f"{img.path}: the signature [{begin:#x}, {end:#x}) is not inside the guest's RAM "
             f"[{ram_base:#x}, {ram_end:#x})")


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
    """The run's statistics (schema in runtime/frontends/stats.py)."""
    from runtime.frontends import stats

    return stats.collect(m, t_start, t_run, t_end, m.engine.object_cache)


def write_stats(m, path: Path, t_start: float, t_run: float, t_end: float) -> None:
    from runtime.frontends import stats

    stats.write(collect_stats(m, t_start, t_run, t_end), path)


# Set by jit-run once everything it writes is written and closed.
_exit_at_once = False


def entry() -> None:
    """The `mirage` command (and `python3 -m runtime`): `main`, except that a jit-run that is over
    exits at once: without waiting for its worker thread, which may still be in a compilation
    nobody needs (Python joins its threads at exit; an LLVM compilation cannot be interrupted),
    and without tearing down the JIT and the machine's objects one by one (about 35 ms after a
    linux-shell boot)."""
    try:
        main()
    except SystemExit as e:
        if (not _exit_at_once or not isinstance(e.code, int | None)
                or sys.getprofile() is not None or sys.gettrace() is not None):
            raise  # Also under a profiler or debugger, which write their results at exit
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        os._exit(e.code or 0)

