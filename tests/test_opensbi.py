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
