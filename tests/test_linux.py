"""The headline: OpenSBI (virtual M-mode) + Linux 6.1 + busybox boot to a shell that runs commands.

The images are built from Debian's sources the first time (`mirage images build`, about 4 min,
cached under ~/.cache/mirage/images); the boot itself translates everything afresh (no persistent
translation cache) and takes about half a minute.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import mirage

SCRIPT = b"""\
uname -sm
echo arith=$((6 * 7 + 1000))
echo 'mirage tmpfs line' > /tmp/f && cat /tmp/f && wc -c < /tmp/f
i=0; s=0; while [ $i -lt 300 ]; do s=$((s + i * i)); i=$((i + 1)); done; echo squares=$s
grep -c processor /proc/cpuinfo
poweroff -f
"""


@pytest.fixture(scope="module")
def images() -> None:
    r = mirage("images", "build", timeout=1800)
    assert r.returncode == 0, r.stderr.decode()[-3000:]


def test_linux_shell_boots_runs_commands_and_powers_off(images, capsys):
    r = mirage("jit-run", "linux-shell", "--no-pcache", input=SCRIPT, timeout=600)
    out = r.stdout.decode(errors="replace")
    tail = out[-3000:] + r.stderr.decode(errors="replace")[-2000:]
    assert r.returncode == 0, tail
    # The firmware is OpenSBI 1.1 and it runs under the monitor; the kernel is the one built.
    assert "OpenSBI v1.1" in out, tail
    assert "Linux version 6.1." in out, tail
    banner = re.search(r"Mirage linux-shell: Linux (\S+) on riscv64\r?\nBoot took ([0-9.]+) seconds", out)
    assert banner, tail
    # Each command's output, in order, after the prompt.
    shell = out[banner.end():]
    expect = ["Linux riscv64", "arith=1042", "mirage tmpfs line", "18", f"squares={sum(i * i for i in range(300))}",
              "1", "reboot: Power down"]
    pos = 0
    for line in expect:
        m = re.search(rf"^{re.escape(line)}\r?$", shell[pos:], re.M)
        assert m, f"missing {line!r} after offset {pos}:\n{shell[pos:][-2000:]}"
        pos += m.end()
    with capsys.disabled():
        print(f"\n[linux-shell] Linux {banner.group(1)}: guest 'Boot took {banner.group(2)} seconds'")
