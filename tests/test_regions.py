"""Regions (runtime/core/tcache.py `_form_regions`, translator/block.py `build_region`): hot blocks of a
page that reach each other through direct exits are recompiled as one function, so a loop whose
body spans blocks iterates inside it. Checked on asm guests against a Python model of the loop and
against the interpreter and tier 0, with the exact instruction count (under icount a timer
interrupt lands on the same instruction in every tier), self-modifying code and a breakpoint."""

from __future__ import annotations

import json
from pathlib import Path

from platforms import qemu_virt
from runtime.boot import board
from runtime.boot.loader import load
from runtime.core import tcache
from runtime.core.machine import Machine
from runtime.devices.htif import Htif
from runtime.frontends.stats import block_counts
from tests.test_gdb import Client, mirage_stub, symbols
from tests.test_tcache import _Sink
from vfm.monitor import Monitor

# kernel(a0 = n, a1 = acc) -> a1: for i in 0..n-1: acc = acc ^ i if i is odd, else acc + 3.
# Three blocks: `kernel`..`j next` (a side exit to `odd`), `odd`..the back branch, and `next`..
# the back branch; each reaches the others.
KERNEL = r"""
  .align 4
  .globl kernel
kernel:
  li s0, 0
  .globl loop
loop:
  andi t0, s0, 1
  bnez t0, odd
  addi a1, a1, 3
  j next
  .globl odd
odd:
  xor a1, a1, s0
next:
  addi s0, s0, 1
  bltu s0, a0, loop
  ret
"""


def kernel_model(n: int, acc: int) -> int:
    for i in range(n):
        acc = (acc ^ i) if i & 1 else acc + 3
    return acc & ((1 << 64) - 1)


N1, N2 = 3000, 1000
# The kernel twice; between the calls its `xor` (in a region member by then) becomes an `add`.
LOOPS = rf"""
  .option norvc
  la t0, trap
  csrw mtvec, t0
  li a0, {N1}
  li a1, 7
  jal ra, kernel
  mv s2, a1
  li t0, 0x008585b3        # add a1, a1, s0
  la t1, odd
  sw t0, 0(t1)
  fence.i
  li a0, {N2}
  li a1, 5
  jal ra, kernel
  mv s3, a1
  PASS
trap: FAIL 3
{KERNEL}
"""

# The kernel's loop until a timer interrupt (armed 2,000 ticks ahead, 20,000 instructions under
# icount) sets s5: s0 counts the iterations run before it.
TIMER = r"""
  .option norvc
  la t0, trap
  csrw mtvec, t0
  li t0, 0x200bff8
  ld t1, 0(t0)
  li t2, 2000
  add t1, t1, t2
  li t0, 0x2004000
  sd t1, 0(t0)
  li t0, 0x80
  csrs mie, t0
  csrsi mstatus, 8
  li s5, 0
  li s0, 0
  li a1, 0
spin:
  andi t0, s0, 1
  bnez t0, 1f
  addi a1, a1, 3
  j 2f
1:
  xor a1, a1, s0
2:
  addi s0, s0, 1
  beqz s5, spin
  PASS
  .align 2
trap:
  csrr t0, mcause
  li t1, (1 << 63) | 7
  bne t0, t1, bad
  li t0, 0x2004000
  li t1, -1
  sd t1, 0(t0)
  li s5, 1
  mret
bad: FAIL 3
"""


def run(elf: Path, *, interp: bool = False, hot: int = 50, on_translate=None) -> Machine:
    """Runs an HTIF program as firmware (icount: deterministic time) until it passes: in the
    interpreter only, or translated at its first execution and promoted after `hot`."""
    m = board.build(qemu_virt, ram_size=64 << 20, icount=True, out=_Sink())
    m.warm_threshold = 1 << 30 if interp else 0
    m.tcache.set_hot_threshold(hot)
    m.tcache.on_translate = on_translate
    img = load(m.mem, elf, qemu_virt.RAM_BASE)
    Htif(m, img.symbols["tohost"], img.symbols.get("fromhost"), out=_Sink())
    mon = Monitor()
    mon.attach(m)
    mon.reset(m.harts[0], img.entry, 0, 0)
    m.max_insns = 5_000_000
    result = m.run()
    assert result.code == 0, result.message
    return m


def regions(m: Machine) -> dict[str, int]:
    return block_counts(m.tcache)[1]["regions"]


def state(m: Machine) -> tuple:
    h = m.harts[0]
    return tuple(h.get_x(i) for i in range(32)), h.retired()


def test_multi_block_loop_is_one_function_and_iterates_inside(asm):
    elf = asm(LOOPS)
    m = run(elf)
    sym = symbols(elf)
    h = m.harts[0]
    assert h.get_x(18) == kernel_model(N1, 7)
    # The second call runs the rewritten member: acc + i on odd i.
    want = 5
    for i in range(N2):
        want = want + i if i & 1 else want + 3
    assert h.get_x(19) == want
    # A region was formed on each call, entered at `loop`: of the three blocks on the first; on
    # the second (the store dropped the region and `odd`'s block, whose bytes changed) of the
    # two promoted again, the third's block being still there and chained to.
    rg = regions(m)
    assert rg["formed"] == 2 and rg["blocks"] == 5
    members: dict[int, list[int]] = {}
    for r in m.tcache.history:
        if r.region:
            members.setdefault(r.region, []).append(r.vpc)
    assert sorted(members.values()) == [[sym["loop"], sym["odd"]], [sym["loop"], sym["odd"], sym["odd"] + 4]]
    # Past the promotion (50 executions), each iteration of the first call branches twice from
    # member to member (to `odd` or `next`, then back to `loop`); in the second, odd ones do
    # (even ones leave for `next`'s block and come back through its chain slot).
    assert 2 * (N1 - 100) + (N2 - 100) < rg["iterations"] < 2 * N1 + N2
    assert m.tcache.invalidations["code-write"] >= 2


