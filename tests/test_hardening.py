"""Hardening (issue 15): the host never crashes, hangs or loses data, whatever the guest or the
command line does. Bad input: exit status 2 and a one-line error, no traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT, mirage
from tests.guest import build as guest_build

TINY = "  PASS\n"


def run_env(*args: str, env: dict | None = None, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, input=input,
                          timeout=timeout, env=full, cwd=ROOT)


def assert_bad_input(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2, one line on stderr starting 'mirage: error:', no traceback."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mirage: error:"), err
    for w in words:
        assert w in err, err


# 1. Data loss

def test_cache_clear_removes_only_entries(tmp_path):
    from runtime.core.pcache import PersistentCache

    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    (d / "ab").mkdir()
    (d / "ab" / "keep.txt").write_text("keep me too")
    pc = PersistentCache()
    pc.dir = d
    keys = [pc.key(f"m{i}", "v") for i in range(3)]
    for k in keys:
        pc.put(k, b"object", 1, 0.1)
    r = run_env("cache", "clear", env={"MIRAGE_TCACHE_DIR": str(d)})
    assert r.returncode == 0, r.stderr
    assert b"removed 3 entries" in r.stdout
    assert (d / "notes.txt").read_text() == "keep me"
    assert (d / "ab" / "keep.txt").read_text() == "keep me too"
    assert not any(pc.path(k).exists() for k in keys)


def test_stats_written_through_a_symlink(asm, tmp_path):
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    link.symlink_to(real)
    r = mirage("jit-run", "--stats", str(link), str(asm(TINY)))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink()
    assert json.loads(real.read_text())["schema"] == "mirage-stats"


def test_stats_written_into_a_fifo(asm, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    r = mirage("jit-run", "--stats", str(fifo), str(asm(TINY)))
    if reader.is_alive():  # Nobody opened the FIFO for writing: release the reader
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(10)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and json.loads(got[0])["schema"] == "mirage-stats"


# 7. Bad options and files

UART_LOOP = r"""
  li t0, 0x10000000
  li t2, 100000
1: li t1, 'o'
  sb t1, 0(t0)
  addi t2, t2, -1
  bnez t2, 1b
  PASS
