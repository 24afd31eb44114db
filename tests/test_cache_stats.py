"""Translation statistics (`jit-run --stats`, `mirage cache stats`) and the persistent cache,
checked against programs whose behaviour is known."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile

from runtime.frontends.cli import main
from tests.conftest import ROOT
from tests.guest import build as guest_build

# 1000 iterations of a three-instruction self-loop; `j loop` makes the loop block start at `loop`.
LOOP = r"""
  la t0, trap
  csrw mtvec, t0
  li a0, 0
  li a1, 1000
  j loop
loop:
  add a0, a0, a1
  addi a1, a1, -1
  bnez a1, loop
  li t1, 500500
  bne a0, t1, bad
  PASS
bad: FAIL 2
trap: FAIL 7
"""

# Rewrites the instruction at `patch` N times (addi a0, zero, k for k = N..1), each time followed
# by fence.i and a call. `patch` is translated and run once first, so every rewrite drops it.
N_WRITES = 5
SMC = rf"""
  la t0, trap
  csrw mtvec, t0
  li s0, {N_WRITES}
  li s2, 0
  la s1, patch
  jal ra, patch
  add s2, s2, a0
loop:
  slli t0, s0, 20
  li t1, 0x513
  or t0, t0, t1
  sw t0, 0(s1)
  fence.i
  jal ra, patch
  add s2, s2, a0
  addi s0, s0, -1
  bnez s0, loop
  li t1, {N_WRITES * (N_WRITES + 1) // 2}
  bne s2, t1, bad
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

# Firmware mrets to S-mode, which turns Sv39 on (a 1 GiB identity page over the program), runs a
# loop, and turns it off again: two satp changes and two sfence.vma.
SATP = guest_build.to_s_mode() + guest_build.SV39_ON + r"""
  li a0, 0
  li a1, 10
1: add a0, a0, a1
  addi a1, a1, -1
  bnez a1, 1b
  csrw satp, zero
  sfence.vma
  li t0, 55
  bne a0, t0, bad
  PASS
bad: FAIL 2
trap: FAIL 7
  .data
  .align 12
pt:
  .dword 0, 0, 0x200000CF
  .fill 509, 8, 0
"""


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MIRAGE_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "runtime", *args], capture_output=True, env=env, cwd=ROOT,
                          timeout=120)


def run_stats(elf: Path, tmp: Path, *opts: str, cache: Path | None = None, name: str = "s.json",
              warm: int = 0) -> dict:
    """Runs with statistics; every block translated on its first execution unless `warm` > 0
    (these tests count the translated tiers' work)."""
    out = tmp / name
    r = run("jit-run", "--max-insns", "10000000", "--stats", str(out), "--warm-threshold", str(warm), *opts,
            str(elf), cache=cache or tmp / "cache")
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(out.read_text())