def test_region_matches_the_interpreter_and_tier_0(asm):
    elf = asm(LOOPS)
    interp = state(run(elf, interp=True))
    tier0 = state(run(elf, hot=1 << 30))  # No promotion, no region
    m = run(elf)
    assert regions(m)["formed"] == 2
    # Same registers everywhere, the same instruction count as tier 0 (the interpreter counts
    # the final HTIF store's exit one instruction apart, regions or not)
    assert state(m)[0] == interp[0] == tier0[0]
    assert state(m)[1] == tier0[1]


def test_timer_interrupt_is_taken_inside_a_region_as_between_blocks(asm, monkeypatch):
    """Under icount the run loop gives a slice the instructions up to the timer deadline, and a
    block that does not fit in what is left polls first: a region counts each member it enters
    against that budget and leaves the same way, so the interrupt is taken at the same
    instruction as with every block in its own function (and within an iteration of the
    interpreter, which stops between instructions rather than before blocks)."""
    elf = asm(TIMER)
    m = run(elf)
    rg = regions(m)
    assert rg["formed"] == 1 and rg["iterations"] > 1000
    assert m.harts[0].get_x(21) == 1  # The handler ran
    # About 20,000 instructions of five or six per iteration before it fired
    assert 3300 < m.harts[0].get_x(8) < 4100
    monkeypatch.setattr(tcache, "REGIONS", False)
    blocks = run(elf)
    assert regions(blocks)["formed"] == 0
    assert state(m) == state(blocks)
    assert abs(m.harts[0].get_x(8) - run(elf, interp=True).harts[0].get_x(8)) <= 2


# The kernel until a flag is set (the first pass forms the region), then spin; then once more.
BREAK = rf"""
  .option norvc
  li a0, 5000
  li a1, 0
  jal ra, kernel
  .globl first_done
first_done:
  li a0, 10
  li a1, 0
  jal ra, kernel
  mv s2, a1
  PASS
{KERNEL}
"""


def test_breakpoint_inside_a_region(asm, tmp_path):
    elf = asm(BREAK)
    sym = symbols(elf)
    stats = tmp_path / "stats.json"
    with mirage_stub(elf, "--icount", "--hot-threshold", "100", "--stats", str(stats)) as (proc, port):
        c = Client(port)
        try:
            assert c.cmd(f"Z0,{sym['first_done']:x},4") == "OK"
            assert c.cmd("c").startswith("T05")
            assert c.reg(32) == sym["first_done"]
            # A breakpoint in a member of the region the first call formed (not at its entry):
            # the region is dropped and the stop comes at the first odd iteration of the next call.
            assert c.cmd(f"Z0,{sym['odd']:x},4") == "OK"
            stop = c.cmd("c")
            assert stop.startswith("T05") and "swbreak" in stop
            assert c.reg(32) == sym["odd"] and c.reg(8) == 1
            assert c.cmd(f"z0,{sym['odd']:x},4") == "OK"
            assert c.cmd(f"z0,{sym['first_done']:x},4") == "OK"
            assert c.cmd("c") == "W00"
        finally:
            c.close()
        assert proc.wait(timeout=20) == 0
    doc = json.loads(stats.read_text())
    rg = doc["regions"]
    assert rg["formed"] >= 1 and rg["iterations"] > 5000
    assert doc["invalidations"]["breakpoint"] >= 1
    # `cache stats` shows them
    from click.testing import CliRunner

    from runtime.frontends.cli import main

    out = CliRunner().invoke(main, ["cache", "stats", str(stats)]).output
    assert (f"Regions: {rg['formed']:,} formed, {rg['blocks']:,} blocks in them, "
            f"{rg['iterations']:,} iterations inside") in " ".join(out.split())


# A data-dependent forward branch over two instructions, in a self-loop.
IFCONV = r"""
  .option norvc
  li a0, 1000
  li a1, 0
  .globl ifloop
ifloop:
  andi t0, a0, 3
  beqz t0, 1f
  addi a1, a1, 5
  xor a1, a1, a0
1:
  addi a0, a0, -1
  bnez a0, ifloop
  mv s2, a1
  PASS
"""


def test_forward_branch_over_arithmetic_is_if_converted(asm):
    elf = asm(IFCONV)
    sym = symbols(elf)
    codes = []
    m = run(elf, hot=0, on_translate=codes.append)  # Tier 1 at once
    loop = next(c for c in codes if c.pc == sym["ifloop"])
    # No inner branch: the skipped instructions' results are selected, no join block
    assert "select i1" in loop.text and "join" not in loop.text
    want = 0
    for a0 in range(1000, 0, -1):
        if a0 & 3:
            want = (want + 5) ^ a0
    assert m.harts[0].get_x(18) == want
    # The same instruction count as tier 0 (plain side exits): the taken path's skipped
    # instructions were given back to the budget
    assert state(m) == state(run(elf, hot=1 << 30))
    assert state(m)[0] == state(run(elf, interp=True))[0]
