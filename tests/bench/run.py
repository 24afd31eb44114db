"""Runs the CPU benchmarks on QEMU and on Mirage and prints a comparison table.

Usage (from the repo root)::

    python3 -m tests.bench.run [--only NAME] [--repeat N] [--size bench|small] [--json OUT] [--sv39]

For every program the runner

* runs it on ``qemu-system-riscv64 -machine virt`` ``--repeat`` times (default 3) and reports the
  fastest wall time minus QEMU's own start-up/shutdown time, which is measured in the same run with
  ``empty.elf`` (a program that exits immediately);
* runs it on Mirage (``python3 -m runtime jit-run ELF --stats FILE.json``; default 1 repeat) and
  reports ``run_seconds`` from the stats file (guest execution including JIT compilation, without
  Python start-up), the whole-process wall time and the JIT statistics. If Mirage fails to run, the
  row says ``mirage: FAILED (reason)`` and the runner carries on;
* takes the guest instruction count from Mirage's stats (``guest_insns``); without them it counts on
  QEMU by running a ``-DREPORT_INSTRET`` build under ``-icount shift=0``, where ``minstret`` is the
  exact number of retired instructions (Debian's QEMU ships no TCG plugins such as libinsn.so).

MIPS = guest instructions / seconds / 1e6; ``ratio`` = Mirage MIPS / QEMU MIPS (> 1: Mirage faster).

With ``--sv39`` each program (default: intkernel) also runs in S-mode under Sv39, as ``-DSV39``
builds whose crt0 identity-maps RAM with 2 MiB pages (``sv39-2M``) or 4 KiB pages (``sv39-4K``,
``-DSV39_4K``); a second table puts the Bare and Sv39 figures side by side.
The exit status is nonzero if a program fails its self-check (or traps) on either engine; with
``--require-mirage`` it is also nonzero if Mirage could not run a program at all.

Only the Python standard library, the RISC-V cross gcc and qemu-system-riscv64 are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import build

REPO_ROOT = Path(__file__).resolve().parents[2]

QEMU = "qemu-system-riscv64"
QEMU_ARGS: tuple[str, ...] = ("-machine", "virt", "-nographic", "-bios", "none", "-m", "256M")
DEFAULT_MIRAGE_CMD = f"{shlex.quote(sys.executable)} -m runtime jit-run"

# Address-translation modes for --sv39: name -> extra defines of the build (crt0.S).
MODES: dict[str, tuple[str, ...]] = {"bare": (), "sv39-2M": ("SV39",), "sv39-4K": ("SV39", "SV39_4K")}

_INSTRET_RE = re.compile(r"^instret=(\d+)\s*$", re.MULTILINE)
_TRAP_RE = re.compile(r"^TRAP mcause=.*$", re.MULTILINE)


def result_re(name: str, verdict: str = "OK|FAIL") -> re.Pattern[str]:
    """Matches the result line a benchmark prints, e.g. ``crc: iters=8 checksum=0x... OK``."""
    return re.compile(
        rf"^{re.escape(name)}: iters=\d+ checksum=0x[0-9a-f]{{16}} (?:{verdict})\b.*$", re.MULTILINE
    )


@dataclass
class RunOutcome:
    """What one execution of a guest program produced."""

    status: str  # "ok", "check-failed" (guest reported FAIL or trapped) or "error" (engine problem)
    reason: str = ""
    wall: float = 0.0
    returncode: int | None = None
    output: str = ""


@dataclass
class EngineResult:
    """The aggregated result of one program on one engine."""

    status: str = "not-run"  # "ok", "check-failed", "error", "not-run"
    reason: str = ""
    runs: int = 0
    wall_seconds: float | None = None  # Fastest whole-process wall time
    seconds: float | None = None  # Guest execution time used for MIPS
    mips: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramResult:
    name: str
    elf: str
    mode: str = "bare"
    guest_insns: int | None = None
    insns_source: str = ""
    qemu: EngineResult = field(default_factory=EngineResult)
    mirage: EngineResult = field(default_factory=EngineResult)
    ratio: float | None = None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tail(text: str, limit: int = 160) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[: limit - 3] + "..."


def _classify(
    name: str, out: str, err: str, returncode: int | None, timed_out: bool, wall: float
) -> RunOutcome:
    """Decides from a guest run's output and exit status whether it passed its self-check."""
    fail = result_re(name, "FAIL").search(out)
    if fail:
        return RunOutcome("check-failed", fail.group(0), wall, returncode, out)
    trap = _TRAP_RE.search(out)
    if trap:
        return RunOutcome("check-failed", f"guest {trap.group(0)}", wall, returncode, out)
    if timed_out:
        return RunOutcome("error", f"timed out after {wall:.0f} s", wall, returncode, out)
    if not result_re(name, "OK").search(out):
        detail = _tail(err) or _tail(out) or "no output"
        return RunOutcome(
            "error", f"exit status {returncode}, no result line: {detail}", wall, returncode, out
        )
    if returncode != 0:
        return RunOutcome("error", f"result OK but exit status {returncode}", wall, returncode, out)
    return RunOutcome("ok", "", wall, returncode, out)


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[str, str, int | None, bool, float]:
    """Runs cmd with stdin from /dev/null; returns (stdout, stderr, returncode, timed_out, wall)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, cwd=cwd, check=False,
            # Benchmarks measure translation too: no persistent translation cache.
            env={**os.environ, "MIRAGE_NO_PCACHE": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        wall = time.perf_counter() - start
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        return out, err, None, True, wall
    wall = time.perf_counter() - start
    return (
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        proc.returncode,
        False,
        wall,
    )


# ---- QEMU ----


def qemu_command(elf: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The QEMU command line that runs one benchmark ELF."""
    return [QEMU, *QEMU_ARGS, *extra, "-kernel", str(elf)]


