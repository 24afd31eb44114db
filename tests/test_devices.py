"""CLINT, PLIC and UART interrupt wiring at register level, plus one guest timer-interrupt program."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from platforms import qemu_virt
from runtime.boot import board
from tests.conftest import mirage
from translator import csrs as C

CLINT = 0x200_0000
MSIP = CLINT
MTIMECMP = CLINT + 0x4000
MTIME = CLINT + 0xBFF8
PLIC = 0xC00_0000
UART = 0x1000_0000
MSIP_BIT, MTIP, SEIP, MEIP = 1 << C.IRQ_MSI, 1 << C.IRQ_MTI, 1 << C.IRQ_SEI, 1 << C.IRQ_MEI


def build(harts: int = 2, icount: bool = True):
    """A qemu-virt machine; with icount, mtime only moves when a test advances it."""
    return board.build(qemu_virt, harts=harts, icount=icount, out=_Sink())


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> None:
        self.data += b

    def flush(self) -> None:
        pass


def advance(m, ticks: int) -> None:
    """Moves mtime forward (icount: 10 retired instructions per tick) and runs the pollers."""
    m.harts[0].retired_base += 10 * ticks
    for p in m.pollers:
        p(m)


def exit_requested(hart) -> bool:
    return hart.want_exit


def clear_exit(hart) -> None:
    hart.want_exit = False


# CLINT

def test_clint_msip_drives_mip_per_hart():
    m = build()
    h0, h1 = m.harts
    clear_exit(h0)
    m.mem.write(MSIP, 4, 1)
    assert h0.mip & MSIP_BIT and not h1.mip & MSIP_BIT
    assert exit_requested(h0)
    assert m.mem.read(MSIP, 4) == 1
    m.mem.write(MSIP + 4, 4, 0xFFFF_FFFF)  # Only bit 0 exists
    assert h1.mip & MSIP_BIT and m.mem.read(MSIP + 4, 4) == 1
    m.mem.write(MSIP, 4, 0)
    assert not h0.mip & MSIP_BIT and h1.mip & MSIP_BIT
    # One 8-byte access covers both harts' msip words.
    assert m.mem.read(MSIP, 8) == 1 << 32
    m.mem.write(MSIP, 8, 1)
    assert h0.mip & MSIP_BIT and not h1.mip & MSIP_BIT
    # A hart that does not exist: reads zero, writes ignored.
    m.mem.write(MSIP + 8, 4, 1)
    assert m.mem.read(MSIP + 8, 4) == 0


def test_clint_mtimecmp_past_and_future():
    m = build()
    h0, h1 = m.harts
    advance(m, 5000)
    now = m.mem.read(MTIME, 8)
    assert now == 5000
    assert not h0.mip & MTIP  # Reset mtimecmp is all-ones
    assert m.mem.read(MTIMECMP, 8) == (1 << 64) - 1
    clear_exit(h0)
    m.mem.write(MTIMECMP, 8, now - 1)
    assert h0.mip & MTIP and not h1.mip & MTIP
    assert exit_requested(h0)
    # MTIP is cleared by writing mtimecmp above mtime, not by anything else.
    m.mem.write(MTIMECMP, 8, now + 100)
    assert not h0.mip & MTIP
    assert m.devices["clint"].deadline() == now + 100
    advance(m, 99)
    assert not h0.mip & MTIP
    advance(m, 1)
    assert h0.mip & MTIP
    assert m.devices["clint"].deadline() is None  # Nothing left in the future


def test_clint_mtime_advances_in_real_time():
    m = build(icount=False)
    a = m.mem.read(MTIME, 8)
    time.sleep(0.02)
    b = m.mem.read(MTIME, 8)
    # 10 MHz timebase: 20 ms is 200000 ticks (allow a slow host).
    assert 150_000 <= b - a < 10_000_000


def test_clint_mtime_write_moves_time():
    m = build()
    m.mem.write(MTIME, 8, 0x1_0000_0000)
    assert m.mem.read(MTIME, 8) == 0x1_0000_0000
    m.mem.write(MTIMECMP, 8, 0x1_0000_0010)
    assert not m.harts[0].mip & MTIP
    advance(m, 0x10)
    assert m.mem.read(MTIME, 8) == 0x1_0000_0010
    assert m.harts[0].mip & MTIP
    # Moving mtime back below mtimecmp drops MTIP again.
    m.mem.write(MTIME, 8, 0)
    assert not m.harts[0].mip & MTIP
    assert m.devices["clint"].deadline() == m.time() + 0x1_0000_0010


def test_clint_32bit_halves():
    m = build()
    h1 = m.harts[1]
    cmp1 = MTIMECMP + 8
    # The RV32 sequence of the privileged spec (3.2.1): high = -1, low, high.
    m.mem.write(cmp1 + 4, 4, 0xFFFF_FFFF)
    m.mem.write(cmp1, 4, 0x2000)
    m.mem.write(cmp1 + 4, 4, 0x1)
    assert m.mem.read(cmp1, 8) == 0x1_0000_2000
    assert m.mem.read(cmp1, 4) == 0x2000 and m.mem.read(cmp1 + 4, 4) == 1
    assert m.mem.read(MTIMECMP, 8) == (1 << 64) - 1  # Hart 0 untouched
    m.mem.write(MTIME + 4, 4, 1)
    m.mem.write(MTIME, 4, 0x1FFF)
    assert m.mem.read(MTIME + 4, 4) == 1 and m.mem.read(MTIME, 4) == 0x1FFF
    assert not h1.mip & MTIP
    advance(m, 1)
    assert h1.mip & MTIP and not m.harts[0].mip & MTIP


# PLIC

def prio(src: int) -> int:
    return PLIC + 4 * src


def enable(ctx: int, src: int = 0) -> int:
    return PLIC + 0x2000 + 0x80 * ctx + 4 * (src // 32)


def threshold(ctx: int) -> int:
    return PLIC + 0x200000 + 0x1000 * ctx


def claim(ctx: int) -> int:
    return threshold(ctx) + 4


def pending_word(m, src: int) -> int:
    return m.mem.read(PLIC + 0x1000 + 4 * (src // 32), 4)


def test_plic_priority_threshold_enable_masking():
    m = build()
    plic = m.devices["plic"]
    h0 = m.harts[0]
    plic.set_irq(5, True)
    assert pending_word(m, 5) == 1 << 5
    assert not h0.mip & MEIP  # Priority 0 never interrupts
    m.mem.write(prio(5), 4, 3)
    assert m.mem.read(prio(5), 4) == 3
    assert not h0.mip & MEIP  # Not enabled
    m.mem.write(enable(0), 4, 1 << 5)
    assert m.mem.read(enable(0), 4) == 1 << 5
    assert h0.mip & MEIP and not h0.mip & SEIP
    m.mem.write(threshold(0), 4, 3)  # Priority must exceed the threshold
    assert m.mem.read(threshold(0), 4) == 3
    assert not h0.mip & MEIP
    assert m.mem.read(claim(0), 4) == 0
    m.mem.write(threshold(0), 4, 2)
    assert h0.mip & MEIP
    m.mem.write(prio(5), 4, 0xFF)  # WARL: 3 bits
    assert m.mem.read(prio(5), 4) == 7
    m.mem.write(enable(0), 4, 1)  # Source 0 does not exist
    assert m.mem.read(enable(0), 4) == 0 and not h0.mip & MEIP
    # Sources above 31 live in the next enable and pending words.
    plic.set_irq(40, True)
    m.mem.write(prio(40), 4, 3)  # Above the threshold of 2
    m.mem.write(enable(0, 40), 4, 1 << 8)
    assert pending_word(m, 40) == 1 << 8
    assert h0.mip & MEIP


def test_plic_claim_order_and_gateway():
    m = build()
    plic = m.devices["plic"]
    h0 = m.harts[0]
    for src, p in ((3, 2), (7, 5), (9, 5), (12, 1)):
        m.mem.write(prio(src), 4, p)
        plic.set_irq(src, True)
    m.mem.write(enable(0), 4, (1 << 3) | (1 << 7) | (1 << 9) | (1 << 12))
    # Highest priority first, ties to the lowest id.
    assert m.mem.read(claim(0), 4) == 7
    assert not pending_word(m, 7) & (1 << 7)
    assert m.mem.read(claim(0), 4) == 9
    assert m.mem.read(claim(0), 4) == 3
    plic.set_irq(7, False)
    plic.set_irq(7, True)  # A claimed source stays quiet until completed
    assert not pending_word(m, 7) & (1 << 7)
    assert m.mem.read(claim(0), 4) == 12
    assert m.mem.read(claim(0), 4) == 0
    assert not h0.mip & MEIP
    # Completion: a source whose line is still high is pending again; a low one is not.
    plic.set_irq(3, False)
    m.mem.write(claim(0), 4, 3)
    assert not pending_word(m, 3) & (1 << 3)
    m.mem.write(claim(0), 4, 7)
    assert pending_word(m, 7) & (1 << 7)
    assert h0.mip & MEIP
    assert m.mem.read(claim(0), 4) == 7
    # Completing a source the context has not enabled is ignored (PLIC spec 3.11).
    m.mem.write(enable(0), 4, 0)
    m.mem.write(claim(0), 4, 7)
    m.mem.write(enable(0), 4, 1 << 7)
    assert not pending_word(m, 7) & (1 << 7)
    m.mem.write(claim(0), 4, 7)
    assert pending_word(m, 7) & (1 << 7)
    # A request withdrawn before it was claimed is no longer pending (as in QEMU).
    plic.set_irq(7, False)
    assert not pending_word(m, 7) & (1 << 7) and not h0.mip & MEIP


def test_plic_contexts_drive_meip_and_seip():
    m = build()
    plic = m.devices["plic"]
    h0, h1 = m.harts
    m.mem.write(prio(10), 4, 1)
    plic.set_irq(10, True)
    m.mem.write(enable(1), 4, 1 << 10)  # Hart 0, S-mode
    assert h0.mip & SEIP and not h0.mip & MEIP and not h1.mip & (SEIP | MEIP)
    m.mem.write(enable(2), 4, 1 << 10)  # Hart 1, M-mode
    assert h1.mip & MEIP and not h1.mip & SEIP
    clear_exit(h1)
    assert m.mem.read(claim(2), 4) == 10
    assert not h0.mip & SEIP and not h1.mip & MEIP  # The claim closed the gateway for everyone
    assert exit_requested(h1)
    m.mem.write(claim(2), 4, 10)
    assert h0.mip & SEIP and h1.mip & MEIP
    # Software clearing SEIP does not lose the PLIC's line: the poller asserts it again.
    h0.mip &= ~SEIP
    for p in m.pollers:
        p(m)
    assert h0.mip & SEIP
    # A software-set SEIP (mip is writable from M-mode) is not cleared by unrelated PLIC activity.
    m.mem.write(enable(1), 4, 0)
    assert not h0.mip & SEIP
    h0.mip |= SEIP
    m.mem.write(prio(11), 4, 2)
    plic.set_irq(11, True)
    m.mem.write(threshold(1), 4, 1)
    assert h0.mip & SEIP


def test_plic_8byte_access():
    m = build()
    m.mem.write(prio(2), 8, (5 << 32) | 4)
    assert m.mem.read(prio(2), 4) == 4 and m.mem.read(prio(3), 4) == 5
    assert m.mem.read(prio(2), 8) == (5 << 32) | 4


# UART -> PLIC source 10

def test_uart_rx_interrupt_reaches_plic():
    m = build()
    uart = m.devices["uart0"]
    h0 = m.harts[0]
    m.mem.write(prio(10), 4, 1)
    m.mem.write(enable(1), 4, 1 << 10)
    uart.push_input(b"x")
    assert not h0.mip & SEIP  # IER.RDI not set yet
    m.mem.write(UART + 1, 1, 0x01)  # IER: received data available
    assert h0.mip & SEIP
    assert m.mem.read(UART + 2, 1) & 0x0F == 0x4  # IIR: received data
    assert m.mem.read(claim(1), 4) == 10
    assert m.mem.read(UART, 1) == ord("x")  # Reading RBR drops the line
    m.mem.write(claim(1), 4, 10)
    assert not h0.mip & SEIP
    assert not pending_word(m, 10) & (1 << 10)
    uart.push_input(b"yz")
    assert h0.mip & SEIP
    assert m.mem.read(claim(1), 4) == 10
    assert m.mem.read(UART, 1) == ord("y")
    m.mem.write(claim(1), 4, 10)  # Still data: pending again
    assert h0.mip & SEIP


# A guest: M-mode code sleeps in wfi until the machine timer interrupt

TIMER_WFI = r"""
  la t0, handler
  csrw mtvec, t0
  li s0, 0x200bff8
  li s1, 0x2004000
  csrr t0, mip
  andi t0, t0, 0x80
  bnez t0, bad_early      # MTIP is clear out of reset (mtimecmp all-ones)
  li t0, 0x80
  csrw mie, t0            # MTIE
  csrsi mstatus, 8        # MIE
  li s2, 0
  li t2, 20000            # 2 ms at 10 MHz
  ld t1, 0(s0)
  add t1, t1, t2
  sd t1, 0(s1)            # mtimecmp = mtime + delta, in the block that goes on to wfi
