"""Soak: linux-shell runs a shell loop (file writes, process spawns, pipes) for N minutes while
the host process's resident memory is sampled; flat memory means nothing leaks per guest event.

    just soak [MINUTES] [--every SECONDS] [-- JIT-RUN-OPTIONS]     (python3 -m tests.soak N)

Prints a sample line every --every seconds (elapsed, RSS, loop iterations the guest reported) and
a summary: first, last and highest RSS, and the growth per minute after the first minute (boot
and warm-up excluded), and from the run's statistics the translation-cache flushes and the
translations' estimated memory (jit.memory). Exit status 0 if the guest finished its loop and
powered off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOOP = """\
end=$(( $(date +%s) + {seconds} )); i=0
while [ $(date +%s) -lt $end ]; do \
echo "soak $i $(date)" > /tmp/soak.$((i % 8)); \
cat /tmp/soak.$((i % 8)) | grep -c soak > /dev/null; \
sh -c 'echo child $$' | wc -c > /dev/null; \
rm -f /tmp/soak.$(((i + 4) % 8)); \
i=$((i + 1)); \
[ $((i % 50)) -eq 0 ] && echo "soak-progress $i"; \
done; echo "soak-done $i"
poweroff -f
"""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", nargs="?", type=float, default=30.0, help="How long the guest loop runs.")
    ap.add_argument("--every", type=float, default=10.0, help="Seconds between RSS samples.")
    argv = sys.argv[1:] if argv is None else argv
    # Options after -- go to mirage jit-run (e.g. -- --stats FILE).
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    args.jit_args = argv[cut + 1:]
    if args.minutes <= 0 or args.every <= 0:
        ap.error("minutes and --every must be positive")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="mirage-soak-") as tmp:
        jit_args = args.jit_args
        if "--stats" not in jit_args:
            jit_args = [*jit_args, "--stats", str(Path(tmp) / "stats.json")]
        return soak(args, jit_args, env, Path(jit_args[jit_args.index("--stats") + 1]))


def soak(args: argparse.Namespace, jit_args: list[str], env: dict[str, str], stats_file: Path) -> int:
    seconds = int(args.minutes * 60)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "jit-run", *jit_args, "linux-shell"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    proc.stdin.write(LOOP.format(seconds=seconds).encode())
    proc.stdin.flush()
    state = {"iterations": 0, "done": None, "booted": None}
    tail: list[str] = []

    def reader() -> None:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            tail.append(line)
            del tail[:-40]
            if state["booted"] is None and line.startswith("Boot took"):
                state["booted"] = time.monotonic()
            if m := re.match(r"soak-progress (\d+)$", line):
                state["iterations"] = int(m.group(1))
            elif m := re.match(r"soak-done (\d+)$", line):
                state["iterations"] = state["done"] = int(m.group(1))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.monotonic()
    samples: list[tuple[float, float]] = []
    print(f"soak: linux-shell, a {args.minutes:g}-minute shell loop; RSS every {args.every:g} s", flush=True)
    deadline = t0 + seconds + 600  # Boot and power-off on top of the loop
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(min(args.every, 1.0) if not samples else args.every)
        rss = rss_mib(proc.pid)
        if rss is None:
            break
        el = time.monotonic() - t0
        samples.append((el, rss))
        print(f"t={el:7.0f} s  rss={rss:8.1f} MiB  iterations={state['iterations']}", flush=True)
    if proc.poll() is None:
        proc.kill()
        print("soak: the guest did not finish in time", file=sys.stderr)
    proc.wait()
    t.join(5)
    err = proc.stderr.read().decode(errors="replace")
    if not samples:
        print("soak: no samples", file=sys.stderr)
        return 1
    rss = [r for _, r in samples]
    booted = (state["booted"] - t0) if state["booted"] else 0.0
    settled = [(e, r) for e, r in samples if e >= booted + 60] or samples[-2:]
    growth = 0.0
    if len(settled) >= 2 and settled[-1][0] > settled[0][0]:
        growth = (settled[-1][1] - settled[0][1]) / ((settled[-1][0] - settled[0][0]) / 60)
    print(f"soak: {state['done'] if state['done'] is not None else state['iterations']} loop iterations; "
          f"RSS first {rss[0]:.1f}, last {rss[-1]:.1f}, max {max(rss):.1f} MiB; "
          f"{growth:+.2f} MiB/min from a minute after boot to the end; exit {proc.returncode}")
    try:
        doc = json.loads(stats_file.read_text())
        mem, jit = doc["jit"]["memory"], doc["jit"]
        print(f"soak: {jit['blocks']:,} blocks translated in {jit['modules']:,} modules; translation cache flushes "
              f"{mem['flushes']} (bound {mem['limit'] / 2**20:.0f} MiB), its estimated memory at the end "
              f"{mem['estimated'] / 2**20:.1f} MiB, peak {mem['peak'] / 2**20:.1f} MiB")
    except (OSError, ValueError, KeyError, TypeError):
        print(f"soak: no statistics in {stats_file}", file=sys.stderr)
    if proc.returncode != 0 or state["done"] is None:
        print("soak: the guest did not complete its loop\n" + "\n".join(tail[-20:]) + "\n" + err[-2000:],
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