def run_qemu_once(name: str, elf: Path, timeout: float) -> RunOutcome:
    """Runs ``elf`` once on QEMU and classifies the result."""
    out, err, rc, timed_out, wall = _run(qemu_command(elf), timeout)
    return _classify(name, out, err, rc, timed_out, wall)


def qemu_overhead(repeat: int, timeout: float) -> float:
    """Fastest wall time of QEMU running the program that exits immediately."""
    elf = build.build_empty()
    best: float | None = None
    for _ in range(repeat):
        out, err, rc, timed_out, wall = _run(qemu_command(elf), timeout)
        if timed_out or rc != 0:
            raise RuntimeError(f"QEMU failed to run {elf.name} (exit {rc}): {_tail(err or out)}")
        best = wall if best is None else min(best, wall)
    assert best is not None
    return best


def qemu_count_insns(name: str, size: str, timeout: float, defines: tuple[str, ...] = ()) -> int | None:
    """Counts the retired instructions of ``name`` on QEMU (-icount shift=0 makes minstret exact)."""
    elf = build.build_program(name, size, (*defines, "REPORT_INSTRET"))
    out, _err, rc, _timed_out, _wall = _run(qemu_command(elf, ("-icount", "shift=0")), timeout * 4)
    match = _INSTRET_RE.search(out)
    if rc != 0 or match is None:
        return None
    return int(match.group(1))


def bench_qemu(name: str, elf: Path, repeat: int, overhead: float, timeout: float) -> EngineResult:
    res = EngineResult()
    for _ in range(repeat):
        outcome = run_qemu_once(name, elf, timeout)
        res.runs += 1
        if outcome.status != "ok":
            res.status, res.reason = outcome.status, outcome.reason
            return res
        res.wall_seconds = outcome.wall if res.wall_seconds is None else min(res.wall_seconds, outcome.wall)
    assert res.wall_seconds is not None
    res.status = "ok"
    res.seconds = max(res.wall_seconds - overhead, 0.0)
    return res


# ---- Mirage ----


def _stats_number(stats: dict[str, Any], *keys: str) -> float | None:
    cur: Any = stats
    for key in keys:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur if isinstance(cur, int | float) and not isinstance(cur, bool) else None


