"""Tests of `mirage gate` on throwaway git repositories."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runtime.tools.gate import gate, read_base_file

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = shlex.quote(sys.executable)

# `test` records the commit it ran at in $GATE_RUNS (outside the repo), then passes iff state says ok
JUSTFILE = f"""\
test:
    git rev-parse HEAD >> "$GATE_RUNS"
    {PY} check.py

other:
    echo "other $(git rev-parse HEAD)" >> "$GATE_RUNS"

par:
    {PY} par.py

slow:
    (sleep 60; touch "$GATE_LEFTOVER") & echo $! > "$GATE_BACKGROUND"
    echo $$ > "$GATE_STARTED"; exec sleep 60
"""

CHECK_PY = """\
import sys
state = open("state").read().strip()
print(f"state is {state!r}")
sys.exit(0 if state == "ok" else 1)
"""

# Passes only if another commit runs at the same time: each run drops a file and waits for a second one
PAR_PY = """\
import os, sys, time
d = os.environ["GATE_PAR"]
open(os.path.join(d, str(os.getpid())), "w").close()
deadline = time.time() + 10
while time.time() < deadline:
    if len(os.listdir(d)) >= 2:
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
"""


class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Gate Test")
        self.git("config", "user.email", "gate@example.com")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, message: str, state: str = "ok", justfile: bool = True) -> str:
        files = {"state": state, "message": message, "check.py": CHECK_PY, "par.py": PAR_PY}
        if justfile:
            files["justfile"] = JUSTFILE
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def short(self, sha: str) -> str:
        return self.git("rev-parse", "--short", sha)

    def worktrees(self) -> list[str]:
        out = self.git("worktree", "list", "--porcelain")
        return [line for line in out.splitlines() if line.startswith("worktree ")]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIRAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GATE_RUNS", str(tmp_path / "runs.txt"))
    monkeypatch.setenv("GATE_LEFTOVER", str(tmp_path / "leftover"))
    monkeypatch.setenv("GATE_STARTED", str(tmp_path / "started"))
    monkeypatch.setenv("GATE_BACKGROUND", str(tmp_path / "background"))
    par = tmp_path / "par"
    par.mkdir()
    monkeypatch.setenv("GATE_PAR", str(par))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def repo(env: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    r = Repo(env / "repo")
    monkeypatch.chdir(r.path)
    return r


def run(*args: str) -> Result:
    return CliRunner().invoke(gate, list(args), catch_exceptions=False)


def runs(env: Path) -> list[str]:
    path = env / "runs.txt"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def row(result: Result, repo: Repo, sha: str) -> str:
    """The report table's row of one commit."""
    short = repo.short(sha)
    rows = [line for line in result.stdout.splitlines() if line.startswith(short + " ")]
    assert len(rows) == 1, result.output
    return rows[0]


def test_names_first_failing_commit(repo: Repo, env: Path) -> None:
    c1 = repo.commit("good")
    c2 = repo.commit("break it", state="broken")
    c3 = repo.commit("fix it")
    result = run()
    assert result.exit_code == 1, result.output
    assert runs(env) == [c1, c2, c3]
    assert " pass " in row(result, repo, c1)
    assert " FAIL " in row(result, repo, c2)
    assert " pass " in row(result, repo, c3)
    assert f"first failing commit: {repo.short(c2)} break it" in result.stdout
    # The failing commit's log path and output tail are shown
    log = Path(env / "cache")
    assert str(log) in result.stdout and "state is 'broken'" in result.stdout
    # Progress on stderr, worktrees removed
    assert f"start  {repo.short(c2)}" in result.stderr
    assert repo.worktrees() == [f"worktree {repo.path}"]


def test_first_failing_is_oldest(repo: Repo, env: Path) -> None:
    repo.commit("good")
    c2 = repo.commit("break", state="broken")
    repo.commit("still broken", state="broken2")
    result = run("-j", "2")
    assert result.exit_code == 1
    assert f"first failing commit: {repo.short(c2)} break" in result.stdout


def test_all_passing_exits_zero(repo: Repo, env: Path) -> None:
    repo.commit("one")
    repo.commit("two")
    result = run()
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.stdout
    assert "first failing" not in result.stdout


