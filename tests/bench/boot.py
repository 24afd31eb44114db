"""Boots the linux-shell images on QEMU and on Mirage and compares the wall times.

Usage (from the repo root)::

    python3 -m tests.bench.boot [--runs N] [--no-warm] [--json OUT] [--timeout S] [--no-qemu] [--policy NAME]
                                [--smp N ...]

Both emulators boot the same files, those `mirage images` names (built first with
`mirage images build` if missing, unless --no-build): OpenSBI fw_jump, Linux 6.1 and the busybox
initramfs, with the RAM size and kernel command line of `mirage jit-run linux-shell`. QEMU makes
its own device tree; it runs without Sstc, which Mirage does not have, so Linux takes its timer
from SBI on both. Each boot is a child process with stdin and stdout on pipes: the runner reads
the console until the init script has printed "Boot took N seconds" and the shell's prompt,
writes `poweroff -f` and waits for the emulator to exit. Per boot it notes the wall time to the
prompt, the wall time until the process exited, the guest's own "Boot took" figure
(/proc/uptime at the prompt) and the emulator process's peak resident memory (VmHWM in
/proc/PID/status, read until it exits; wait4's ru_maxrss would include the runner's own memory,
which the child inherits until its exec).

Rows:

* qemu: ``qemu-system-riscv64 -machine virt -cpu rv64,sstc=false``;
* mirage cold: ``python3 -m runtime jit-run FW --kernel ... --no-pcache``: everything translated
  and compiled during the boot;
* mirage warm: the persistent translation cache in a scratch directory ($MIRAGE_TCACHE_DIR, see
  runtime/core/pcache.py), filled by one unmeasured boot first, so compiled modules are linked from it
  and the fill's warm set is installed. Every warm boot starts from a copy of the cache as that one
  boot left it (a boot refreshes the warm set, so the next would otherwise find more).
  The user's ~/.cache/mirage/tcache is not touched.
* with ``--policy NAME`` (e.g. protect-payload, vfm/policy/): each Mirage row again with
  ``--policy NAME`` right after it (the warm one from the same cache), and a line with the
  policy's overhead on the total wall time.
* with ``--smp N`` (repeatable, e.g. ``--smp 1 --smp 4``): every row for each number of harts
  (QEMU's and Mirage's ``-smp N``), named with `` -smp N`` when it is not the default 1 alone.

After the boots, a start-up table: the wall time of importing Mirage's command line, of Mirage
running a program that exits at once (tests/bench/empty.c) and the `demo` image, and of QEMU
running the same program, best of max(N, 3) after one unmeasured run.

With ``--runs N`` every row is the best (lowest total wall time) of N boots. Mirage's runs also
write ``--stats`` files (runtime/frontends/stats.py): a second table shows the guest instructions, the time
spent translating and compiling, and the blocks and modules made. The exit status is 1 if a boot
failed (timed out, exited before the prompt or with a nonzero status), 2 if the images or QEMU
are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .run import DEFAULT_MIRAGE_CMD, QEMU, REPO_ROOT, _fmt, _fmt_insns, _log, _stats_number, _tail

QEMU_BOOT_ARGS: tuple[str, ...] = ("-machine", "virt", "-cpu", "rv64,sstc=false", "-nographic")
# What platforms/linux-shell-init.sh prints once the system is up, and the shell's prompt after it
# (PS1='\w # ' in /root, HOME=/root).
BOOT_TOOK_RE = re.compile(r"Boot took ([0-9]+(?:\.[0-9]+)?) seconds")
_BOOT_TOOK_BYTES_RE = re.compile(BOOT_TOOK_RE.pattern.encode())
PROMPT = b"~ # "
POWEROFF = b"poweroff -f\n"
# Seconds an emulator has to exit after `poweroff -f` (at most --timeout).
SHUTDOWN_TIMEOUT = 120.0


class BootError(Exception):
    """A boot did not reach the prompt or did not power off; the message says what happened."""


@dataclass(frozen=True)
class Images:
    """What both emulators boot."""

    firmware: Path
    kernel: Path
    initrd: Path
    append: str
    memory: str  # As QEMU's -m and jit-run's -m spell it, e.g. "256M"


@dataclass
class Attempt:
    """One boot: wall times from the start of the process, the guest's figure and the exit status."""

    prompt_seconds: float
    total_seconds: float
    boot_took: float | None
    returncode: int
    stats: dict[str, Any] = field(default_factory=dict)
    peak_rss_mib: float | None = None  # The emulator process's peak resident memory