def symbol(elf: Path, name: str) -> int:
    with open(elf, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
    return sym[0]["st_value"]


def block_at(doc: dict, pc: int) -> dict:
    found = [b for b in doc["hot_blocks"] if b["pc"] == pc]
    assert len(found) == 1, doc["hot_blocks"]
    return found[0]


@pytest.fixture(scope="module")
def loop_run(toolchain, tmp_path_factory):
    """The loop program, optimized at once (--hot-threshold 0): (elf, stats, stats file, cache dir)."""
    from tests.guest import build

    elf = build.build(LOOP)
    tmp = tmp_path_factory.mktemp("loop")
    doc = run_stats(elf, tmp, "--hot-threshold", "0")
    return elf, doc, tmp / "s.json", tmp / "cache"


def test_loop_counts_at_tier_1(loop_run):
    elf, doc, _, cache = loop_run
    assert doc["schema"] == "mirage-stats" and doc["version"] == 2
    for key in ("guest_insns", "run_seconds"):
        assert doc[key] > 0
    for key in ("blocks", "modules", "compile_seconds"):
        assert doc["jit"][key] > 0
    loop = block_at(doc, symbol(elf, "loop"))
    assert loop["insns"] == 3 and loop["tier"] == 1
    # One entry, then 999 back edges inside the function.
    assert loop["executions"] == 1000
    assert loop["entries"] == 1 and loop["iterations"] == 999
    # Executed blocks: set-up to csrw, the two li and j, the loop, and the check ending in PASS.
    executed = [b for b in doc["hot_blocks"] if b["executions"]]
    assert len(executed) == 4
    assert sorted(b["executions"] for b in executed) == [1, 1, 1, 1000]
    tr = doc["transitions"]
    assert tr["executions"] == 1003 and tr["loop_iterations"] == 999
    assert tr["chained"] + tr["dispatched"] + tr["loop_iterations"] == tr["executions"]
    assert doc["jit"]["tiers"]["0"]["blocks"] == 0
    assert doc["jit"]["modes"]["M"]["blocks"] == doc["jit"]["blocks"]
    assert doc["jump_cache"]["lookups"] == doc["jump_cache"]["hits"] + doc["jump_cache"]["misses"] > 0
    assert doc["block_table"]["lookups"] == doc["jump_cache"]["misses"]
    # Every run is also the last run.
    assert json.loads((cache / "last-stats.json").read_text())["hot_blocks"] == doc["hot_blocks"]


def test_loop_counts_across_promotion(loop_run, tmp_path):
    elf = loop_run[0]
    doc = run_stats(elf, tmp_path, "--hot-threshold", "200", "--no-jit-thread")
    loop = block_at(doc, symbol(elf, "loop"))
    # 199 executions at tier 0, the 200th count hands it back for promotion, 801 at tier 1.
    assert loop["executions"] == 1000
    assert loop["translations"] == 2 and loop["tier"] == 1
    assert doc["jit"]["promotions"] >= 1
    assert doc["jit"]["tiers"]["0"]["blocks"] > 0 and doc["jit"]["tiers"]["1"]["blocks"] >= 1
    assert doc["transitions"]["executions"] == 1003


def test_background_promotion_counts_every_execution(toolchain, tmp_path):
    """The loop is recompiled in the worker thread while it goes on at tier 0; the tier-1 code
    takes over mid-run and no execution is lost or repeated."""
    from tests.guest import build

    n = 30_000_000  # Long enough (tenths of a second) for the background compile to land
    elf = build.build(LOOP.replace("li a1, 1000", f"li a1, {n}").replace("li t1, 500500", f"li t1, {n * (n + 1) // 2}"))
    doc = run_stats(elf, tmp_path, "--hot-threshold", "200", "--jit-thread", "--max-insns", str(4 * n))
    loop = block_at(doc, symbol(elf, "loop"))
    assert loop["translations"] == 2 and loop["tier"] == 1
    assert loop["executions"] == n
    assert doc["jit"]["promotions"] >= 1 and doc["jit"]["tiers"]["1"]["blocks"] >= 1
    assert doc["transitions"]["executions"] == n + 3


def test_code_writes_are_counted(toolchain, tmp_path):
    from tests.guest import build

    elf = build.build(SMC)
    doc = run_stats(elf, tmp_path)
    assert doc["invalidations"]["code-write"] == N_WRITES
    assert doc["invalidations"]["fence.i"] == N_WRITES == doc["fence_i"]
    patch = block_at(doc, symbol(elf, "patch"))
    assert patch["translations"] == N_WRITES + 1
    assert patch["executions"] == N_WRITES + 1


def test_satp_switches_are_counted(toolchain, tmp_path):
    from tests.guest import build

    elf = build.build(SATP)
    doc = run_stats(elf, tmp_path)
    assert doc["invalidations"]["satp"] == 2
    assert doc["invalidations"]["sfence.vma"] == 2
    assert doc["jit"]["modes"]["S"]["blocks"] > 0
    assert doc["vfm"]["mret"] == 1


def test_persistent_cache_hits_rejects_and_clears(loop_run, tmp_path):
    elf = loop_run[0]
    cache = tmp_path / "cache"
    cold = run_stats(elf, tmp_path, cache=cache, name="cold.json")
    assert cold["pcache"]["enabled"] and cold["pcache"]["hits"] == 0
    modules = sum(t["modules"] for t in cold["jit"]["tiers"].values())
    assert cold["pcache"]["writes"] >= modules > 0
    warm = run_stats(elf, tmp_path, cache=cache, name="warm.json")
    assert warm["pcache"]["hits"] == warm["pcache"]["lookups"] > 0
    assert warm["pcache"]["misses"] == 0
    assert sum(t["compiled"] for t in warm["jit"]["tiers"].values()) == 0
    assert sum(t["cached"] for t in warm["jit"]["tiers"].values()) == modules
    assert warm["hot_blocks"] == cold["hot_blocks"]

    # A corrupted entry is rejected (and compiled anew), the others still hit.
    entries = sorted((cache / "tcache").glob("*/*.obj"))
    assert len(entries) == cold["pcache"]["writes"]
    data = bytearray(entries[0].read_bytes())
    data[-20] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    again = run_stats(elf, tmp_path, cache=cache, name="again.json")
    assert again["pcache"]["rejected"] == 1 and again["pcache"]["writes"] == 1
    assert again["pcache"]["hits"] == modules - 1
    # Its blocks were in the last run's warm set: not installed from there, translated anew.
    assert again["warm_start"]["failed"] >= 1 and again["warm_start"]["restored"] > 0

    # A truncated one too.
    entries[1].write_bytes(entries[1].read_bytes()[:30])
    assert run_stats(elf, tmp_path, cache=cache, name="trunc.json")["pcache"]["rejected"] == 1

    r = run("cache", "info", "--json", cache=cache)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["entries"] == len(entries)
    r = run("cache", "clear", cache=cache)
    assert r.returncode == 0 and f"removed {len(entries)} entries".encode() in r.stdout
    assert not list((cache / "tcache").glob("*/*.obj"))
    assert json.loads(run("cache", "info", "--json", cache=cache).stdout)["entries"] == 0

    off = run_stats(elf, tmp_path, "--no-pcache", cache=cache, name="off.json")
    assert off["pcache"] == {"enabled": False}
    assert not list((cache / "tcache").glob("*/*.obj"))


def test_persistent_cache_rejects_unusable_entries(toolchain, tmp_path):
    """Entries that are whole and checksummed but cannot be used are rejected and compiled anew: one
    whose object LLVM cannot link, one with another magic, one that holds another module's key."""
    from runtime.core import pcache
    from tests.guest import build

    elf = build.build(SATP)
    cache = tmp_path / "cache"
    cold = run_stats(elf, tmp_path, cache=cache, name="cold.json")
    entries = sorted((cache / "tcache").glob("*/*.obj"))
    assert len(entries) == cold["pcache"]["writes"] >= 4

    def fields(path: Path) -> tuple[list, bytes]:
        data = path.read_bytes()
        return list(pcache.HEADER.unpack_from(data)), data[pcache.HEADER.size:]

    def write(path: Path, header: list, obj: bytes) -> None:
        path.write_bytes(pcache.HEADER.pack(*header) + obj)

    # Not an object LLVM can link, with a matching checksum: only linking finds out.
    header, obj = fields(entries[0])
    junk = b"\x7fELF" + bytes(len(obj) - 4)
    header[2] = hashlib.sha256(junk).digest()
    write(entries[0], header, junk)
    # Another format's magic.
    header, obj = fields(entries[1])
    header[0] = b"MIRPC\x00\x00\n"
    write(entries[1], header, obj)
    # Another module's entry under this key.
    entries[2].write_bytes(entries[3].read_bytes())
    warm = run_stats(elf, tmp_path, cache=cache, name="warm.json")
    assert warm["pcache"]["rejected"] == 3 and warm["pcache"]["writes"] == 3
    modules = sum(t["modules"] for t in cold["jit"]["tiers"].values())
    assert warm["pcache"]["hits"] == modules - 3 and warm["warm_start"]["failed"] > 0
    assert warm["hot_blocks"] == cold["hot_blocks"]
    # Rewritten: the next run links everything.
    again = run_stats(elf, tmp_path, cache=cache, name="again.json")
    assert again["pcache"]["hits"] == again["pcache"]["lookups"] and again["pcache"]["rejected"] == 0


@pytest.fixture
def fresh_environment():
    """pcache's environment is computed once per process: recomputed around a test that changes it."""
    from runtime.core import pcache

    pcache.environment.cache_clear()
    pcache.translator_version.cache_clear()
    yield pcache
    pcache.environment.cache_clear()
    pcache.translator_version.cache_clear()


def test_pcache_key_follows_translator_llvm_and_host_cpu(fresh_environment, monkeypatch, tmp_path):
    import llvmlite.binding as llvm

    import translator

    pcache = fresh_environment

    def key() -> str:
        pcache.environment.cache_clear()
        pcache.translator_version.cache_clear()
        return pcache.PersistentCache(tmp_path).key("define void @f() {\n  ret void\n}\n", "opt=2 ir_opt=None")

    base = key()
    assert key() == base
    keys = {}
    with monkeypatch.context() as m:
        # A copy of the translator's sources with one emitter changed
        copy = tmp_path / "translator"
        shutil.copytree(Path(translator.__file__).parent, copy)
        emitter = sorted((copy / "emit").glob("*.py"))[0]
        emitter.write_text(emitter.read_text() + "\n# changed\n")
        m.setattr(translator, "__file__", str(copy / "__init__.py"))
        keys["translator"] = key()
    with monkeypatch.context() as m:
        m.setattr(llvm, "llvm_version_info", (99, 0, 0))
        keys["llvm"] = key()
    with monkeypatch.context() as m:
        m.setattr(llvm, "get_host_cpu_name", lambda: "another-cpu")
        keys["cpu"] = key()
    assert key() == base
    assert len({base, *keys.values()}) == 4, keys


def test_default_cache_is_under_home(loop_run, tmp_path):
    """Without $MIRAGE_CACHE_DIR (the tests set one per session, tests/conftest.py), a run keeps its
    compiled code in ~/.cache/mirage/tcache and its statistics in ~/.cache/mirage/last-stats.json,
    and the next run links that code; ~ is a scratch home here, the user's cache is left alone."""
    elf = loop_run[0]
    home = tmp_path / "home"
    root = home / ".cache" / "mirage"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MIRAGE_CACHE_DIR", "MIRAGE_TCACHE_DIR", "MIRAGE_IMAGES_DIR", "MIRAGE_NO_PCACHE")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))

    def jit_run() -> dict:
        r = subprocess.run([sys.executable, "-m", "runtime", "jit-run", "--max-insns", "10000000",
                            "--warm-threshold", "0", str(elf)],
                           capture_output=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr.decode()
        return json.loads((root / "last-stats.json").read_text())

    cold = jit_run()
    assert cold["pcache"]["dir"] == str(root / "tcache")
    assert cold["pcache"]["hits"] == 0 and cold["pcache"]["writes"] > 0
    assert len(list((root / "tcache").glob("*/*.obj"))) == cold["pcache"]["writes"]
    warm = jit_run()
    assert warm["pcache"]["hits"] == warm["pcache"]["lookups"] == cold["pcache"]["writes"]
    r = subprocess.run([sys.executable, "-m", "runtime", "cache", "info", "--json"], capture_output=True,
                       env=env, cwd=ROOT, timeout=60)
    assert json.loads(r.stdout)["dir"] == str(root / "tcache")


def test_pcache_eviction_keeps_the_bound(tmp_path):
    from runtime.core.pcache import PersistentCache
    from translator.jit import Engine

    # A real object (entries are checked as such when read), padded to 2000 bytes.
    obj = Engine().emit_object("define void @f() {\n  ret void\n}\n")
    obj += bytes(2000 - len(obj))
    pc = PersistentCache(tmp_path, max_bytes=10_000)
    keys = [pc.key(f"module {i}", "v") for i in range(8)]
    for i, k in enumerate(keys):
        pc.put(k, obj, 100, 0.5)
        os.utime(pc.path(k), (1000 + i, 1000 + i))
    assert pc.trim() > 0
    left = pc.entries()
    assert sum(e.size for e in left) <= 9000
    # The most recently used survive.
    assert pc.get(keys[-1]) == (obj, 100)
    assert pc.get(keys[0]) is None
    assert pc.stats.hits == 1 and pc.stats.misses == 1 and pc.stats.rejected == 0


def test_cache_stats_shows_hot_block_disassembly(loop_run, monkeypatch):
    _, doc, path, cache = loop_run
    r = CliRunner().invoke(main, ["cache", "stats", str(path)])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "Hottest blocks" in out and "Invalidations" in out and "Persistent translation cache" in out
    # The loop block, disassembled from the bytes saved in the stats (rv64gc: compressed forms).
    loop_pc = next(b["pc"] for b in doc["hot_blocks"] if b["executions"] == 1000)
    assert f"#1 block at {loop_pc:#x}" in out
    assert "c.add a0, a1" in out and "c.addi a1, -1" in out
    assert f"c.bnez a1, -4  # {loop_pc:#x}" in out

    # Without FILE: the last run's.
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(cache))
    r = CliRunner().invoke(main, ["cache", "stats", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["hot_blocks"] == doc["hot_blocks"]

    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(cache / "nothing-here"))
    r = CliRunner().invoke(main, ["cache", "stats"])
    assert r.exit_code == 2 and "no statistics yet" in r.output


def test_cache_stats_plot_writes_png(loop_run, tmp_path):
    path = loop_run[2]
    png = tmp_path / "out.png"
    r = CliRunner().invoke(main, ["cache", "stats", str(path), "--plot", str(png), "--json"])
    assert r.exit_code == 0, r.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300
    assert data[-8:-4] == b"IEND"


def test_stats_show_the_interpreter(loop_run, tmp_path):
    """With the interpreter on (warm threshold 300), the loop's 1,000 iterations start interpreted
    and its head is translated: the document counts the interpreted instructions, the warmed head
    and the time split, and `cache stats` shows them, in its tables and its plot."""
    elf = loop_run[0]
    doc = run_stats(elf, tmp_path, "--no-jit-thread", warm=300)
    it = doc["interpreter"]
    assert it["enabled"] and it["warm_threshold"] == 300
    assert it["heads_warmed"] >= 1 and it["blocks_translated"] >= 1
    assert 300 * 3 <= it["insns"] < doc["guest_insns"]
    t = doc["time"]
    assert t["interpreter"] > 0 and t["compiled"] >= 0 and t["python"]["warm"] > 0
    r = run("cache", "stats", str(tmp_path / "s.json"), "--plot", str(tmp_path / "p.png"), cache=tmp_path / "c")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    assert "Interpreter (cold tier)" in out and f"{it['insns']:,}" in out
    assert "Host time of the run loop" in out and "python: warm" in out
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