wait:
  wfi
woke:
  addi s2, s2, 1
  li t0, 1000
  blt s2, t0, wait
  FAIL 2                  # Woke up 1000 times without the interrupt
  .align 2                # mtvec.BASE is 4-byte aligned
handler:
  csrr t0, mcause
  li t1, 0x8000000000000007
  bne t0, t1, bad_cause
  csrr t0, mepc
  la t1, woke
  bne t0, t1, bad_epc     # Taken in wfi: mepc is the next instruction (privileged spec 3.3.3)
  ld t1, 0(s0)
  ld t2, 0(s1)
  bltu t1, t2, bad_time   # mtime >= mtimecmp when the interrupt is taken
  csrr t0, mip
  andi t0, t0, 0x80
  beqz t0, bad_mtip
  li t1, -1
  sd t1, 0(s1)            # Writing mtimecmp clears MTIP
  csrr t0, mip
  andi t0, t0, 0x80
  bnez t0, bad_clear
  PASS
bad_early: FAIL 3
bad_cause: FAIL 4
bad_time: FAIL 5
bad_mtip: FAIL 6
bad_clear: FAIL 7
bad_epc: FAIL 8
"""


@pytest.mark.parametrize("mode", ["realtime", "icount"])
def test_guest_timer_interrupt_wakes_wfi(asm, mode):
    args = ["jit-run", "--max-insns", "50000000"]
    if mode == "icount":
        args.append("--icount")
    r = mirage(*args, str(asm(TIMER_WFI)), timeout=60)
    assert r.returncode == 0, r.stderr.decode()


# OpenSBI (QEMU's bundled fw_dynamic) on this board and device tree, with an S-mode payload that
# takes a timer interrupt through sbi_set_timer: CLINT -> MTIP -> firmware -> STIP -> S-mode.

OPENSBI = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.elf"
SBI_PAYLOAD = r"""
  .section .text.init, "ax"
  .globl _start