@dataclass
class BootResult:
    """One row of the table: the best of its boots."""

    name: str
    status: str = "not-run"  # "ok", "error" or "not-run"
    reason: str = ""
    runs: int = 0
    prompt_seconds: float | None = None
    total_seconds: float | None = None
    boot_took: float | None = None
    returncode: int | None = None
    ratio: float | None = None  # total_seconds / QEMU's total_seconds
    all_total_seconds: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # stats_summary of the best boot (Mirage)
    peak_rss_mib: float | None = None  # Of the best boot
    all_peak_rss_mib: list[float | None] = field(default_factory=list)


# ---- The console ----


def parse_boot_took(text: str) -> float | None:
    """The guest's "Boot took N seconds" figure in console output, or None."""
    m = BOOT_TOOK_RE.search(text)
    return float(m.group(1)) if m else None


class ConsoleWatch:
    """Collects console output and tells when the shell prompt follows the "Boot took" line.
    Output may arrive a byte at a time (Mirage flushes each UART write), so each chunk is only
    searched from where the last search ended."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.boot_took: float | None = None
        self._scan = 0
        self._after: int | None = None  # Offset just past the "Boot took" line

    def feed(self, data: bytes) -> bool:
        """Adds output; True once the prompt has appeared."""
        self.buf += data
        if self._after is None:
            m = _BOOT_TOOK_BYTES_RE.search(self.buf, max(0, self._scan - 64))
            self._scan = len(self.buf)
            if m is None:
                return False
            self.boot_took = float(m.group(1))
            self._after = m.end()
        return self.buf.find(PROMPT, self._after) >= 0

    def text(self) -> str:
        return self.buf.decode(errors="replace")


def _read_some(fd: int, deadline: float) -> bytes | None:
    """What is readable on fd before the deadline: b"" at end of file, None on timeout."""
    left = deadline - time.perf_counter()
    if left <= 0:
        return None
    ready, _, _ = select.select([fd], [], [], left)
    if not ready:
        return None
    return os.read(fd, 65536)


def _failure(what: str, watch: ConsoleWatch, err: IO[bytes]) -> BootError:
    err.seek(0)
    stderr = _tail(err.read().decode(errors="replace"))
    console = _tail(watch.text())
    detail = "; ".join(x for x in (f"stderr: {stderr}" if stderr else "",
                                   f"last console line: {console}" if console else "") if x)
    return BootError(f"{what}{' (' + detail + ')' if detail else ''}")


def peak_rss_mib(pid: int) -> float | None:
    """A running process's peak resident memory so far (VmHWM) in MiB; None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _wait_peak(proc: subprocess.Popen, deadline: float, peak: float | None) -> tuple[int | None, float | None]:
    """Waits for the child to exit (until the deadline: status None), reading its peak resident
    memory every 10 ms meanwhile; its exit status and the highest peak read."""
    while True:
        now = peak_rss_mib(proc.pid)
        if now is not None and (peak is None or now > peak):
            peak = now
        try:
            return proc.wait(timeout=min(0.01, max(deadline - time.perf_counter(), 0.0))), peak
        except subprocess.TimeoutExpired:
            if time.perf_counter() >= deadline:
                return None, peak