"""


def test_subcommands_are_listed_found_and_suggested():
    """Subcommands of other modules are imported when named (start-up time), yet listed by --help,
    and suggested for a mistyped name, as any other."""
    from click.testing import CliRunner

    from runtime.frontends.cli import main

    listed = CliRunner().invoke(main, ["--help"]).output
    for name in ("audit", "cache", "dtb", "gate", "images", "jit-run"):
        assert f"\n  {name} " in listed
    assert CliRunner().invoke(main, ["gate", "--help"]).output.startswith("Usage: main gate [OPTIONS] [REVRANGE]")
    r = mirage("cach")
    assert r.returncode == 2 and b"No such command 'cach'. Did you mean 'cache'?" in r.stderr, r.stderr


@pytest.mark.parametrize("size", ["0", "1K", "1.5M", "3", "4097K", "-5", "lots", "inf", "nan"])
def test_bad_memory_sizes(asm, tmp_path, size):
    assert_bad_input(mirage("jit-run", "-m", size, str(asm(TINY))), "memory size")
    assert_bad_input(mirage("dtb", "-o", str(tmp_path / "x.dtb"), "-m", size), "memory size")
    assert not (tmp_path / "x.dtb").exists()


def test_memory_the_host_cannot_allocate(asm):
    assert_bad_input(mirage("jit-run", "-m", "65536G", str(asm(TINY))), "cannot allocate")


def test_negative_max_insns(asm):
    assert_bad_input(mirage("jit-run", "--max-insns", "-5", str(asm(TINY))), "--max-insns")


@pytest.mark.parametrize("extra", [["--append", "console=ttyS0"], []])
@pytest.mark.parametrize("blob", [b"\xd0\x0d\xfe\xed\x00\x00\x10\x00", bytes(range(256)) * 8, b""])
def test_bad_dtb(asm, tmp_path, blob, extra):
    dtb = tmp_path / "bad.dtb"
    dtb.write_bytes(blob)
    assert_bad_input(mirage("jit-run", "--dtb", str(dtb), *extra, str(asm(TINY))), "device tree")


@pytest.mark.parametrize("role", ["program", "--kernel", "--dtb", "--initrd"])
@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/urandom"])
def test_endless_files_are_capped_by_ram(asm, role, dev):
    args = [dev] if role == "program" else [role, dev, str(asm(TINY))]
    assert_bad_input(mirage("jit-run", "-m", "16M", "--max-insns", "1000", *args), "larger than")


@pytest.mark.parametrize("var", ["MIRAGE_TCACHE_DIR", "MIRAGE_CACHE_DIR"])
def test_cache_directory_naming_a_file(asm, tmp_path, var):
    f = tmp_path / "file"
    f.write_text("x")
    assert_bad_input(run_env("jit-run", str(asm(TINY)), env={var: str(f)}), "not a directory")
    for cmd in ("info", "clear"):
        assert_bad_input(run_env("cache", cmd, env={var: str(f)}), "not a directory")
    assert f.read_text() == "x"


@pytest.mark.parametrize("begin, end", [(0x10, 0x20), (0x9000_0000, 0x9000_0010), (0x8000_0100, 0x8000_0080)])
def test_bad_signature_symbols(asm, tmp_path, begin, end):
    src = f"  .globl begin_signature, end_signature\n  .set begin_signature, {begin:#x}\n" \
          f"  .set end_signature, {end:#x}\n  PASS\n"
    r = mirage("jit-run", "--signature", str(tmp_path / "sig"), str(asm(src)))
    assert_bad_input(r, "signature")
    assert not (tmp_path / "sig").exists()


def test_non_utf8_append(asm):
    r = subprocess.run([sys.executable, "-m", "runtime", "jit-run", "--append", b"\xff\xfe", str(asm(TINY))],
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, timeout=60)
    assert_bad_input(r, "--append")


def _stdout_run(elf, stdout) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", "jit-run", str(elf)], stdout=stdout,
                          stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, timeout=120)


def test_stdout_closed_full_or_broken(asm):
    elf = asm(UART_LOOP)
    closed = subprocess.run(f"exec {sys.executable} -m runtime jit-run {elf} >&-", shell=True, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, timeout=120)
    assert_bad_input(closed, "guest's output")
    with open("/dev/full", "wb") as full:
        assert_bad_input(_stdout_run(elf, full), "No space left")
    p = subprocess.Popen([sys.executable, "-m", "runtime", "jit-run", str(elf)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert p.stdout.read(10) == b"o" * 10
    p.stdout.close()
    err = p.stderr.read()
    assert_bad_input(subprocess.CompletedProcess(p.args, p.wait(120), b"", err), "Broken pipe")


def test_stats_and_trace_write_errors_keep_the_guest_status(asm, tmp_path):
    for prog, status in ((TINY, 0), ("  FAIL 3\n", 1)):
        tmp_path.joinpath("nodir").mkdir(exist_ok=True)
        tmp_path.joinpath("nodir", "sub").write_text("a file, not a directory")
        r = mirage("jit-run", "--stats", str(tmp_path / "nodir" / "sub" / "s.json"), "-d", "in_asm",
                   "-D", "/dev/full", str(asm(prog)))
        err = r.stderr.decode()
        assert r.returncode == status, err
        assert "Traceback" not in err
        assert "mirage: error: --stats" in err and "mirage: error: -D /dev/full: No space left" in err


def _leaves(v, path=()):
    yield path, v
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _leaves(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v[:2]):
            yield from _leaves(x, (*path, i))


def test_cache_stats_with_wrong_field_types(asm, tmp_path):
    from click.testing import CliRunner

    from runtime.frontends.cli import main

    good = tmp_path / "good.json"
    r = mirage("jit-run", "--stats", str(good), str(asm(UART_LOOP.replace("t2, 100000", "t2, 3"))))
    assert r.returncode == 0, r.stderr
    doc = json.loads(good.read_text())
    assert CliRunner().invoke(main, ["cache", "stats", str(good)]).exit_code == 0
    tried = 0
    for path, value in _leaves(doc):
        if not path:
            continue
        wrong = [[1]] if value is None or isinstance(value, str) else ["x", None] if not isinstance(value, dict | list) else ["x"]
        for w in wrong:
            bad = json.loads(good.read_text())
            target = bad
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = w
            f = tmp_path / "bad.json"
            f.write_text(json.dumps(bad))
            res = CliRunner().invoke(main, ["cache", "stats", str(f)])
            tried += 1
            assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (path, w, res.output)
    assert tried > 100


# 6. Image placement

def _big_data(size: int) -> str:
    return f'  PASS\n  .section .data\n  .globl big\nbig: .fill {size}, 1, 0x5a\n'


def test_dtb_over_elf_data_is_refused(asm):
    # 6 MiB of data from about 0x80001000: the DTB of an 8 MiB guest goes at 0x80600000.
    elf = asm(_big_data(6 << 20))
    assert mirage("jit-run", "-m", "16M", str(elf)).returncode == 0
    assert_bad_input(mirage("jit-run", "-m", "8M", str(elf)), "device tree", "overlaps")


def test_kernel_over_firmware_is_refused(asm):
    elf = str(asm(TINY))
    assert_bad_input(mirage("jit-run", elf, "--kernel", elf), "overlaps")


def test_segment_in_monitor_memory_is_refused(asm):
    # Guest RAM of 8 MiB ends at 0x80800000, where the monitor's own memory begins.
    r = mirage("jit-run", "-m", "8M", str(asm(_big_data(9 << 20))))
    assert_bad_input(r, "does not fit", "[0x80000000, 0x80800000)")


def test_initrd_over_kernel_is_refused(asm, tmp_path):
    # With 128 MiB the initrd goes at 0x84200000 (QEMU's rule): a raw kernel of 80 MiB reaches it.
    kernel = tmp_path / "kernel.bin"
    kernel.write_bytes(b"\x13" * (80 << 20))
    rd = tmp_path / "rd"
    rd.write_bytes(b"x" * 4096)
    r = mirage("jit-run", "-m", "128M", str(asm(TINY)), "--kernel", str(kernel), "--initrd", str(rd))
    assert_bad_input(r, "initrd", "overlaps")


# 4. HTIF requests are guest input

def _htif_write(buf: str, length: int, expect: int) -> str:
    """A proxy-kernel write(1, buf, length) through tohost; checks the result in the block."""
    return rf"""
  la a0, magic
  li t1, 64
  sd t1, 0(a0)
  li t1, 1
  sd t1, 8(a0)
  {buf}
  sd t1, 16(a0)
  li t1, {length}
  sd t1, 24(a0)
  la t2, tohost
  sd a0, 0(t2)
  ld t1, 0(a0)
  li t2, {expect}
  bne t1, t2, bad
  PASS
