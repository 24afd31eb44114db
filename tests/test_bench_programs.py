"""The bare-metal CPU benchmarks (tests/bench) build, pass their self-check on QEMU, and fail it when
the expected checksum is corrupted; the benchmark runner handles working and failing Mirage commands."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    from tests.bench import build, run
except ImportError:  # Plain `pytest` puts tests/ rather than the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.bench import build, run

# A missing QEMU fails these tests (tests/conftest.py): `just setup` installs it.
needs_qemu = pytest.mark.usefixtures("qemu")


def _expected_line(name: str) -> str:
    """The exact result line of the "small" build, from the constants in the program's source."""
    src = (build.SRC_DIR / f"{name}.c").read_text()
    iters = re.search(r"^#define ITERS_SMALL (\d+)$", src, re.MULTILINE)
    expected = re.search(r"^#define EXPECTED_SMALL 0x([0-9a-f]{16})ULL$", src, re.MULTILINE)
    assert iters and expected, f"{name}.c lacks ITERS_SMALL / EXPECTED_SMALL"
    return f"{name}: iters={iters.group(1)} checksum=0x{expected.group(1)} OK"


def _run_qemu(elf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run.qemu_command(elf), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )


@needs_qemu
@pytest.mark.parametrize("name", build.PROGRAMS)
def test_program_passes_on_qemu(name: str) -> None:
    elf = build.build_all("small")[name]
    proc = _run_qemu(elf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [_expected_line(name)]


@needs_qemu
@pytest.mark.parametrize("mode", ["sv39-2M", "sv39-4K"])
def test_sv39_builds_pass_on_qemu(mode: str) -> None:
    elf = build.build_program("intkernel", "small", run.MODES[mode])
    proc = _run_qemu(elf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [_expected_line("intkernel")]


@needs_qemu
@pytest.mark.parametrize("name", build.PROGRAMS)
def test_corrupted_checksum_fails_on_qemu(name: str) -> None:
    elf = build.build_program(name, "small", ("FORCE_FAIL",))
    proc = _run_qemu(elf)
    # The finisher's FAIL code becomes QEMU's exit status.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.fullmatch(
        rf"{name}: iters=\d+ checksum=0x[0-9a-f]{{16}} FAIL expected=0x[0-9a-f]{{16}}\n", proc.stdout
    )


@needs_qemu
def test_empty_program_exits_cleanly() -> None:
    proc = _run_qemu(build.build_empty())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


@needs_qemu
def test_qemu_instruction_count_is_exact() -> None:
    # Two icount runs must agree: the runner relies on this when Mirage provides no count.
    counts = {run.qemu_count_insns("fpkernel", "small", timeout=30) for _ in range(2)}
    assert len(counts) == 1
    (count,) = counts
    assert count is not None and 500_000 < count < 5_000_000


def test_build_cache_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path))
    first = build.build_program("empty", "small")
    assert first.parent == tmp_path / "bench" and first.is_file()
    mtime = first.stat().st_mtime_ns
    assert build.build_program("empty", "small") == first
    assert first.stat().st_mtime_ns == mtime
    # A different macro set is a different cache entry.
    assert build.build_program("empty", "small", ("FORCE_FAIL",)) != first


def test_missing_cross_compiler_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build.CROSS_CC_ENV, "no-such-riscv64-gcc")
    with pytest.raises(build.BenchBuildError, match="apt-get install gcc-riscv64-linux-gnu"):
        build.build_all("small")


FAKE_MIRAGE = """
import json, subprocess, sys, time
elf, stats = sys.argv[1], sys.argv[sys.argv.index("--stats") + 1]
start = time.perf_counter()
proc = subprocess.run(QEMU_CMD + ["-kernel", elf], stdin=subprocess.DEVNULL, capture_output=True, text=True)
sys.stdout.write(proc.stdout)
with open(stats, "w") as f:
    json.dump({"guest_insns": 1000000, "run_seconds": time.perf_counter() - start,
               "jit": {"blocks": 7, "modules": 3, "compile_seconds": 0.25}}, f)
sys.exit(proc.returncode)
"""