def boot_once(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
              echo: IO[bytes] | None = None) -> Attempt:
    """Boots once: runs cmd, waits for the prompt, powers off, waits for the exit. Raises BootError
    (after killing the child) if it times out or exits early."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                cwd=REPO_ROOT, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        watch = ConsoleWatch()
        fd = proc.stdout.fileno()
        try:
            deadline = t0 + timeout
            while True:
                data = _read_some(fd, deadline)
                if data is None:
                    raise _failure(f"no shell prompt after {timeout:.0f} s", watch, err)
                if not data:
                    status = proc.wait()
                    raise _failure(f"exited with status {status} before the shell prompt", watch, err)
                if echo is not None:
                    echo.write(data)
                    echo.flush()
                if watch.feed(data):
                    break
            t_prompt = time.perf_counter()
            peak = peak_rss_mib(proc.pid)
            try:
                proc.stdin.write(POWEROFF)
                proc.stdin.flush()
            except BrokenPipeError:
                pass  # It exited already: its status says how
            limit = min(timeout, SHUTDOWN_TIMEOUT)
            deadline = time.perf_counter() + limit
            while data := _read_some(fd, deadline):
                if echo is not None:
                    echo.write(data)
                    echo.flush()
                watch.feed(data)
                peak = max(peak or 0.0, peak_rss_mib(proc.pid) or 0.0) or None
            if data is None:
                raise _failure(f"still running {limit:.0f} s after `poweroff -f`", watch, err)
            status, peak = _wait_peak(proc, max(deadline, time.perf_counter() + 0.1), peak)
            if status is None:
                raise _failure(f"did not exit {limit:.0f} s after `poweroff -f`", watch, err)
            t_end = time.perf_counter()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
        if status != 0:
            raise _failure(f"exit status {status} after `poweroff -f`", watch, err)
    return Attempt(t_prompt - t0, t_end - t0, watch.boot_took, status, peak_rss_mib=peak)


# ---- The engines ----


def qemu_command(img: Images, harts: int = 1) -> list[str]:
    """QEMU booting the images as `mirage jit-run linux-shell -smp harts` does."""
    smp = ["-smp", str(harts)] if harts != 1 else []
    return [QEMU, *QEMU_BOOT_ARGS, *smp, "-m", img.memory, "-bios", str(img.firmware), "-kernel",
            str(img.kernel), "-initrd", str(img.initrd), "-append", img.append]


def mirage_command(img: Images, stats: Path, cold: bool, mirage_cmd: str = DEFAULT_MIRAGE_CMD,
                   policy: str | None = None, harts: int = 1) -> list[str]:
    """Mirage booting the images (the paths linux-shell resolves to, so nothing is looked up or
    built during the run) and writing its statistics to `stats`, under `policy` if given."""
    cmd = [*shlex.split(mirage_cmd), str(img.firmware), "--kernel", str(img.kernel), "--initrd",
           str(img.initrd), "--append", img.append, "-m", img.memory, "--stats", str(stats)]
    if harts != 1:
        cmd += ["-smp", str(harts)]
    if policy is not None:
        cmd += ["--policy", policy]
    return [*cmd, "--no-pcache"] if cold else cmd


def mirage_env(tcache: Path | None) -> dict[str, str]:
    """The environment of a Mirage boot: with the persistent translation cache in `tcache`, or
    (None) as given (the command line then says --no-pcache)."""
    env = dict(os.environ)
    if tcache is not None:
        env.pop("MIRAGE_NO_PCACHE", None)
        env["MIRAGE_TCACHE_DIR"] = str(tcache)
    return env


def stats_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures of a --stats document that show where a boot's time went."""
    jit = stats.get("jit") if isinstance(stats.get("jit"), dict) else {}
    pc = stats.get("pcache") if isinstance(stats.get("pcache"), dict) else {}
    return {
        "guest_insns": _stats_number(stats, "guest_insns"),
        "run_seconds": _stats_number(stats, "run_seconds"),
        "translate_seconds": _stats_number(jit, "translate_seconds"),
        "compile_seconds": _stats_number(jit, "compile_seconds"),
        "blocks": _stats_number(jit, "blocks"),
        "modules": _stats_number(jit, "modules"),
        "promotions": _stats_number(jit, "promotions"),
        "pcache_enabled": bool(pc.get("enabled")),
        "pcache_dir": pc.get("dir"),
        "pcache_hits": _stats_number(pc, "hits"),
        "pcache_misses": _stats_number(pc, "misses"),
    }


def best_of(name: str, attempts: list[Attempt]) -> BootResult:
    """The row for `attempts` (all successful): the figures of the one with the lowest total time."""
    best = min(attempts, key=lambda a: a.total_seconds)
    return BootResult(name=name, status="ok", runs=len(attempts), prompt_seconds=best.prompt_seconds,
                      total_seconds=best.total_seconds, boot_took=best.boot_took,
                      returncode=best.returncode, all_total_seconds=[a.total_seconds for a in attempts],
                      stats=best.stats, peak_rss_mib=best.peak_rss_mib,
                      all_peak_rss_mib=[a.peak_rss_mib for a in attempts])


def add_ratios(results: list[BootResult], reference: str = "qemu") -> None:
    """Sets each successful row's ratio: its total wall time over the reference row's (the one
    with the same number of harts, " -smp N" in the names)."""
    refs = {r.name: r for r in results if r.status == "ok"}
    for r in results:
        r.ratio = None
        smp = re.search(r" -smp \d+", r.name)
        ref = refs.get(reference + (smp.group(0) if smp else ""))
        if ref is not None and ref.total_seconds and r.status == "ok" and r.total_seconds is not None:
            r.ratio = r.total_seconds / ref.total_seconds