bad: FAIL 2
  .section .data
  .align 3
magic: .dword 0, 0, 0, 0
msg: .ascii "hello"
"""


def test_htif_write_in_ram_prints(asm):
    r = mirage("jit-run", str(asm(_htif_write("la t1, msg", 5, 5))))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello"


@pytest.mark.parametrize("buf", ["li t1, 0x1000", "li t1, 0x90000000", "li t1, 0x8ffffffe", "la t1, msg"])
def test_htif_write_outside_guest_ram_is_efault(asm, buf):
    # Outside RAM, into the monitor's memory (above 256 MiB of guest RAM), straddling its start,
    # and a length no RAM holds: -EFAULT (-14) in the block, nothing printed, no traceback.
    length = (1 << 62) if buf == "la t1, msg" else 16
    r = mirage("jit-run", str(asm(_htif_write(buf, length, -14))))
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"" and b"Traceback" not in r.stderr


# 10. Persistent-cache objects LLVM would abort on

def _rewrite(entry, fn) -> None:
    """Applies fn to the object of a pcache entry and stores it back with a valid checksum."""
    import hashlib
    import struct

    from runtime.core.pcache import HEADER

    data = entry.read_bytes()
    magic, key, _digest, code, secs = HEADER.unpack_from(data)
    obj = bytearray(data[HEADER.size:])
    shoff = struct.unpack_from("<Q", obj, 0x28)[0]
    shnum = struct.unpack_from("<H", obj, 0x3C)[0]
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + 64 * i) for i in range(shnum)]
    fn(obj, shoff, sections)
    entry.write_bytes(HEADER.pack(magic, key, hashlib.sha256(obj).digest(), code, secs) + bytes(obj))


def _first(sections, stype):
    return next(i for i, s in enumerate(sections) if s[1] == stype)


CORRUPTIONS = {
    # The relocation ones aborted (SIGABRT) or crashed (SIGSEGV) the process inside LLVM; the others
    # failed to link cleanly even before objects were checked.
    "relocation type": lambda o, shoff, ss: o.__setitem__(slice(ss[_first(ss, 4)][4] + 8, ss[_first(ss, 4)][4] + 12),
                                                         (0xFF).to_bytes(4, "little")),
    "relocation offset": lambda o, shoff, ss: o.__setitem__(slice(ss[_first(ss, 4)][4], ss[_first(ss, 4)][4] + 8),
                                                           (1 << 40).to_bytes(8, "little")),
    "relocation section size": lambda o, shoff, ss: o.__setitem__(
        slice(shoff + 64 * _first(ss, 4) + 32, shoff + 64 * _first(ss, 4) + 40), (1 << 40).to_bytes(8, "little")),
    "string tables zeroed": lambda o, shoff, ss: o.__setitem__(slice(64, shoff), bytes(shoff - 64)),
    "symbol name": lambda o, shoff, ss: o.__setitem__(slice(ss[_first(ss, 2)][4] + 24, ss[_first(ss, 2)][4] + 28),
                                                     (0x7FFFFFFF).to_bytes(4, "little")),
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_pcache_object_corrupt_behind_a_valid_checksum(asm, tmp_path, how):
    elf = str(asm(TINY))
    # Every block translated (no interpreter), so the program leaves cache entries.
    env = {"MIRAGE_TCACHE_DIR": str(tmp_path / "tc"), "MIRAGE_WARM_THRESHOLD": "0"}
    assert run_env("jit-run", elf, env=env).returncode == 0
    entries = sorted((tmp_path / "tc").glob("*/*.obj"))
    assert entries
    for e in entries:
        _rewrite(e, CORRUPTIONS[how])
    r = run_env("jit-run", elf, "--stats", str(tmp_path / "s.json"), env=env)
    assert r.returncode == 0, r.stderr.decode()
    pc = json.loads((tmp_path / "s.json").read_text())["pcache"]
    assert pc["rejected"] == len(entries) and pc["hits"] == 0


def test_objcheck_accepts_what_llvm_makes(asm, tmp_path):
    from runtime.core import objcheck
    from runtime.core.pcache import HEADER

    assert run_env("jit-run", str(asm(UART_LOOP)), env={"MIRAGE_TCACHE_DIR": str(tmp_path)}).returncode == 0
    entries = list(tmp_path.glob("*/*.obj"))
    assert entries
    for e in entries:
        assert objcheck.problem(e.read_bytes()[HEADER.size:]) is None


# 9. The SBI fast path only for SBI firmware

S_ECALL = guest_build.to_s_mode('mtrap') + r"""
  li a7, 0x54494D45
  li a6, 0
  li a0, -1
  ecall
  FAIL 3