@needs_qemu
def test_runner_with_fake_mirage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "fake_mirage.py"
    qemu_cmd = [run.QEMU, *run.QEMU_ARGS]
    script.write_text(f"QEMU_CMD = {qemu_cmd!r}\n" + textwrap.dedent(FAKE_MIRAGE))
    out_json = tmp_path / "out.json"
    rc = run.main(
        [
            "--size=small",
            "--repeat=1",
            f"--mirage-cmd={shlex.quote(sys.executable)} {shlex.quote(str(script))}",
            f"--json={out_json}",
        ]
    )
    table = capsys.readouterr().out
    assert rc == 0, table
    doc = json.loads(out_json.read_text())
    assert [p["name"] for p in doc["programs"]] == list(build.PROGRAMS)
    for prog in doc["programs"]:
        assert prog["qemu"]["status"] == "ok" and prog["mirage"]["status"] == "ok"
        assert prog["guest_insns"] == 1000000 and prog["insns_source"] == "mirage"
        assert prog["mirage"]["stats"]["jit"]["modules"] == 3
        assert prog["mirage"]["seconds"] > 0 and prog["mirage"]["mips"] is not None
        # A ratio exists exactly when QEMU's run was long enough to time (small runs usually are not).
        assert (prog["qemu"]["mips"] is None) == (prog["ratio"] is None)
    assert "FAILED" not in table


@needs_qemu
def test_runner_on_mirage_crc_and_fpkernel(toolchain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The runner with the real Mirage on crc and fpkernel (small builds; intkernel runs in
    tests/test_smode.py): both pass their self-checks, and what the runner reads from Mirage's own
    --stats file holds: the instruction count agrees with QEMU's -icount count, JIT figures exist."""
    out_json = tmp_path / "out.json"
    # Translations made in the run loop: the small builds may end before the worker thread's first
    # translation goes in on a busy machine, and this checks that JIT figures are read.
    rc = run.main(["--size=small", "--repeat=1", "--only=crc", "--only=fpkernel", "--qemu-icount",
                   "--require-mirage", f"--json={out_json}", f"--mirage-cmd={run.DEFAULT_MIRAGE_CMD} --no-jit-thread"])
    table = capsys.readouterr().out
    assert rc == 0, table
    doc = json.loads(out_json.read_text())
    assert [p["name"] for p in doc["programs"]] == ["crc", "fpkernel"]
    for prog in doc["programs"]:
        assert prog["qemu"]["status"] == "ok" and prog["mirage"]["status"] == "ok", prog
        assert prog["insns_source"] == "mirage"
        # QEMU's count ends at the guest's minstret read before the exit (the runner's tolerance).
        assert abs(prog["guest_insns"] - prog["qemu"]["stats"]["icount_insns"]) <= 1000, prog
        jit = prog["mirage"]["stats"]["jit"]
        assert jit["blocks"] > 0 and jit["modules"] > 0 and jit["compile_seconds"] > 0
        assert prog["mirage"]["seconds"] == prog["mirage"]["stats"]["run_seconds"] > 0
    assert "FAILED" not in table


@needs_qemu
def test_runner_survives_broken_mirage(capsys: pytest.CaptureFixture[str]) -> None:
    broken = f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(\"mirage exploded\")'"
    rc = run.main(["--size=small", "--repeat=1", "--only=crc", f"--mirage-cmd={broken}"])
    table = capsys.readouterr().out
    assert rc == 0, table
    assert "mirage: FAILED (exit status 1, no result line: mirage exploded)" in table
    # The instruction count then comes from QEMU.
    assert re.search(r"^crc\s+\d+\.\d+M \|", table, re.MULTILINE), table
    assert "FAILED: " not in table
    assert (
        run.main(["--size=small", "--repeat=1", "--only=crc", f"--mirage-cmd={broken}", "--require-mirage"])
        == 1
    )


@needs_qemu
def test_runner_reports_self_check_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A "Mirage" whose guest computes a wrong checksum must make the runner exit nonzero.
    script = tmp_path / "wrong_mirage.py"
    script.write_text(
        "import sys\n"
        "print('crc: iters=8 checksum=0x0000000000000000 FAIL expected=0x1111111111111111')\n"
        "sys.exit(1)\n"
    )
    rc = run.main(["--size=small", "--repeat=1", "--only=crc", f"--mirage-cmd={sys.executable} {script}"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED: crc on mirage: crc: iters=8 checksum=0x0000000000000000 FAIL" in out