def run_row(name: str, runs: int, boot: Callable[[int], Attempt]) -> BootResult:
    """Boots `runs` times with boot(i) -> Attempt; the first failure ends the row."""
    attempts = []
    for i in range(runs):
        _log(f"{name}: boot {i + 1}/{runs}...")
        try:
            a = boot(i)
        except BootError as e:
            _log(f"{name}: FAILED: {e}")
            return BootResult(name=name, status="error", reason=str(e), runs=i + 1)
        _log(f"{name}: prompt after {a.prompt_seconds:.2f} s, exited after {a.total_seconds:.2f} s")
        attempts.append(a)
    return best_of(name, attempts)


def mirage_boot(img: Images, tmp: Path, tag: str, timeout: float, mirage_cmd: str, tcache: Path | None,
                echo: IO[bytes] | None, policy: str | None = None, harts: int = 1) -> Attempt:
    """One Mirage boot, its statistics summarized into the Attempt."""
    stats_path = tmp / f"{tag}.json"
    cmd = mirage_command(img, stats_path, cold=tcache is None, mirage_cmd=mirage_cmd, policy=policy, harts=harts)
    a = boot_once(cmd, timeout, mirage_env(tcache), echo)
    try:
        a.stats = stats_summary(json.loads(stats_path.read_text()))
    except (OSError, ValueError) as e:
        _log(f"warning: {tag}: no usable stats file ({e})")
    return a


def refill(filled: Path, tcache: Path) -> Path:
    """Makes `tcache` a copy of `filled` (the cache as the filling boot left it); returns it."""
    shutil.rmtree(tcache, ignore_errors=True)
    shutil.copytree(filled, tcache)
    return tcache


# ---- Images ----


def find_images(build: bool) -> Images:
    """The linux-shell images, built first (`mirage images build`) if missing and `build`.
    Raises BootError if they are missing and cannot be built."""
    from runtime.boot.images import linux
    from runtime.boot.images.build import ImageError

    def locate() -> tuple[linux.Artifacts, linux.Inputs]:
        try:
            inp = linux.Inputs.current()
        except ImageError as e:
            raise BootError(str(e)) from None
        return linux.artifacts(inp), inp

    art, inp = locate()
    missing = [what for what, path in art.paths().items() if what != "dtb" and not path.exists()]
    if missing:
        if not build:
            raise BootError(f"linux-shell images not built yet ({', '.join(missing)}): run "
                            "`mirage images build` (about 10 minutes once), or drop --no-build")
        _log(f"linux-shell images missing ({', '.join(missing)}): running `mirage images build`...")
        # Its progress and its paths go to stderr: stdout is the table's.
        r = subprocess.run([sys.executable, "-m", "runtime", "images", "build"], cwd=REPO_ROOT,
                           stdout=sys.stderr, check=False)
        if r.returncode != 0:
            raise BootError(f"`mirage images build` failed (exit status {r.returncode})")
        art, inp = locate()
        missing = [what for what, path in art.paths().items() if what != "dtb" and not path.exists()]
        if missing:
            raise BootError(f"`mirage images build` left {', '.join(missing)} missing")
    return Images(art.firmware, art.kernel, art.initrd, art.append, f"{inp.ram_size >> 20}M")


# ---- Tables ----


def policy_overhead(results: list[BootResult], policy: str) -> list[str]:
    """For each Mirage row that also ran under `policy`: the policy's cost on the total wall time."""
    by_name = {r.name: r for r in results}
    lines = []
    for r in results:
        p = by_name.get(f"{r.name} +{policy}")
        if p is None or r.status != "ok" or p.status != "ok" or not r.total_seconds:
            continue
        lines.append(f"{policy} on {r.name}: {_secs(p.total_seconds)} s vs {_secs(r.total_seconds)} s "
                     f"({(p.total_seconds / r.total_seconds - 1) * 100:+.1f}% total wall time)")
    return lines


def _secs(value: float | None) -> str:
    return _fmt(value, ".2f")