mtrap:
  csrr t0, mcause
  li t1, 9
  bne t0, t1, bad
  csrr t0, mepc
  la t1, s_entry + 12
  bne t0, t1, bad
  PASS
bad: FAIL 4
"""


def test_plain_firmware_sees_s_mode_ecalls(asm):
    # An SBI TIME call from S-mode reaches a firmware that is not an SBI implementation: mcause 9
    # at its mtvec (privileged spec 3.1.15), as on QEMU. `--offload` answers it in the monitor.
    elf = str(asm(S_ECALL))
    r = mirage("jit-run", "--max-insns", "100000", elf)
    assert r.returncode == 0, r.stderr
    r = mirage("jit-run", "--max-insns", "100000", "--offload", elf)
    assert r.returncode == 1 and b"test 3 failed" in r.stderr, r.stderr


def test_sbi_firmware_is_detected():
    from vfm import sbi

    fw = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf"
    with open(fw, "rb") as f:
        assert sbi.implements_sbi(f.read())
    assert not sbi.implements_sbi(bytes(range(256)) * 100)


# 3. Hangs: traps count against --max-insns, trap loops stop

NO_HANDLER_LOAD = "  li t0, 0x1000\n  ld t1, 0(t0)\n  PASS\n"  # mtvec is 0: the fault's handler faults
HANDLER_FAULTS = r"""
  la t0, handler
  csrw mtvec, t0
  li t0, 0x1000
  ld t1, 0(t0)
  PASS
  .align 2