_start:
  lla s0, msg
  call puts
  lla t0, strap
  csrw stvec, t0
  rdtime a0
  li t0, 10000
  add a0, a0, t0
  li a7, 0x54494D45       # SBI TIME extension: set_timer(stime)
  li a6, 0
  ecall
  li t0, 0x20
  csrs sie, t0            # STIE
  csrsi sstatus, 2        # SIE
1: wfi
  j 1b
  .align 2
strap:
  csrr t0, scause
  li t1, 0x8000000000000005
  bne t0, t1, bad
  lla s0, ok
  call puts
shutdown:
  li a7, 0x53525354       # SBI SRST: shutdown
  li a6, 0
  li a0, 0
  li a1, 0
  ecall
3: j 3b
bad:
  lla s0, badmsg
  call puts
  j shutdown
puts:
  mv s1, ra
2: lbu a0, 0(s0)
  beqz a0, 4f
  li a7, 1                # Legacy console_putchar
  ecall
  addi s0, s0, 1
  j 2b
4: mv ra, s1
  ret
msg: .asciz "payload: hello\n"
ok: .asciz "payload: timer interrupt ok\n"
badmsg: .asciz "payload: bad scause\n"
"""


@pytest.mark.slow
def test_opensbi_boots_and_delivers_timer(toolchain):
    if not Path(OPENSBI).exists():
        pytest.fail(f"{OPENSBI} is missing (Debian package qemu-system-data): run `just setup`")
    from elftools.elf.elffile import ELFFile

    from runtime.boot import fdt
    from runtime.boot.loader import load
    from tests.guest import build as guest_build
    from vfm.monitor import Monitor

    elf = guest_build.build(SBI_PAYLOAD, prelude=False)
    with open(elf, "rb") as f:
        payload = ELFFile(f).get_section_by_name(".text").data()  # Position-independent code
    sink = _Sink()
    m = board.build(qemu_virt, out=sink)
    img = load(m.mem, Path(OPENSBI), qemu_virt.RAM_BASE)
    m.mem.load_bytes(qemu_virt.PAYLOAD_ADDR, payload)
    dtb_addr, info = 0x8FE0_0000, 0x8FD0_0000
    m.mem.load_bytes(dtb_addr, fdt.encode(qemu_virt.device_tree(bootargs="console=ttyS0")))
    # struct fw_dynamic_info: magic "OSBI", version 2, next_addr, next_mode (S), options, boot_hart.
    m.mem.load_bytes(info, struct.pack("<6Q", 0x4942534F, 2, qemu_virt.PAYLOAD_ADDR, 1, 0, 0))
    mon = Monitor()
    mon.attach(m)
    mon.reset(m.harts[0], img.entry, 0, dtb_addr, info)
    m.max_insns = 100_000_000
    result = m.run()
    text = sink.data.decode(errors="replace")
    assert result.code == 0, (result.message, text[-2000:])
    assert "Platform Timer Device     : aclint-mtimer @ 10000000Hz" in text
    assert "Platform Console Device   : uart8250" in text
    assert "payload: hello" in text and "payload: timer interrupt ok" in text


MMIO_LOAD_THAT_LOWERS_AN_IRQ = r"""
  li t0, 0x0c000000
  li t1, 1
  sw t1, 40(t0)          # priority[10] = 1
  li t2, 0x0c002080
  li t1, 0x400
  sw t1, 0(t2)           # context 1 (S) enables source 10
  li t2, 0x0c201000
  sw zero, 0(t2)         # threshold 0
  li t0, 0x10000000
  li t1, 2
  sb t1, 1(t0)           # UART IER = THRI: source 10 rises
  li s3, 0x0c201004
  li s1, 0x77
  lw s1, 0(s3)           # Claim: lowers SEIP while the load is in flight
  li t2, 10
  beq s1, t2, 1f
  li t3, 0x77
  beq s1, t3, 2f
  FAIL 3
