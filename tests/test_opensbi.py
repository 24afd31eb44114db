"""Debian's OpenSBI 1.1 (unmodified) boots in virtual M-mode under the monitor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import mirage
from tests.guest import build as guest_build

FW_DIR = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic")

# An S-mode payload: prints through the SBI console (legacy putchar) and powers off through SRST.
PAYLOAD = r"""
  .section .text.init, "ax"
  .globl _start
_start:
  csrr s1, sstatus          # S-mode CSRs are the machine's own: no trap
  la s0, msg
1: lbu a0, 0(s0)
  beqz a0, 2f
  li a7, 1
  ecall
  addi s0, s0, 1
  j 1b
2: li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 0
  ecall
3: j 3b
  .data
msg: .asciz "payload: hello through SBI\n"
"""


@pytest.fixture(scope="module")
def payload(toolchain) -> Path:
    return guest_build.build(PAYLOAD, prelude=False, ld=guest_build.PAYLOAD_LD)


@pytest.mark.parametrize("fw", ["fw_jump.elf", "fw_dynamic.elf"])
def test_opensbi_boots_payload_and_powers_off(fw, payload):
    firmware = FW_DIR / fw
    if not firmware.exists():
        pytest.fail("Debian's opensbi package is missing: run `just setup`")
    r = mirage("jit-run", str(firmware), "--kernel", str(payload), "--max-insns", "200000000", timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert "OpenSBI v1.1" in out
    assert "Boot HART Priv Version    : v1.12" in out
    assert "Boot HART MIDELEG         : 0x0000000000000222" in out
    assert "payload: hello through SBI" in out


# Console output through SBI v0.1 putchar, which keeps a1 (SBI v0.1 calls return only a0): the
# payload says whether a1 came back unchanged, and what a0 was.
PUTCHAR = r"""
  .section .text.init, "ax"
  .globl _start
_start:
  la s0, msg
1: lbu a0, 0(s0)
  beqz a0, 2f
  li a1, 0x1234
  li a7, 1
  ecall
  li t0, 0x1234
  bne a1, t0, 3f
  bnez a0, 4f
  addi s0, s0, 1
  j 1b
3: la s0, bad_a1
  j 1b
4: la s0, bad_a0
  j 1b
2: li a7, 0x53525354
  li a6, 0
  li a0, 0
  li a1, 0
  ecall
5: j 5b
  .data
msg: .asciz "line one\nline two\n\ttab, and a1 kept\n"
bad_a1: .asciz "a1 changed\n"
bad_a0: .asciz "a0 not 0\n"
"""


def test_console_offload_prints_what_opensbi_prints(toolchain, tmp_path):
    """OpenSBI's console calls answered by the monitor print the same bytes as OpenSBI does (its
    "\r" before each "\n" included) and return as it does."""
    import json

    payload = guest_build.build(PUTCHAR, prelude=False, ld=guest_build.PAYLOAD_LD)
    outs = {}
    for mode in ("--offload", "--no-offload"):
        stats = tmp_path / f"{mode}.json"
        r = mirage("jit-run", str(FW_DIR / "fw_jump.elf"), "--kernel", str(payload), mode, "--stats", str(stats),
                   "--max-insns", "200000000", timeout=300)
        assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
        outs[mode] = r.stdout
        offloaded = json.loads(stats.read_text())["vfm"]["offloaded"]
        assert offloaded.get("console_putchar", 0) == (36 if mode == "--offload" else 0)
    assert b"line one\r\nline two\r\n\ttab, and a1 kept\r\n" in outs["--no-offload"]
    assert outs["--offload"] == outs["--no-offload"]