handler:
  ld t1, 0(t0)
  mret
"""
STACK_OVERFLOW = r"""
  li sp, 0x80004000
1: addi sp, sp, -16
  sd ra, 0(sp)
  jal 1b
"""


@pytest.mark.parametrize("src, pc, cause", [(NO_HANDLER_LOAD, "0x0", 1), (HANDLER_FAULTS, None, 5),
                                            (STACK_OVERFLOW, "0x0", 1)],
                         ids=["no-handler", "handler-faults", "stack-overflow"])
def test_trap_loop_stops(asm, src, pc, cause):
    elf = str(asm(src))
    r = mirage("jit-run", elf, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 5, err
    assert "trap loop" in err and f"(cause {cause})" in err and "mtvec" in err, err
    if pc is not None:
        assert f"pc {pc} " in err
    assert "Traceback" not in err
    # With a limit below the loop's detection, the limit ends the run: traps count.
    r = mirage("jit-run", "--max-insns", "300", elf, timeout=60)
    assert r.returncode == 3 and b"instruction limit reached" in r.stderr, r.stderr


def test_entry_in_unmapped_memory_stops(toolchain):
    from tests.guest import build

    elf = build.build("  nop\n  PASS\n", extra=["-Wl,-e,0x1000"])
    r = mirage("jit-run", str(elf), timeout=60)
    assert r.returncode == 5 and b"trap loop: the trap at pc 0x0 (cause 1)" in r.stderr, r.stderr


@pytest.mark.parametrize("content", [b"", b"root:x:0:0:root:/root:/bin/bash\n" * 20, "caf\u00e9\tok\r\n".encode()])
def test_empty_or_text_program_is_refused(tmp_path, content):
    f = tmp_path / "prog"
    f.write_bytes(content)
    assert_bad_input(mirage("jit-run", "--max-insns", "1000", str(f), timeout=60), "ELF")


# 8. -d exec does not change the result

FETCH_FAULT = r"""
  la t0, handler
  csrw mtvec, t0
  li t0, 0x1000
  jr t0
  .align 2
handler:
  csrr t1, mcause
  li t2, 1
  bne t1, t2, bad
  PASS
bad: FAIL 2
"""


@pytest.mark.parametrize("trace", [[], ["-d", "exec", "-D", os.devnull]], ids=["plain", "exec"])
def test_exec_trace_after_a_fetch_fault(asm, trace):
    r = mirage("jit-run", "--max-insns", "1000", *trace, str(asm(FETCH_FAULT)), timeout=60)
    assert r.returncode == 0, r.stderr


# 2. Console input for polling drivers

POLLING_ECHO = r"""
  li s0, 0x10000000
loop:
  lbu t0, 5(s0)
  andi t0, t0, 1
  beqz t0, loop
  lbu t1, 0(s0)
  li t2, 'q'
  beq t1, t2, done
  sb t1, 0(s0)
  j loop
done:
  PASS