1: PASS
2: FAIL 2
"""


@pytest.mark.parametrize("threshold", ["0", "1000000"])
def test_mmio_load_that_changes_interrupts_keeps_its_value(asm, threshold):
    # A device that asks for the run loop during a load must not lose the loaded value (the
    # PLIC claim of Linux's UART interrupt was read as the register's old value).
    elf = asm(MMIO_LOAD_THAT_LOWERS_AN_IRQ)
    r = mirage("jit-run", str(elf), "--max-insns", "100000", "--hot-threshold", threshold)
    assert r.returncode == 0, r.stderr


# The device interface (runtime/devices Device)

def test_devices_are_wired_by_what_they_declare():
    """The machine polls the devices that have a poller, asks those with a deadline, finds them
    by role, and the board connects the UART's one interrupt line to its PLIC source (10)."""
    m = build(harts=1)
    clint, plic, uart = m.devices["clint"], m.devices["plic"], m.devices["uart0"]
    assert m.device("timer") is clint and m.device("interrupt-controller") is plic
    assert m.device("console") is uart and m.device("finisher") is m.devices["test"]
    assert m.device("no such role") is None
    assert m.pollers == [clint.poll, plic.poll]
    assert m.timer_sources == [clint]
    # The timer interface: mtimecmp by hart, mtime (privileged spec 3.2.1: MTIP while mtime >= it)
    clint.set_timecmp(0, clint.mtime() + 5)
    assert clint.timecmp(0) == m.mem.read(MTIMECMP, 8) and not m.harts[0].mip & MTIP
    advance(m, 5)
    assert m.harts[0].mip & MTIP
    # The UART's line reaches PLIC source 10: enable it for hart 0's S context, raise it.
    m.mem.write(PLIC + 4 * 10, 4, 1)
    m.mem.write(PLIC + 0x2000 + 0x80 * 1, 4, 1 << 10)
    m.mem.write(UART + 1, 1, 0x02)  # IER: transmitter empty interrupt, pending at once
    assert m.harts[0].mip & SEIP
    with pytest.raises(ValueError, match="drives no interrupt line"):
        clint.connect_irq(lambda level: None)