def bench_mirage(name: str, elf: Path, repeat: int, timeout: float, mirage_cmd: str) -> EngineResult:
    res = EngineResult()
    base_cmd = shlex.split(mirage_cmd)
    with tempfile.TemporaryDirectory(prefix="mirage-bench-") as tmp:
        for i in range(repeat):
            stats_path = Path(tmp) / f"{name}-{i}.json"
            cmd = [*base_cmd, str(elf), "--stats", str(stats_path)]
            out, err, rc, timed_out, wall = _run(cmd, timeout, cwd=REPO_ROOT)
            outcome = _classify(name, out, err, rc, timed_out, wall)
            res.runs += 1
            if outcome.status != "ok":
                res.status, res.reason = outcome.status, outcome.reason
                return res
            try:
                stats = json.loads(stats_path.read_text())
            except (OSError, ValueError) as exc:
                res.status, res.reason = "error", f"no usable stats file ({exc})"
                return res
            run_seconds = _stats_number(stats, "run_seconds")
            if run_seconds is None:
                res.status, res.reason = "error", "stats file has no run_seconds"
                return res
            res.wall_seconds = wall if res.wall_seconds is None else min(res.wall_seconds, wall)
            if res.seconds is None or run_seconds < res.seconds:
                res.seconds = max(float(run_seconds), 1e-6)
                res.stats = stats
    res.status = "ok"
    return res


# ---- Table ----

# Below this many seconds of guest time the start-up correction dominates: no MIPS is reported.
MIN_TIMEABLE_SECONDS = 0.01


def _timeable(seconds: float | None) -> bool:
    return seconds is not None and seconds >= MIN_TIMEABLE_SECONDS


