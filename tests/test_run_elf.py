"""Running bare-metal programs: HTIF and finisher exits, signatures, limits, bad input."""

from __future__ import annotations

from tests.conftest import mirage

SUM_LOOP = r"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li a1, 100
1: add a0, a0, a1
  addi a1, a1, -1
  bnez a1, 1b
  li t1, 5050
  bne a0, t1, bad
  PASS
bad: FAIL 2
trap: FAIL 7
"""


def test_htif_pass(asm):
    r = mirage("jit-run", str(asm(SUM_LOOP)))
    assert r.returncode == 0, r.stderr


def test_htif_fail_names_test(asm):
    r = mirage("jit-run", str(asm("  FAIL 5\n")))
    assert r.returncode != 0
    assert b"test 5" in r.stderr


def test_htif_putchar(asm):
    src = r"""
  la t0, tohost
  li t1, (1 << 56) | (1 << 48) | 'h'
  sd t1, 0(t0)
  li t1, (1 << 56) | (1 << 48) | 'i'
  sd t1, 0(t0)
  PASS
"""
    r = mirage("jit-run", str(asm(src)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi"


def test_finisher_pass_and_fail(asm):
    ok = asm("  li t0, 0x100000\n  li t1, 0x5555\n  sw t1, 0(t0)\n1: j 1b\n")
    bad = asm("  li t0, 0x100000\n  li t1, (9 << 16) | 0x3333\n  sw t1, 0(t0)\n1: j 1b\n")
    assert mirage("jit-run", str(ok)).returncode == 0
    r = mirage("jit-run", str(bad))
    assert r.returncode == 9
    assert b"code 9" in r.stderr


def test_uart_output(asm):
    src = r"""
  li t0, 0x10000000
  li t1, 'o'
  sb t1, 0(t0)
  li t1, 'k'
  sb t1, 0(t0)
  PASS
"""
    r = mirage("jit-run", str(asm(src)))
    assert r.returncode == 0
    assert r.stdout == b"ok"


def test_max_insns_stops_runaway(asm):
    r = mirage("jit-run", "--max-insns", "100000", str(asm("1: j 1b\n")))
    assert r.returncode != 0
    assert b"instruction limit" in r.stderr


def test_max_insns_below_the_next_block_stops(asm):
    # A four-instruction loop block: 100002 leaves two instructions, fewer than the block, which
    # runs whole or not at all; the limit must still stop the run (it used to spin forever).
    loop = "1: addi a0, a0, 1\n  addi a1, a1, 1\n  addi a2, a2, 1\n  j 1b\n"
    r = mirage("jit-run", "--max-insns", "100002", str(asm(loop)), timeout=30)
    assert r.returncode == 3, r.stderr
    assert b"instruction limit reached (100002 instructions)" in r.stderr


def test_firmware_replaces_a_named_images_own(asm):
    # demo is a named image; --firmware runs another firmware in its place (QEMU's -bios).
    r = mirage("jit-run", "demo", "--firmware", str(asm("FAIL 5\n")))
    assert r.returncode != 0 and b"test 5" in r.stderr, r.stderr
    # With an ELF as PROGRAM there is nothing to replace.
    r = mirage("jit-run", str(asm("PASS\n")), "--firmware", "x.elf")
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"--firmware" in r.stderr


def test_signature(asm, tmp_path):
    src = r"""
  la t0, begin_signature
  li t1, 0x11223344
  sw t1, 0(t0)
  li t1, -1
  sw t1, 4(t0)
  PASS
  .data
  .align 4
  .globl begin_signature
begin_signature: .word 0, 0, 0xdeadbeef, 0
  .globl end_signature
end_signature:
"""
    sig = tmp_path / "sig"
    r = mirage("jit-run", "--signature", str(sig), str(asm(src)))
    assert r.returncode == 0, r.stderr
    assert sig.read_text().split() == ["11223344", "ffffffff", "deadbeef", "00000000"]
    sig8 = tmp_path / "sig8"
    r = mirage("jit-run", "--signature", str(sig8), "--signature-granularity", "8", str(asm(src)))
    assert sig8.read_text().split() == ["ffffffff11223344", "00000000deadbeef"]


def test_bad_inputs(tmp_path, asm):
    missing = mirage("jit-run", str(tmp_path / "nope.elf"))
    notelf = tmp_path / "x.elf"
    notelf.write_bytes(b"\x7fELF" + b"\0" * 10)
    trunc = tmp_path / "t.elf"
    trunc.write_bytes(asm(SUM_LOOP).read_bytes()[:200])
    wrong = tmp_path / "w.elf"
    import sys
    wrong.write_bytes(open(sys.executable, "rb").read(1 << 16))
    for r in (missing, mirage("jit-run", str(notelf)), mirage("jit-run", str(trunc)),
              mirage("jit-run", str(wrong))):
        assert r.returncode == 2, r
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mirage: error:"), r.stderr
        assert b"Traceback" not in r.stderr


def test_demo_image(toolchain):
    r = mirage("jit-run", "demo")
    assert r.returncode == 0, r.stderr
    assert b"There are 2262 primes below 20000" in r.stdout


LOOPS = r"""
  la t0, trap
  csrw mtvec, t0
  # A self-loop long enough to exhaust the instruction budget several times: the count of
  # retired instructions must stay exact across budget exits from inside the loop.
  csrr s0, minstret
  li a0, 0
  li a1, 3000000
1: add a0, a0, a1
  addi a1, a1, -1
  bnez a1, 1b
  csrr s1, minstret
  sub s1, s1, s0
  li t1, 9000004            # csrr, li a0, lui+addiw for a1, then 3 per iteration
  bne s1, t1, bad_count
  li t1, 4500001500000
  bne a0, t1, bad_sum
  # A loop whose body stores to a device (slow path every iteration) and has a side exit.
  la s2, msg
  li s3, 0x10000000
2: lbu t2, 0(s2)
  beqz t2, 3f
  li t3, 'x'
  beq t2, t3, 4f            # Forward branch inside the loop: a side exit
  sb t2, 0(s3)
4: addi s2, s2, 1
  j 2b
3: PASS
bad_count: FAIL 2
bad_sum: FAIL 3
trap: FAIL 4
  .data
msg: .asciz "lxoxoxpx ok\n"
"""


def test_loops_count_exactly_and_keep_side_effects(asm):
    r = mirage("jit-run", str(asm(LOOPS)))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"loop ok\n"