"""


def test_polling_echo_gets_piped_input(asm):
    # No receive interrupt: the program polls LSR.DR and reads RBR, as QEMU's 16550 allows.
    r = mirage("jit-run", "--max-insns", "3000000", str(asm(POLLING_ECHO)), input=b"hello, world\nq", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello, world\n"


def test_polling_sees_more_than_one_fifo_of_input(asm):
    text = bytes(range(32, 112)) * 4  # 320 bytes: 20 FIFO loads, no 'q' (113) among them
    r = mirage("jit-run", "--max-insns", "20000000", str(asm(POLLING_ECHO)), input=text + b"q", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == text


def test_transmit_status_reads_do_not_take_input():
    # A driver that only writes (one LSR read before each THR write) is not listening: input
    # typed ahead waits for the OS, as it did.
    r, w = os.pipe()
    from runtime.devices.uart import LSR, Uart16550
    from runtime.frontends.console import StdinFeed

    uart = Uart16550(out=open(os.devnull, "wb"))
    feed = StdinFeed(uart, r)
    feed.attach(type("M", (), {"pollers": [], "waiters": []})())
    os.write(w, b"typed ahead")
    for ch in b"booting":
        uart.read(LSR, 1)
        uart.write(0, 1, ch)
    feed.poll()
    assert not uart.rx
    for _ in range(2):  # As Linux's 8250 driver at start-up
        uart.read(LSR, 1)
    assert not uart.rx
    for _ in range(StdinFeed.POLL_READS):  # Now polling for input
        uart.read(LSR, 1)
    assert bytes(uart.rx) == b"typed ahead"
    os.close(w)
    os.close(r)


# 5. Self-modifying code: dropped translations are freed, the persistent cache is spared

def smc_rewrites(n: int) -> str:
    """Rewrites `patch` (addi a0, zero, k) n times, each followed by fence.i and a call; checks
    every value the rewritten code returns."""
    return rf"""
  la t0, trap
  csrw mtvec, t0
  li s0, {n}
  la s1, patch
loop:
  andi s3, s0, 1023
  slli t0, s3, 20
  li t1, 0x513
  or t0, t0, t1
  sw t0, 0(s1)
  fence.i
  jal ra, patch
  bne a0, s3, bad
  addi s0, s0, -1
  bnez s0, loop
  PASS
bad: FAIL 2
trap: FAIL 7
  .align 2
  .option push
  .option norvc
patch:
  addi a0, zero, 0
  jalr zero, 0(ra)
  .option pop
"""


def test_smc_frees_dropped_translations(asm):
    from runtime.frontends import stats
    from tests.test_tcache import run_machine

    n = 300
    m = run_machine(asm(smc_rewrites(n)))
    tc = m.tcache
    assert tc.invalidations["code-write"] == n - 1  # The first write comes before the first call
    # Every dropped module is unloaded at the next translation (what is left: the live blocks'
    # modules, the dispatcher's, and the last dropped one).
    assert tc.released >= n - 2
    assert len(m.engine._libs) <= len(tc.blocks) + 1 + len(tc.dead)
    # The statistics still count the freed translations' executions, exactly.
    blocks, _ = stats.block_counts(tc)
    patch = max(blocks, key=lambda b: b["translations"])
    assert patch["translations"] == n and patch["executions"] == n


def test_smc_is_kept_out_of_the_persistent_cache(asm, tmp_path):
    n = 200
    # Every version translated (no interpreter): the translated path's cache writes are counted.
    r = run_env("jit-run", str(asm(smc_rewrites(n))), "--stats", str(tmp_path / "s.json"),
                env={"MIRAGE_TCACHE_DIR": str(tmp_path / "tc"), "MIRAGE_WARM_THRESHOLD": "0"})
    assert r.returncode == 0, r.stderr
    pc = json.loads((tmp_path / "s.json").read_text())["pcache"]
    from runtime.core.tcache import VOLATILE_WRITES

    assert pc["writes"] <= VOLATILE_WRITES + 4 and pc["skipped"] >= n - VOLATILE_WRITES
    assert len(list((tmp_path / "tc").glob("*/*.obj"))) == pc["writes"]


def test_gdb_setting_pc_to_garbage_stops(asm):
    from tests.test_gdb import Client, mirage_stub

    with mirage_stub(asm("  nop\n  PASS\n")) as (proc, port):
        c = Client(port)
        try:
            assert c.cmd("?").startswith("T05")
            assert c.cmd("P20=3412000000000000") == "OK"  # pc = 0x1234: nothing there, no mtvec
            assert c.cmd("c") == "W05"
        finally:
            c.close()
        assert proc.wait(timeout=60) == 5
        assert b"trap loop" in proc.stderr.read()