def format_table(results: list[BootResult]) -> str:
    """Wall time to the prompt, total wall time, the guest's "Boot took", the ratio to QEMU and the
    peak resident memory."""
    w = max([12, *(len(r.name) for r in results)])
    head = f"{'run':<{w}} {'prompt s':>9} {'total s':>9} {'boot took':>9} {'vs qemu':>8} {'peak MiB':>8} {'runs':>4}"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.status == "ok":
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            lines.append(f"{r.name:<{w}} {_secs(r.prompt_seconds):>9} {_secs(r.total_seconds):>9} "
                         f"{_secs(r.boot_took):>9} {ratio:>8} {_fmt(r.peak_rss_mib, '.0f'):>8} {r.runs:>4}")
        elif r.status == "not-run":
            lines.append(f"{r.name:<{w}} not run")
        else:
            lines.append(f"{r.name:<{w}} FAILED ({r.reason})")
    lines.append("(prompt s / total s: wall time from starting the emulator to the shell prompt / to its exit "
                 "after `poweroff -f`;")
    lines.append(" boot took: the guest's /proc/uptime at the prompt; vs qemu: total s / QEMU's total s; "
                 "peak MiB: the emulator's peak resident memory; best of runs by total s)")
    return "\n".join(lines)


def format_stats_table(results: list[BootResult]) -> str:
    """For each Mirage row: guest instructions and where the translation time went."""
    rows = [r for r in results if r.status == "ok" and r.stats]
    w = max([12, *(len(r.name) for r in rows)])
    head = (f"{'run':<{w}} {'insns':>8} {'run s':>7} {'transl s':>8} {'compile s':>9} {'blocks':>7} "
            f"{'modules':>7} {'pcache hits':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r.stats
        insns = s.get("guest_insns")
        hits = (f"{_fmt(s.get('pcache_hits'), '.0f')}/{_fmt(s.get('modules'), '.0f')}"
                if s.get("pcache_enabled") else "off")
        lines.append(f"{r.name:<{w}} {_fmt_insns(None if insns is None else int(insns)):>8} "
                     f"{_fmt(s.get('run_seconds'), '.2f'):>7} {_fmt(s.get('translate_seconds'), '.2f'):>8} "
                     f"{_fmt(s.get('compile_seconds'), '.2f'):>9} {_fmt(s.get('blocks'), '.0f'):>7} "
                     f"{_fmt(s.get('modules'), '.0f'):>7} {hits:>11}")
    lines.append("(from --stats: insns = guest instructions, run s = guest execution with translation; transl s = "
                 "translating blocks, compilation included;")
    lines.append(" compile s = LLVM code generation or the pcache lookup, and linking; pcache hits = modules "
                 "linked from the persistent cache / modules)")
    return "\n".join(lines)


# ---- Main ----


def _wall(cmd: list[str], timeout: float) -> float:
    """Wall time of a command that must exit 0 (its output is discarded)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=timeout, cwd=REPO_ROOT)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BootError(f"{shlex.join(cmd)} exited with {r.returncode}: {r.stderr.decode(errors='replace')[-300:]}")
    return dt


def startup(runs: int, mirage_cmd: str, qemu: bool, timeout: float) -> list[tuple[str, float]]:
    """Start-up (issue 14): best-of-`runs` wall times of importing Mirage's command line, of Mirage
    running the benchmark program that exits at once (tests/bench/empty.c) and the `demo` image,
    and of QEMU running the same empty program, each after one unmeasured run (caches warm)."""
    from tests.bench import build as bench_build
    from tests.bench import run as bench_run

    empty = bench_build.build_empty()
    mirage = shlex.split(mirage_cmd)
    rows = [("import the command line", [sys.executable, "-c", "import runtime.frontends.cli"]),
            ("mirage: empty program", [*mirage, str(empty)]),
            ("mirage: jit-run demo", [*mirage, "demo"])]
    if qemu:
        rows.append(("qemu: empty program", bench_run.qemu_command(empty)))
    out = []
    for name, cmd in rows:
        _wall(cmd, timeout)
        out.append((name, min(_wall(cmd, timeout) for _ in range(runs))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.bench.boot",
        description="Boot the linux-shell images on QEMU and on Mirage (cold and warm translation cache) "
                    "and compare the wall times.",
    )
    parser.add_argument("--runs", type=int, default=1, metavar="N", help="boots per row, best of N (default 1)")
    parser.add_argument("--no-warm", action="store_true",
                        help="skip the warm Mirage row (and the boot that fills its translation cache)")
    parser.add_argument("--no-qemu", action="store_true", help="skip QEMU (no ratios then)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="seconds a boot may take to reach the prompt (default 600)")
    parser.add_argument("--no-build", action="store_true",
                        help="fail if the images are missing instead of running `mirage images build`")
    parser.add_argument("--mirage-cmd", default=os.environ.get("MIRAGE_BENCH_CMD", DEFAULT_MIRAGE_CMD),
                        help="command that runs Mirage; the firmware and options are appended "
                             "(default: '%(default)s', env MIRAGE_BENCH_CMD)")
    parser.add_argument("--policy", metavar="NAME",
                        help="also boot each Mirage row under this monitor policy (e.g. protect-payload)")
    parser.add_argument("--smp", type=int, action="append", metavar="N",
                        help="boot with N harts (QEMU's and Mirage's -smp), repeatable: the rows for each (default 1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="copy the guest consoles to stderr")
    args = parser.parse_args(argv)
    # Python's bytecode cache is one of the caches a run after the first has: with
    # $PYTHONDONTWRITEBYTECODE set (some sandboxes set it), every Mirage run would compile its
    # sources again (about 0.1 s on this machine), which no default Python install does.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    smps = args.smp or [1]
    if any(not 1 <= n <= 8 for n in smps):
        parser.error("--smp must be 1 to 8")
    if not args.no_qemu and shutil.which(QEMU) is None:
        _log(f"error: {QEMU} not found: `apt-get install qemu-system-misc` (or `just setup`), or use --no-qemu")
        return 2
    try:
        img = find_images(build=not args.no_build)
    except BootError as e:
        _log(f"error: {e}")
        return 2
    echo = sys.stderr.buffer if args.verbose else None

    results: list[BootResult] = []
    fills: list[BootResult] = []

    def rows(n: int) -> None:
        """The rows at -smp n, named with " -smp n" unless -smp 1 is the only one."""
        sfx = "" if smps == [1] else f" -smp {n}"
        if not args.no_qemu:
            results.append(run_row(f"qemu{sfx}", args.runs, lambda i: boot_once(
                qemu_command(img, n), args.timeout, None, echo)))
        with tempfile.TemporaryDirectory(prefix="mirage-bench-boot-") as tmp_name:
            tmp = Path(tmp_name)
            pol = args.policy
            results.append(run_row(f"mirage cold{sfx}", args.runs, lambda i: mirage_boot(
                img, tmp, f"cold-{i}", args.timeout, args.mirage_cmd, None, echo, harts=n)))
            if pol:
                results.append(run_row(f"mirage cold{sfx} +{pol}", args.runs, lambda i: mirage_boot(
                    img, tmp, f"cold-policy-{i}", args.timeout, args.mirage_cmd, None, echo, pol, harts=n)))
            if not args.no_warm:
                tcache = tmp / "tcache"
                fill = run_row(f"mirage fill{sfx}", 1, lambda i: mirage_boot(
                    img, tmp, "fill", args.timeout, args.mirage_cmd, tcache, echo, harts=n))
                fills.append(fill)
                if fill.status == "ok":
                    filled = tmp / "tcache-filled"
                    shutil.copytree(tcache, filled)
                    results.append(run_row(f"mirage warm{sfx}", args.runs, lambda i: mirage_boot(
                        img, tmp, f"warm-{i}", args.timeout, args.mirage_cmd, refill(filled, tcache), echo,
                        harts=n)))
                    if pol:
                        results.append(run_row(f"mirage warm{sfx} +{pol}", args.runs, lambda i: mirage_boot(
                            img, tmp, f"warm-policy-{i}", args.timeout, args.mirage_cmd, refill(filled, tcache),
                            echo, pol, harts=n)))
                else:
                    results.append(BootResult(f"mirage warm{sfx}", "error",
                                              f"the boot filling the cache failed: {fill.reason}"))

    for n in smps:
        rows(n)
    add_ratios(results)
    try:
        starts = startup(max(args.runs, 3), args.mirage_cmd, not args.no_qemu, args.timeout)
    except (BootError, subprocess.TimeoutExpired) as e:
        _log(f"start-up: {e}")
        starts = []

    print(format_table(results))
    if args.policy:
        for line in policy_overhead(results, args.policy):
            print(line)
    if any(r.stats for r in results):
        print()
        print(format_stats_table(results))
    if starts:
        print()
        print("start-up (wall s, best of runs, caches warm)")
        for name, secs in starts:
            print(f"  {name:26} {secs:6.3f}")

    if args.json:
        doc = {
            "images": {"firmware": str(img.firmware), "kernel": str(img.kernel), "initrd": str(img.initrd)},
            "append": img.append,
            "memory": img.memory,
            "runs": args.runs,
            "smp": smps,
            "qemu_cmd": shlex.join(qemu_command(img)),
            "mirage_cmd": args.mirage_cmd,
            "results": [asdict(r) for r in results],
            "fill": asdict(fills[0]) if len(fills) == 1 else [asdict(f) for f in fills] or None,
            "startup_seconds": dict(starts),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
