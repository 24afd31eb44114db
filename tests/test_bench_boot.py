"""The boot benchmark's pure parts (tests/bench/boot.py): the console watch, the command lines,
the statistics summary (also of a real run's --stats file), best-of and ratios, the tables. Nothing
boots here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runtime.core import pcache
from tests.bench import boot
from tests.conftest import mirage

IMG = boot.Images(Path("/img/fw_jump.elf"), Path("/img/Image"), Path("/img/initrd.gz"),
                  "console=ttyS0 earlycon=sbi", "256M")
CONSOLE = (b"Run /init as init process\r\n\r\nMirage linux-shell: Linux 6.1.192 on riscv64\r\n"
           b"Boot took 26.09 seconds\r\nExit the shell (or run poweroff) to stop the machine.\r\n~ # ")


def test_parse_boot_took():
    assert boot.parse_boot_took(CONSOLE.decode()) == 26.09
    assert boot.parse_boot_took("Boot took 3 seconds") == 3.0
    assert boot.parse_boot_took("Run /init as init process") is None


@pytest.mark.parametrize("chunk", [1, 3, 7, len(CONSOLE)])
def test_console_watch_sees_the_prompt_after_boot_took(chunk):
    watch = boot.ConsoleWatch()
    seen = [watch.feed(CONSOLE[i:i + chunk]) for i in range(0, len(CONSOLE), chunk)]
    # Only the last chunk completes the prompt.
    assert seen[-1] and not any(seen[:-1])
    assert watch.boot_took == 26.09
    assert watch.text() == CONSOLE.decode()


def test_console_watch_ignores_a_prompt_before_boot_took():
    watch = boot.ConsoleWatch()
    assert not watch.feed(b"~ # early\r\n")
    assert not watch.feed(b"Boot took 1.5 seconds\r\n")
    assert watch.feed(b"~ # ")
    assert watch.boot_took == 1.5


def test_commands():
    q = boot.qemu_command(IMG)
    assert q[:7] == ["qemu-system-riscv64", "-machine", "virt", "-cpu", "rv64,sstc=false", "-nographic", "-m"]
    assert q[q.index("-m") + 1] == "256M" and q[q.index("-append") + 1] == IMG.append
    assert q[q.index("-bios") + 1] == "/img/fw_jump.elf" and q[q.index("-initrd") + 1] == "/img/initrd.gz"
    cold = boot.mirage_command(IMG, Path("/tmp/s.json"), cold=True)
    assert cold[:4] == [sys.executable, "-m", "runtime", "jit-run"] and cold[4] == "/img/fw_jump.elf"
    assert cold[cold.index("--kernel") + 1] == "/img/Image" and cold[cold.index("--stats") + 1] == "/tmp/s.json"
    assert cold[cold.index("--append") + 1] == IMG.append and cold[-1] == "--no-pcache"
    assert "--no-pcache" not in boot.mirage_command(IMG, Path("/tmp/s.json"), cold=False)
    assert "--policy" not in cold
    pol = boot.mirage_command(IMG, Path("/tmp/s.json"), cold=True, policy="protect-payload")
    assert pol[pol.index("--policy") + 1] == "protect-payload" and pol[:-3] == cold[:-1]
    assert "-smp" not in q and "-smp" not in cold
    q4 = boot.qemu_command(IMG, 4)
    m4 = boot.mirage_command(IMG, Path("/tmp/s.json"), cold=True, harts=4)
    assert q4[q4.index("-smp") + 1] == "4" and m4[m4.index("-smp") + 1] == "4"


def test_ratios_by_number_of_harts():
    rows = [boot.BootResult("qemu -smp 1", "ok", total_seconds=2.0),
            boot.BootResult("mirage warm -smp 1", "ok", total_seconds=4.0),
            boot.BootResult("qemu -smp 4", "ok", total_seconds=4.0),
            boot.BootResult("mirage warm -smp 4", "ok", total_seconds=12.0)]
    boot.add_ratios(rows)
    assert [r.ratio for r in rows] == [1.0, 2.0, 1.0, 3.0]


def test_policy_overhead():
    rows = [boot.BootResult("mirage cold", "ok", total_seconds=20.0),
            boot.BootResult("mirage cold +protect-payload", "ok", total_seconds=21.0),
            boot.BootResult("mirage warm", "ok", total_seconds=10.0),
            boot.BootResult("mirage warm +protect-payload", "error", "boom")]
    assert boot.policy_overhead(rows, "protect-payload") == [
        "protect-payload on mirage cold: 21.00 s vs 20.00 s (+5.0% total wall time)"]


def test_mirage_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MIRAGE_NO_PCACHE", "1")
    monkeypatch.delenv("MIRAGE_TCACHE_DIR", raising=False)
    env = boot.mirage_env(tmp_path / "tc")
    assert env["MIRAGE_TCACHE_DIR"] == str(tmp_path / "tc") and "MIRAGE_NO_PCACHE" not in env
    cold = boot.mirage_env(None)
    assert "MIRAGE_TCACHE_DIR" not in cold and cold["MIRAGE_NO_PCACHE"] == "1"


def test_tcache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "root"))
    monkeypatch.delenv("MIRAGE_TCACHE_DIR", raising=False)
    assert pcache.PersistentCache().dir == tmp_path / "root" / "tcache"
    monkeypatch.setenv("MIRAGE_TCACHE_DIR", str(tmp_path / "scratch"))
    assert pcache.PersistentCache().dir == tmp_path / "scratch"
    assert pcache.cache_root() == tmp_path / "root"  # Nothing else moves
    assert pcache.PersistentCache(root=tmp_path / "x").dir == tmp_path / "x" / "tcache"


def test_stats_summary():
    stats = {"guest_insns": 214079521, "run_seconds": 60.5,
             "jit": {"blocks": 46271, "modules": 3232, "compile_seconds": 32.9, "translate_seconds": 37.6,
                     "promotions": 6102},
             "pcache": {"enabled": True, "dir": "/tmp/t/tcache", "hits": 3000, "misses": 232}}
    s = boot.stats_summary(stats)
    assert s["guest_insns"] == 214079521 and s["blocks"] == 46271 and s["translate_seconds"] == 37.6
    assert s["pcache_enabled"] and s["pcache_hits"] == 3000 and s["pcache_dir"] == "/tmp/t/tcache"
    empty = boot.stats_summary({"pcache": {"enabled": False}})
    assert empty["guest_insns"] is None and not empty["pcache_enabled"]


def test_stats_summary_of_a_real_run(toolchain, tmp_path):
    """Every figure stats_summary shows is found in a real `jit-run --stats` document."""
    from tests.bench import build

    out = tmp_path / "s.json"
    # A cache of its own (no warm set of an earlier run of crc), translations made in the run loop
    # (so some are made however fast the interpreter gets through the small build).
    tc = tmp_path / "tc"
    r = mirage("jit-run", str(build.build_program("crc", "small")), "--no-jit-thread", "--stats", str(out),
               env={"MIRAGE_TCACHE_DIR": str(tc)})
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(out.read_text())
    s = boot.stats_summary(doc)
    assert [k for k, v in s.items() if v is None] == []
    assert s["guest_insns"] == doc["guest_insns"] > 1_000_000 and s["run_seconds"] > 0
    assert s["blocks"] > 0 and s["modules"] > 0 and s["compile_seconds"] > 0 and s["translate_seconds"] > 0
    assert s["pcache_enabled"] and s["pcache_dir"] == str(tc)
    assert s["pcache_hits"] + s["pcache_misses"] == doc["pcache"]["lookups"] > 0


def test_best_of_and_ratios():
    q = boot.best_of("qemu", [boot.Attempt(0.5, 0.6, 0.28, 0), boot.Attempt(0.4, 0.5, 0.27, 0)])
    assert q.status == "ok" and q.runs == 2 and q.total_seconds == 0.5 and q.boot_took == 0.27
    assert q.all_total_seconds == [0.6, 0.5]
    m = boot.best_of("mirage cold", [boot.Attempt(60.0, 61.0, 26.0, 0, {"blocks": 5})])
    bad = boot.BootResult("mirage warm", "error", "no shell prompt after 600 s")
    rows = [q, m, bad]
    boot.add_ratios(rows)
    assert q.ratio == 1.0 and m.ratio == pytest.approx(122.0) and bad.ratio is None
    table = boot.format_table(rows)
    assert "122.00x" in table and "1.00x" in table and "mirage warm" in table
    assert "FAILED (no shell prompt after 600 s)" in table
    stats = boot.format_stats_table(rows)
    body = stats.splitlines()[2:]
    assert body[0].startswith("mirage cold") and not any(line.startswith(("qemu", "mirage warm")) for line in body)


def test_no_ratios_without_qemu():
    rows = [boot.best_of("mirage cold", [boot.Attempt(60.0, 61.0, 26.0, 0)])]
    boot.add_ratios(rows)
    assert rows[0].ratio is None
    assert "-" in boot.format_table(rows).splitlines()[2]


# A stand-in emulator: prints the console, waits for `poweroff -f` and exits with the status it is given
# (holding {mib} MiB of memory it has written to meanwhile).
FAKE = """
import sys
held = bytes(range(256)) * ({mib} << 12)
sys.stdout.buffer.write({console!r}); sys.stdout.flush()
line = sys.stdin.readline()
print(line.strip() == "poweroff -f" and "reboot: Power down" or "unexpected " + line, flush=True)
sys.exit({status})
"""


def test_boot_once_drives_a_child():
    a = boot.boot_once([sys.executable, "-c", FAKE.format(console=CONSOLE, status=0, mib=0)], timeout=30)
    assert a.boot_took == 26.09 and a.returncode == 0 and 0 < a.prompt_seconds <= a.total_seconds
    # The child's own peak resident memory: an interpreter's few MiB, then 96 MiB more.
    assert 1 < a.peak_rss_mib < 96
    big = boot.boot_once([sys.executable, "-c", FAKE.format(console=CONSOLE, status=0, mib=96)], timeout=30)
    assert a.peak_rss_mib + 90 < big.peak_rss_mib < a.peak_rss_mib + 110
    row = boot.best_of("qemu", [a, big])
    assert row.all_peak_rss_mib == [a.peak_rss_mib, big.peak_rss_mib]
    assert row.peak_rss_mib == (a if a.total_seconds <= big.total_seconds else big).peak_rss_mib
    assert f" {row.peak_rss_mib:.0f} " in boot.format_table([row]).splitlines()[2]


def test_boot_once_failures():
    with pytest.raises(boot.BootError, match="exit status 3 after `poweroff -f`"):
        boot.boot_once([sys.executable, "-c", FAKE.format(console=CONSOLE, status=3, mib=0)], timeout=30)
    with pytest.raises(boot.BootError, match="exited with status 0 before the shell prompt.*no prompt here"):
        boot.boot_once([sys.executable, "-c", "print('no prompt here')"], timeout=30)
    with pytest.raises(boot.BootError, match=r"no shell prompt after 1 s \(last console line: booting\)"):
        boot.boot_once([sys.executable, "-c", "import time; print('booting', flush=True); time.sleep(60)"],
                       timeout=1)


def test_every_warm_boot_starts_from_the_cache_one_boot_filled(tmp_path):
    """A warm boot rewrites the warm set and adds modules: the next one must not see them."""
    filled, tc = tmp_path / "filled", tmp_path / "tc"
    (filled / "runs").mkdir(parents=True)
    (filled / "runs" / "k.ws").write_bytes(b"fill")
    assert boot.refill(filled, tc) == tc
    (tc / "runs" / "k.ws").write_bytes(b"after a warm boot")
    (tc / "ab").mkdir()
    (tc / "ab" / "new.obj").write_bytes(b"x")
    boot.refill(filled, tc)
    assert sorted(p.relative_to(tc).as_posix() for p in tc.rglob("*")) == ["runs", "runs/k.ws"]
    assert (tc / "runs" / "k.ws").read_bytes() == b"fill"