def _fmt(value: float | int | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _fmt_insns(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.3f}G" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _label(r: ProgramResult) -> str:
    return r.name if r.mode == "bare" else f"{r.name}@{r.mode}"


def format_table(results: list[ProgramResult], overhead: float | None) -> str:
    w = max([10, *(len(_label(r)) for r in results)])
    head = (
        f"{'program':<{w}} {'insns':>8} | {'qemu s':>7} {'MIPS':>7} | "
        f"{'mirage s':>8} {'wall s':>7} {'MIPS':>7} {'ratio':>6} | {'blocks':>6} {'modules':>7} {'jit s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        q = r.qemu
        row = f"{_label(r):<{w}} {_fmt_insns(r.guest_insns):>8} | "
        if q.status == "ok":
            secs = _fmt(q.seconds, ".3f") if _timeable(q.seconds) else f"<{MIN_TIMEABLE_SECONDS}"
            row += f"{secs:>7} {_fmt(q.mips, '.0f'):>7} | "
        elif q.status == "not-run":
            row += f"{'-':>7} {'-':>7} | "
        else:
            row += f"qemu: FAILED ({q.reason}) | "
        m = r.mirage
        if m.status == "ok":
            jit = m.stats.get("jit") if isinstance(m.stats.get("jit"), dict) else {}
            row += (
                f"{_fmt(m.seconds, '.3f'):>8} {_fmt(m.wall_seconds, '.2f'):>7} {_fmt(m.mips, '.0f'):>7} "
                f"{_fmt(r.ratio, '.2f'):>6} | {_fmt(_stats_number(jit, 'blocks'), '.0f'):>6} "
                f"{_fmt(_stats_number(jit, 'modules'), '.0f'):>7} {_fmt(_stats_number(jit, 'compile_seconds'), '.2f'):>6}"
            )
        elif m.status == "not-run":
            row += "mirage: not run"
        else:
            row += f"mirage: FAILED ({m.reason})"
        lines.append(row.rstrip())
    if overhead is not None:
        lines.append(f"(qemu s = fastest wall time minus QEMU start-up/shutdown of {overhead * 1000:.0f} ms)")
    lines.append(
        "(mirage s = run_seconds from --stats; wall s = whole process; ratio = Mirage MIPS / QEMU MIPS)"
    )
    return "\n".join(lines)


def format_modes_table(results: list[ProgramResult]) -> str:
    """Bare and Sv39 side by side: per program and mode the guest time and MIPS on each engine, and
    the time relative to the Bare run on the same engine (1.05x = 5% slower under Sv39)."""
    head = (
        f"{'program':<10} {'mode':<8} {'insns':>8} | {'qemu s':>7} {'MIPS':>6} {'vs bare':>7} | "
        f"{'mirage s':>8} {'MIPS':>6} {'vs bare':>7}"
    )
    lines = [head, "-" * len(head)]
    bare = {r.name: r for r in results if r.mode == "bare"}

    def cells(eng: EngineResult, base: EngineResult | None, width: int) -> str:
        if eng.status != "ok":
            return f"{eng.status:>{width}} {'':>6} {'':>7}" if eng.status == "not-run" else f"FAILED ({eng.reason})"
        secs = _fmt(eng.seconds, ".3f") if _timeable(eng.seconds) else f"<{MIN_TIMEABLE_SECONDS}"
        rel = None
        if base is not None and base.status == "ok" and _timeable(base.seconds) and _timeable(eng.seconds):
            rel = eng.seconds / base.seconds
        return f"{secs:>{width}} {_fmt(eng.mips, '.0f'):>6} {_fmt(rel, '.2f') + 'x' if rel else '-':>7}"

    for r in results:
        b = bare.get(r.name)
        lines.append(
            f"{r.name:<10} {r.mode:<8} {_fmt_insns(r.guest_insns):>8} | "
            f"{cells(r.qemu, b.qemu if b else None, 7)} | {cells(r.mirage, b.mirage if b else None, 8)}".rstrip()
        )
    lines.append("(sv39-2M / sv39-4K: main runs in S-mode under Sv39 with 2 MiB / 4 KiB pages; vs bare = time "
                 "relative to the Bare run on the same engine)")
    return "\n".join(lines)


# ---- Main ----


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.bench.run", description="Run the CPU benchmarks on QEMU and Mirage."
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=build.PROGRAMS,
        help="run only this program (repeatable)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="runs per program and engine (default: 3 on QEMU, 1 on Mirage)",
    )
    parser.add_argument("--mirage-repeat", type=int, metavar="N", help="runs per program on Mirage")
    parser.add_argument("--size", choices=list(build.SIZES), default="bench")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per QEMU run (default 120)")
    parser.add_argument(
        "--mirage-timeout", type=float, default=600.0, help="seconds per Mirage run (default 600)"
    )
    parser.add_argument(
        "--mirage-cmd",
        default=os.environ.get("MIRAGE_BENCH_CMD", DEFAULT_MIRAGE_CMD),
        help="command that runs an ELF on Mirage; ELF and --stats FILE are appended "
        "(default: '%(default)s', env MIRAGE_BENCH_CMD)",
    )
    parser.add_argument("--no-qemu", action="store_true", help="skip QEMU")
    parser.add_argument("--no-mirage", action="store_true", help="skip Mirage")
    parser.add_argument(
        "--qemu-icount",
        action="store_true",
        help="always count instructions on QEMU too (cross-checks Mirage's guest_insns)",
    )
    parser.add_argument(
        "--require-mirage",
        action="store_true",
        help="exit nonzero if Mirage cannot run a program, not only on a failed self-check",
    )
    parser.add_argument(
        "--sv39",
        action="store_true",
        help="also run under Sv39 in S-mode (2 MiB and 4 KiB pages) and compare with Bare "
        "(default program: intkernel)",
    )
    args = parser.parse_args(argv)

    qemu_repeat = args.repeat or 3
    mirage_repeat = args.mirage_repeat or args.repeat or 1
    if qemu_repeat < 1 or mirage_repeat < 1:
        parser.error("repeat counts must be >= 1")
    names = [n for n in build.PROGRAMS if not args.only or n in args.only]
    if args.sv39 and not args.only:
        names = ["intkernel"]
    modes = list(MODES) if args.sv39 else ["bare"]

    use_qemu = not args.no_qemu
    if use_qemu and shutil.which(QEMU) is None:
        _log(f"warning: {QEMU} not found (apt-get install qemu-system-misc); skipping QEMU")
        use_qemu = False

    try:
        elfs = {(n, mode): build.build_program(n, args.size, MODES[mode]) for n in names for mode in modes}
    except build.BenchBuildError as exc:
        _log(f"error: {exc}")
        return 2

    overhead: float | None = None
    if use_qemu:
        _log(f"measuring QEMU start-up overhead ({qemu_repeat}x empty)...")
        try:
            overhead = qemu_overhead(qemu_repeat, args.timeout)
        except (RuntimeError, build.BenchBuildError) as exc:
            _log(f"error: {exc}")
            return 2

    results: list[ProgramResult] = []
    for name, mode in ((n, mode) for n in names for mode in modes):
        elf = elfs[name, mode]
        tag = name if mode == "bare" else f"{name} ({mode})"
        r = ProgramResult(name=name, elf=str(elf), mode=mode)
        if use_qemu:
            assert overhead is not None
            _log(f"{tag}: qemu ({qemu_repeat}x)...")
            r.qemu = bench_qemu(name, elf, qemu_repeat, overhead, args.timeout)
        if not args.no_mirage:
            _log(f"{tag}: mirage ({mirage_repeat}x)...")
            r.mirage = bench_mirage(name, elf, mirage_repeat, args.mirage_timeout, args.mirage_cmd)
            if r.mirage.status != "ok":
                _log(f"{tag}: mirage: FAILED ({r.mirage.reason})")

        mirage_insns = _stats_number(r.mirage.stats, "guest_insns")
        if mirage_insns is not None:
            r.guest_insns, r.insns_source = int(mirage_insns), "mirage"
        if use_qemu and r.qemu.status == "ok" and (r.guest_insns is None or args.qemu_icount):
            _log(f"{tag}: counting instructions on qemu (-icount)...")
            try:
                counted = qemu_count_insns(name, args.size, args.timeout, MODES[mode])
            except build.BenchBuildError as exc:
                _log(f"warning: {exc}")
                counted = None
            if counted is not None:
                if r.guest_insns is None:
                    r.guest_insns, r.insns_source = counted, "qemu-icount"
                else:
                    r.qemu.stats["icount_insns"] = counted
                    # QEMU's count runs from _start to the minstret read just before the exit
                    # (a few hundred instructions short of the whole run); both should be exact.
                    if abs(counted - r.guest_insns) > 1000:
                        _log(f"warning: {tag}: Mirage guest_insns {r.guest_insns} != QEMU count {counted}")

        for eng in (r.qemu, r.mirage):
            if eng.status == "ok" and _timeable(eng.seconds) and r.guest_insns is not None:
                eng.mips = r.guest_insns / eng.seconds / 1e6
        if (
            r.qemu.status == "ok"
            and r.mirage.status == "ok"
            and _timeable(r.qemu.seconds)
            and r.mirage.seconds
        ):
            # Same program, same instruction count: the MIPS ratio is the inverse time ratio.
            r.ratio = r.qemu.seconds / r.mirage.seconds
        results.append(r)

    print(format_table(results, overhead))
    if args.sv39:
        print()
        print(format_modes_table(results))

    failed = [
        f"{_label(r)} on {eng_name}: {eng.reason}"
        for r in results
        for eng_name, eng in (("qemu", r.qemu), ("mirage", r.mirage))
        if eng.status == "check-failed"
        or (eng.status == "error" and (eng_name == "qemu" or args.require_mirage))
    ]
    for f in failed:
        print(f"FAILED: {f}")

    if args.json:
        doc = {
            "size": args.size,
            "qemu_overhead_seconds": overhead,
            "qemu_repeat": qemu_repeat,
            "mirage_repeat": mirage_repeat,
            "mirage_cmd": args.mirage_cmd,
            "programs": [asdict(r) for r in results],
            "failures": failed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