def test_merge_commit_rejected(repo: Repo, env: Path) -> None:
    c1 = repo.commit("base")
    repo.git("checkout", "-q", "-b", "side")
    (repo.path / "side.txt").write_text("side\n")
    repo.git("add", "side.txt")
    repo.git("commit", "-q", "-m", "side")
    repo.git("checkout", "-q", "main")
    (repo.path / "main.txt").write_text("main\n")
    repo.git("add", "main.txt")
    repo.git("commit", "-q", "-m", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge side", "side")
    result = run()
    assert result.exit_code == 2
    assert "merge commit" in result.stderr and "merge side" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert runs(env) == []
    # Also with an explicit range
    result = run(f"{c1}..HEAD")
    assert result.exit_code == 2 and runs(env) == []


def test_remembered_results_are_reused(repo: Repo, env: Path) -> None:
    c1 = repo.commit("good")
    c2 = repo.commit("bad", state="broken")
    result = run(c1)
    assert result.exit_code == 0 and runs(env) == [c1]
    result = run(f"{c1}..{c2}")
    assert result.exit_code == 1 and runs(env) == [c1, c2]
    # Second run: passes and fails both remembered, nothing runs again
    result = run(c1)
    assert result.exit_code == 0 and "pass (cached)" in row(result, repo, c1)
    result = run()
    assert result.exit_code == 1
    assert "FAIL (cached)" in row(result, repo, c2)
    assert "state is 'broken'" in result.stdout
    assert runs(env) == [c1, c2]
    # --no-cache runs them again
    result = run("--no-cache", f"{c1}..{c2}")
    assert result.exit_code == 1 and runs(env) == [c1, c2, c2]
    assert "cached" not in row(result, repo, c2)


def test_default_range_starts_after_newest_pass(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two")
    assert run().exit_code == 0
    assert len(runs(env)) == 2
    c3 = repo.commit("three")
    c4 = repo.commit("four")
    result = run()
    assert result.exit_code == 0
    assert runs(env)[2:] == [c3, c4]
    assert c2[:12] in result.stderr
    assert run().exit_code == 0 and len(runs(env)) == 4


def test_origin_main_range(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two")
    c3 = repo.commit("three")
    repo.git("update-ref", "refs/remotes/origin/main", c2)
    result = run("--base-file", str(env / "none"))
    assert result.exit_code == 0, result.output
    assert runs(env) == [c3]
    assert "origin/main..HEAD" in result.stderr


def test_jobs_run_in_parallel(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two")
    c3 = repo.commit("three")
    # par.py only passes when two commits run at once
    result = run("-j", "2", "--recipe", "par", "HEAD~2..HEAD")
    assert result.exit_code == 0, result.output
    assert " pass " in row(result, repo, c2) and " pass " in row(result, repo, c3)
    assert len(os.listdir(env / "par")) == 2
    assert repo.worktrees() == [f"worktree {repo.path}"]


def test_jobs_one_is_sequential(repo: Repo, env: Path) -> None:
    # Proves the parallel test above can fail: par.py never sees a partner with -j 1
    repo.commit("one")
    c2 = repo.commit("two")
    repo.commit("three")
    result = run("-j", "1", "--recipe", "par", "--timeout", "0.5", "HEAD~2..HEAD")
    assert result.exit_code == 1
    assert "FAIL (timeout)" in row(result, repo, c2)


def test_other_recipe(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two", state="broken")
    result = run("--recipe", "other", "HEAD")
    assert result.exit_code == 0, result.output
    assert runs(env) == [f"other {c2}"]
    # Results are remembered per recipe: `test` still runs
    result = run("HEAD")
    assert result.exit_code == 1 and runs(env) == [f"other {c2}", c2]


def test_missing_recipe_fails(repo: Repo, env: Path) -> None:
    repo.commit("one")
    result = run("--recipe", "nonexistent", "HEAD")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout


def test_time_budget_zero_skips(repo: Repo, env: Path) -> None:
    c1 = repo.commit("one")
    c2 = repo.commit("two")
    result = run("--time-budget", "0")
    assert result.exit_code == 1
    assert "skipped (time budget)" in row(result, repo, c1)
    assert "skipped (time budget)" in row(result, repo, c2)
    assert "0 passed, 0 failed, 2 skipped" in result.stdout
    assert runs(env) == []
    result = run("--time-budget", "0", "--allow-skip")
    assert result.exit_code == 0
    assert runs(env) == []


def test_time_budget_spares_remembered_commits(repo: Repo, env: Path) -> None:
    c0 = repo.commit("root")
    c1 = repo.commit("one")
    c2 = repo.commit("two")
    assert run(c1).exit_code == 0
    result = run("--time-budget", "0", f"{c0}..{c2}")
    assert result.exit_code == 1
    assert "pass (cached)" in row(result, repo, c1)
    assert "skipped (time budget)" in row(result, repo, c2)
    assert runs(env) == [c1]


def test_base_file_selects_range(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two")
    c3 = repo.commit("three")
    c4 = repo.commit("four")
    base = env / "gate-base"
    base.write_text(f"# Last verified commit\n\n{c2}\n")
    assert read_base_file(base) == c2
    result = run("--base-file", str(base), "--exclude-head")
    assert result.exit_code == 0, result.output
    assert runs(env) == [c3]
    result = run("--base-file", str(base))
    assert result.exit_code == 0
    assert runs(env) == [c3, c4] and "pass (cached)" in row(result, repo, c3)


def test_unusable_base_file_falls_back(repo: Repo, env: Path) -> None:
    c1 = repo.commit("one")
    c2 = repo.commit("two")
    repo.git("checkout", "-q", "-b", "other")
    other = repo.commit("elsewhere")
    repo.git("checkout", "-q", "main")
    base = env / "gate-base"
    base.write_text(f"{other}\n")
    result = run("--base-file", str(base), "--list")
    assert result.exit_code == 0
    assert "not an ancestor of HEAD" in result.stderr
    assert repo.short(c1) in result.stdout and repo.short(c2) in result.stdout
    base.write_text("# only a comment\n")
    result = run("--base-file", str(base), "--list")
    assert "names no commit hash" in result.stderr


def test_record_base(repo: Repo, env: Path) -> None:
    repo.commit("one")
    c2 = repo.commit("two")
    c3 = repo.commit("three", state="broken")
    base = env / "ci" / "gate-base"
    result = run("--record-base", str(base))
    assert result.exit_code == 2 and "no commit" in result.stderr
    assert run().exit_code == 1
    result = run("--record-base", str(base))
    assert result.exit_code == 0, result.output
    text = base.read_text()
    assert text.startswith("#")
    assert read_base_file(base) == c2
    # The recorded base makes CI gate only what follows it
    result = run("--base-file", str(base), "--list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith(repo.short(c3))
    assert len(result.stdout.splitlines()) == 1
    # Committing the file moves HEAD; the newest pass stays the same
    repo.commit("fix")
    assert run("--record-base", str(base)).exit_code == 0
    assert read_base_file(base) == c2


def test_list_shows_remembered_status(repo: Repo, env: Path) -> None:
    c1 = repo.commit("one")
    c2 = repo.commit("two", state="broken")
    assert run(f"{c1}^!").exit_code == 0
    result = run("--list")
    assert result.exit_code == 0
    assert "not run" in row(result, repo, c2)
    assert runs(env) == [c1]
    result = run("--list", c1)
    assert " pass " in row(result, repo, c1)


def test_no_justfile_is_a_fail(repo: Repo, env: Path) -> None:
    c1 = repo.commit("no justfile yet", justfile=False)
    c2 = repo.commit("add justfile")
    result = run()
    assert result.exit_code == 1, result.output
    assert "no justfile" in row(result, repo, c1)
    assert " pass " in row(result, repo, c2)
    assert runs(env) == [c2]


def test_timeout_kills_process_group(repo: Repo, env: Path) -> None:
    sha = repo.commit("slow")
    result = run("--recipe", "slow", "--timeout", "0.3", "--progress-interval", "0.1", "HEAD")
    assert result.exit_code == 1
    assert "FAIL (timeout)" in row(result, repo, sha)
    assert "still running:" in result.stderr
    # The recipe (60 s of sleep) and its background child were killed, not waited for; timeouts
    # are not remembered
    assert not _alive(int((env / "started").read_text()))
    assert not _alive(int((env / "background").read_text()))
    assert not (env / "leftover").exists()
    assert not list((env / "cache").rglob(f"{sha}.json"))
    assert repo.worktrees() == [f"worktree {repo.path}"]


def test_interrupt_removes_worktrees_and_remembers_nothing(repo: Repo, env: Path) -> None:
    sha = repo.commit("slow")
    environ = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, "-c", "from runtime.tools.gate import gate; gate()", "--recipe", "slow", "HEAD"]
    proc = subprocess.Popen(cmd, cwd=repo.path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = env / "started"
    deadline = time.monotonic() + 10
    while not (started.exists() and started.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(started.read_text())
    assert len(repo.worktrees()) == 2
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    assert b"interrupted" in stdout
    assert repo.worktrees() == [f"worktree {repo.path}"]
    assert not list((env / "cache").rglob(f"{sha}.json"))
    assert not _alive(child)


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if status.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_result_record(repo: Repo, env: Path) -> None:
    sha = repo.commit("one")
    assert run("HEAD").exit_code == 0
    files = list((env / "cache" / "gate").glob(f"*/results/test/{sha}.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["status"] == "pass" and record["commit"] == sha and record["returncode"] == 0
    # The repository is identified by its root commit
    assert files[0].parents[2].name == sha


def test_not_a_git_repository(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(env.parent))
    result = run()
    assert result.exit_code == 2
    assert result.stderr.strip() == "mirage gate: error: not inside a git repository"


def test_bad_revision_range(repo: Repo, env: Path) -> None:
    repo.commit("one")
    for bad in ("nosuchbranch..HEAD", "nosuchcommit"):
        result = run(bad)
        assert result.exit_code == 2
        assert "bad revision range" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_just_not_on_path(repo: Repo, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.commit("one")
    bin_dir = env / "bin"
    bin_dir.mkdir()
    git = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    (bin_dir / "git").symlink_to(git)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = run()
    assert result.exit_code == 2
    assert "`just` not found on PATH" in result.stderr
    assert runs(env) == []
