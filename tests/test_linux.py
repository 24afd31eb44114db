"""The headline: OpenSBI (virtual M-mode) + Linux 6.1 + busybox boot to a shell that runs commands.

The images are built from Debian's sources the first time (`mirage images build`, about 4 min,
cached under ~/.cache/mirage/images); the boot itself translates everything afresh (no persistent
translation cache) and takes about half a minute.
"""

from __future__ import annotations

import json
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


# Once as is, once under the protect-payload policy (vfm/policy/) with nothing offloaded: OpenSBI
# keeps serving Linux (console, timer, power) without touching its memory, registers or control
# flow.
@pytest.mark.parametrize("policy", [None, "protect-payload"], ids=["no-policy", "protect-payload"])
def test_linux_shell_boots_runs_commands_and_powers_off(images, capsys, policy, tmp_path):
    stats = tmp_path / "stats.json"
    args = ("--policy", policy, "--no-offload") if policy else ()
    r = mirage("jit-run", "linux-shell", "--no-pcache", "--stats", str(stats), *args, input=SCRIPT, timeout=600)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    tail = out[-3000:] + err[-2000:]
    assert r.returncode == 0, tail
    vfm = json.loads(stats.read_text())["vfm"]
    if policy:
        # Nothing OpenSBI does for Linux is refused, and the calls did cross the policy.
        assert "blocked" not in err, tail
        assert vfm["policies"] == {policy: {"blocked": {}}}
        assert vfm["world_switches"]["to_firmware"] > 100 and vfm["sbi"]["legacy"]["console_putchar"] > 100
    else:
        assert "policies" not in vfm
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
        print(f"\n[linux-shell{' --policy ' + policy if policy else ''}] Linux {banner.group(1)}: "
              f"guest 'Boot took {banner.group(2)} seconds'")


# -smp 4: Linux brings up every hart through SBI HSM (OpenSBI in virtual M-mode starts them), a
# shell loop pinned to each CPU runs there (/proc/self/stat field 39: the CPU it last ran on), and
# CPU hotplug stops a hart (HSM hart_stop) and starts it again.
SMP_SCRIPT = b"""\
nproc
grep -c ^processor /proc/cpuinfo
echo 'i=0; while [ $i -lt 2000 ]; do i=$((i + 1)); done; echo "loop $1 done on cpu $(cut -d" " -f39 /proc/self/stat)"' > /tmp/w.sh
sh -c 'for c in 0 1 2 3; do taskset -c $c sh /tmp/w.sh $c & done; wait'
echo 0 > /sys/devices/system/cpu/cpu3/online; cat /sys/devices/system/cpu/online
echo 1 > /sys/devices/system/cpu/cpu3/online; cat /sys/devices/system/cpu/online
poweroff -f
"""


def test_linux_shell_smp4_runs_work_on_every_cpu(images, capsys):
    # --icount: Linux gives a secondary CPU one second to come online, and in host time a busy
    # host (another test beside this one) can make it miss that (it did once in about ten runs).
    r = mirage("jit-run", "linux-shell", "-smp", "4", "--icount", "--no-pcache", input=SMP_SCRIPT, timeout=600)
    out = r.stdout.decode(errors="replace")
    tail = out[-3000:] + r.stderr.decode(errors="replace")[-2000:]
    assert r.returncode == 0, tail
    assert "smp: Brought up 1 node, 4 CPUs" in out, tail
    banner = re.search(r"Mirage linux-shell: Linux (\S+) on riscv64\r?\nBoot took ([0-9.]+) seconds", out)
    assert banner, tail
    shell = out[banner.end():]
    pos = 0
    for line in ["4", "4", "0-2", "0-3", "reboot: Power down"]:
        m = re.search(rf"^{re.escape(line)}\r?$", shell[pos:], re.M)
        assert m, f"missing {line!r} after offset {pos}:\n{shell[pos:][-2000:]}"
        pos += m.end()
    # The loops finish in any order, each on the CPU it was pinned to.
    done = sorted(re.findall(r"^loop (\d) done on cpu (\d+)\r?$", shell, re.M))
    assert done == [(str(c), str(c)) for c in range(4)], shell[-2000:]
    with capsys.disabled():
        print(f"\n[linux-shell -smp 4] guest 'Boot took {banner.group(2)} seconds'")


def test_linux_shell_second_boot_starts_warm(images, tmp_path, capsys):
    """A boot with the persistent cache, then another: the second installs the first one's
    translations (checked against the guest bytes) and its shell works the same."""
    env = {"MIRAGE_TCACHE_DIR": str(tmp_path / "tc")}
    docs = []
    for name in ("first", "second"):
        stats = tmp_path / f"{name}.json"
        r = mirage("jit-run", "linux-shell", "--stats", str(stats), input=b"echo warm=$((40 + 2))\npoweroff -f\n",
                   timeout=600, env=env)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and re.search(r"^warm=42\r?$", out, re.M), out[-3000:] + r.stderr.decode()[-2000:]
        docs.append(json.loads(stats.read_text()))
    first, second = docs
    ws = second["warm_start"]
    assert first["warm_start"]["loaded"] == 0 and ws["loaded"] > 1000
    # Nearly all are installed; code whose bytes are others in this boot (user programs placed
    # elsewhere in the page cache) is translated anew.
    assert ws["restored"] > 0.9 * ws["loaded"] and ws["failed"] == 0
    assert second["interpreter"]["insns"] < 0.7 * first["interpreter"]["insns"]
    with capsys.disabled():
        print(f"\n[linux-shell warm] {ws['restored']:,} of {ws['loaded']:,} translations installed, "
              f"{ws['changed']} changed; interpreted {first['interpreter']['insns']:,} -> "
              f"{second['interpreter']['insns']:,} instructions")
