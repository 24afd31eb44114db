"""Micro-benchmarks of the virtual firmware monitor: host time per monitor exit.

Usage (from the repo root)::

    python3 -m tests.bench.vfm_bench [--iters N] [--repeat R] [--json OUT]

Each case is a small guest built with the cross toolchain and run in-process on a qemu-virt
machine. A guest loop runs the operation N and 2N times (plus a warm-up run that translates
everything), and the same loop without the operation runs as a baseline; the figure is

    ((t(2N) - t(N)) - (t_base(2N) - t_base(N))) / N

so start-up, translation and the loop itself are subtracted. The best of R repeats is kept. Times
are the process's CPU time (`time.process_time`): the host's cost of the operation, unaffected by
other load on the machine (wall time is the same on an idle host).

- `firmware trap`: the firmware's `csrw mtvec` traps and the monitor emulates it (native code,
  system callout, trap entry into the monitor, CSR rule, back). Target <= 2 us. (mscratch, mepc,
  mcause and mtval no longer trap: the firmware's code performs them in place, Machine.map_csr.)
- `world switch`: the OS (S-mode) makes an SBI call (BASE get_spec_version) that the firmware
  handles and returns from, with the fast path off: the ecall, the switch into the firmware, its
  handler (csrr mepc, csrw mepc and mret, each emulated) and the switch back. Target <= 5 us.
- `offloaded SBI call`: the OS calls IPI send_ipi with an empty hart mask, which the fast path
  answers without entering the firmware.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from platforms import qemu_virt
from runtime.boot import board
from runtime.boot.loader import load
from tests.guest import build as guest_build
from vfm.monitor import MONITOR_RAM, Monitor

# The guest: a0 = iterations, a1 = which case (0 firmware trap, 1 world switch, 2 offloaded call),
# a2 = 1 for the baseline loop without the operation. It exits through the test finisher.
GUEST = r"""
  .section .text.init, "ax"
  .globl _start
  .option norvc
_start:
  lla t0, fw_trap
  csrw mtvec, t0
  mv s0, a0
  mv s1, a2
  bnez a1, os_case
  bnez s1, 2f
1: csrw mtvec, t0
  addi s0, s0, -1
  bnez s0, 1b
  j done
2: addi t0, t0, 1
  addi s0, s0, -1
  bnez s0, 2b
  j done
os_case:
  mv s2, a1
  li t0, 0x1800
  csrc mstatus, t0
  li t0, 0x800
  csrs mstatus, t0
  lla t0, os_loop
  csrw mepc, t0
  mret
done:
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
9: j 9b

  .align 2
fw_trap:
  li t1, 0x4d
  beq a7, t1, done
  csrr t1, mepc
  addi t1, t1, 4
  csrw mepc, t1
  li a0, 0
  li a1, 0x01000000
  mret

os_loop:
  li a7, 0x10
  li a6, 0
  li t2, 2
  bne s2, t2, 3f
  li a7, 0x735049
3: bnez s1, 5f
4: li a0, 0
  li a1, 0
  ecall
  addi s0, s0, -1
  bnez s0, 4b
  j 6f
5: li a0, 0
  li a1, 0
  addi t0, t0, 1
  addi s0, s0, -1
  bnez s0, 5b
6: li a7, 0x4d
  ecall
"""

CASES = {"firmware trap": (0, False), "world switch": (1, False), "offloaded SBI call": (2, True)}
TARGETS_US = {"firmware trap": 2.0, "world switch": 5.0}


class Runner:
    """One machine per case: translated code stays cached between runs."""

    def __init__(self, elf: Path, offload: bool) -> None:
        ram = 64 << 20
        self.m = board.build(qemu_virt, ram_size=ram + MONITOR_RAM)
        self.img = load(self.m.mem, elf, qemu_virt.RAM_BASE)
        self.mon = Monitor(offload=offload, reserved=[(qemu_virt.RAM_BASE + ram, MONITOR_RAM)])
        self.mon.attach(self.m)

    def time(self, case: int, iters: int, baseline: bool) -> float:
        m, hart = self.m, self.m.harts[0]
        m.halted = None
        self.mon.reset(hart, self.img.entry, iters, case, int(baseline))
        t0 = time.process_time()
        result = m.run()
        t = time.process_time() - t0
        if result.code != 0:
            raise RuntimeError(f"guest failed: {result.message}")
        return t


def measure(elf: Path, name: str, iters: int, repeat: int) -> float:
    case, offload = CASES[name]
    r = Runner(elf, offload)
    for baseline in (False, True):
        r.time(case, 1000, baseline)  # Warm-up: translate and optimize the hot blocks
    best = None
    for _ in range(repeat):
        op = r.time(case, 2 * iters, False) - r.time(case, iters, False)
        base = r.time(case, 2 * iters, True) - r.time(case, iters, True)
        per_op = (op - base) / iters
        best = per_op if best is None else min(best, per_op)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="Write the figures (us per operation) here.")
    args = ap.parse_args(argv)
    if not guest_build.have_toolchain():
        print("vfm_bench: riscv64-linux-gnu-gcc is missing: run `just setup`", file=sys.stderr)
        return 2
    elf = guest_build.build(GUEST, prelude=False)
    out = {}
    for name in CASES:
        us = measure(elf, name, args.iters, args.repeat)
        out[name] = us
        target = TARGETS_US.get(name)
        verdict = "" if target is None else f"  (target <= {target:g} us: {'ok' if us <= target else 'MISSED'})"
        print(f"{name:20s} {us:7.2f} us/op{verdict}")
    if args.json:
        args.json.write_text(json.dumps({"us_per_op": out, "iters": args.iters}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
