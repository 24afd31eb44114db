"""Per-commit test gate: `mirage gate [REVRANGE]` runs a justfile recipe on every commit of a range.

Rule: every commit on main passes `just test`, not only the tip.

How it works:
- Each commit of the range is checked out with `git worktree add --detach` into its own temporary
  directory (removed afterwards, also on failure or Ctrl-C), and that commit's own `just test`
  (`--recipe NAME` for another recipe) runs there, in its own process group, with `-j N` commits
  at a time. Merge commits are rejected up front: the gate requires linear history.
- Results are remembered per repository (the hash of its root commit), commit hash and recipe under
  `$MIRAGE_CACHE_DIR/gate/` (default `~/.cache/mirage/gate/`), together with each run's log. A
  remembered commit is not run again (`--no-cache` reruns it). Only completed runs are remembered:
  never a run killed by Ctrl-C, a `--timeout` or an infrastructure error.
- REVRANGE uses git's syntax (`A..B`, `X^!`); a single revision means that commit alone.
  Without REVRANGE the range is `origin/main..HEAD` when origin/main exists and differs from HEAD;
  else `BASE..HEAD` when `--base-file` names an ancestor BASE of HEAD; else every commit newer than
  the newest one in HEAD's history with a remembered pass.
- CI, which starts with an empty cache, uses a committed base file instead of remembered results:
  a developer runs `mirage gate`, then `mirage gate --record-base .ci/gate-base` (which writes the
  newest commit with a remembered pass) and commits that file. CI then runs
  `mirage gate --base-file .ci/gate-base --exclude-head --time-budget 2400` to gate the commits
  added on top of the verified one, followed by a full `just test` of HEAD.

Exit status: 0 when every gated commit passed, 1 when one failed (or was skipped by
`--time-budget` without `--allow-skip`), 2 for usage errors, 130 when interrupted.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from runtime.core.pcache import cache_root

TAIL_LINES = 30
KILL_GRACE = 3.0
POLL_INTERVAL = 0.05
RECIPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
HASH_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
# Variables that would point the recipe's own git commands at the wrong repository or index
GIT_ENV_BLOCKLIST = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
)

PASS = "pass"
FAIL = "fail"
SKIPPED = "skipped (time budget)"
ERROR = "error"
INTERRUPTED = "interrupted"
NOT_RUN = "not run (interrupted)"


class GateError(Exception):
    """A one-line error, reported with exit status 2."""


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    subject: str
    parents: tuple[str, ...]

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass
class Outcome:
    status: str
    duration: float | None = None
    cached: bool = False
    timed_out: bool = False
    log: Path | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def label(self) -> str:
        if self.status == FAIL:
            text = "FAIL (timeout)" if self.timed_out else "FAIL"
        else:
            text = self.status
        if self.detail and self.status in (FAIL, ERROR) and not self.timed_out:
            text += f" ({self.detail})"
        return text + (" (cached)" if self.cached else "")


# Git helpers


def _git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise GateError("git not found on PATH") from exc
    if check and proc.returncode != 0:
        raise GateError(f"git {args[0]} failed: {_first_line(proc.stderr)}")
    return proc


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("fatal: ").removeprefix("error: ")
    return "(no message)"


class Repo:
    """The git repository containing the current directory."""

    def __init__(self, cwd: Path) -> None:
        proc = _git(["rev-parse", "--show-toplevel"], cwd, check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise GateError("not inside a git repository")
        self.root = Path(proc.stdout.strip())
        head = self.resolve("HEAD")
        if head is None:
            raise GateError("the repository has no commits yet")
        self.head = head
        roots = _git(["rev-list", "--max-parents=0", "HEAD"], self.root).stdout.split()
        # The root commit identifies the repository across clones; min() is stable with several roots
        self.identity = min(roots)

    def resolve(self, rev: str) -> str | None:
        proc = _git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], self.root, False
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return _git(["merge-base", "--is-ancestor", ancestor, descendant], self.root, False).returncode == 0

    def commits(self, revs: list[str], what: str) -> list[Commit]:
        """The commits selected by `revs` (git log syntax), oldest first."""
        fmt = "--format=%H%x00%P%x00%h%x00%s"
        args = ["-c", "log.showSignature=false", "log", "--reverse", "--topo-order", "--no-color", fmt]
        proc = _git([*args, "--end-of-options", *revs, "--"], self.root, check=False)
        if proc.returncode != 0:
            raise GateError(f"bad revision range '{what}': {_first_line(proc.stderr)}")
        commits = []
        for line in proc.stdout.splitlines():
            sha, parents, short, subject = line.split("\0", 3)
            commits.append(Commit(sha, short, subject, tuple(parents.split())))
        return commits

    def ancestry(self) -> Iterator[str]:
        """HEAD and its ancestors, newest first."""
        yield from _git(["rev-list", "--topo-order", "HEAD"], self.root).stdout.split()

    def describe(self, sha: str) -> str:
        out = _git(["log", "-1", "--no-color", "--format=%h %s", sha], self.root).stdout.strip()
        return out or sha[:12]


# Remembered results


class Cache:
    """Results and logs of one repository and recipe, one file per commit."""

    def __init__(self, repo_id: str, recipe: str) -> None:
        self.dir = cache_root() / "gate" / repo_id
        self.recipe = recipe

    def result_path(self, sha: str) -> Path:
        return self.dir / "results" / self.recipe / f"{sha}.json"

    def log_path(self, sha: str) -> Path:
        return self.dir / "logs" / self.recipe / f"{sha}.log"

    def load(self, sha: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.result_path(sha).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("status") not in (PASS, FAIL):
            return None
        return record

    def status(self, sha: str) -> str | None:
        record = self.load(sha)
        return record["status"] if record else None

    def store(self, sha: str, outcome: Outcome, returncode: int | None) -> None:
        record = {
            "commit": sha,
            "recipe": self.recipe,
            "status": outcome.status,
            "duration": outcome.duration,
            "returncode": returncode,
            "detail": outcome.detail,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self.result_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)

    def outcome(self, sha: str) -> Outcome | None:
        record = self.load(sha)
        if record is None:
            return None
        log = self.log_path(sha)
        return Outcome(
            record["status"],
            record.get("duration"),
            cached=True,
            log=log if log.exists() else None,
            detail=record.get("detail") or "",
        )


# Running one commit


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process exited, leaving it unreaped so its process group id stays reserved."""
    if not hasattr(os, "waitid"):
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _rmtree(path: Path) -> None:
    def make_writable(func: Callable[..., Any], name: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(name, stat.S_IRWXU)
            func(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)


def _find_justfile(directory: Path) -> Path | None:
    for entry in sorted(directory.iterdir()):
        if entry.name.lower() in ("justfile", ".justfile") and entry.is_file():
            return entry
    return None


class Runner:
    """Runs the recipe of single commits in temporary worktrees; safe to call from several threads."""

    def __init__(
        self, repo: Repo, cache: Cache, just: str, recipe: str, timeout: float | None, tmp: Path
    ) -> None:
        self.repo = repo
        self.cache = cache
        self.just = just
        self.recipe = recipe
        self.timeout = timeout
        self.tmp = tmp
        self.stop = threading.Event()
        # Serialises worktree bookkeeping in .git/worktrees
        self.worktree_lock = threading.Lock()

    def run(self, commit: Commit) -> Outcome:
        if self.stop.is_set():
            return Outcome(NOT_RUN)
        worktree = self.tmp / commit.sha[:16]
        start = time.monotonic()
        try:
            with self.worktree_lock:
                if self.stop.is_set():
                    return Outcome(NOT_RUN)
                added = _git(
                    ["worktree", "add", "--detach", str(worktree), commit.sha], self.repo.root, False
                )
            if added.returncode != 0:
                if self.stop.is_set():
                    return Outcome(INTERRUPTED)
                return Outcome(ERROR, detail=f"git worktree add failed: {_first_line(added.stderr)}")
            return self._run_in(commit, worktree, start)
        except Exception as exc:  # A bug or an OS error must not take the whole gate down
            return Outcome(
                INTERRUPTED if self.stop.is_set() else ERROR, detail=f"{type(exc).__name__}: {exc}"
            )
        finally:
            self._remove_worktree(worktree)

    def _run_in(self, commit: Commit, worktree: Path, start: float) -> Outcome:
        log = self.cache.log_path(commit.sha)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in GIT_ENV_BLOCKLIST}
        env.update(PWD=str(worktree), MIRAGE_GATE_COMMIT=commit.sha)
        with open(log, "w", encoding="utf-8", errors="replace") as out:
            out.write(f"# mirage gate: just {self.recipe} at {commit.sha} ({commit.subject})\n")
            out.flush()
            justfile = _find_justfile(worktree)
            if justfile is None:
                out.write("mirage gate: no justfile at this commit\n")
                outcome = Outcome(FAIL, time.monotonic() - start, log=log, detail="no justfile")
                self.cache.store(commit.sha, outcome, None)
                return outcome
            cmd = [self.just, "--justfile", str(justfile), "--working-directory", str(worktree), self.recipe]
            proc = subprocess.Popen(
                cmd,
                cwd=worktree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            reason = self._wait(proc)
            duration = time.monotonic() - start
            if reason == "timeout":
                out.write(f"\nmirage gate: killed after the --timeout of {self.timeout:g}s\n")
        if reason == INTERRUPTED:
            return Outcome(INTERRUPTED, duration, log=log)
        if reason == "timeout":
            # Not remembered: whether it finishes in time depends on the machine's load and the limit
            return Outcome(FAIL, duration, timed_out=True, log=log)
        outcome = Outcome(PASS if proc.returncode == 0 else FAIL, duration, log=log)
        self.cache.store(commit.sha, outcome, proc.returncode)
        return outcome

    def _wait(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Waits for the recipe; kills its process group on timeout or stop, and returns why."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        reason: str | None = None
        signalled_at = 0.0
        killed = False
        while not _exited(proc):
            now = time.monotonic()
            if reason is None:
                if self.stop.is_set():
                    reason = INTERRUPTED
                elif deadline is not None and now >= deadline:
                    reason = "timeout"
                if reason is not None:
                    _killpg(proc.pid, signal.SIGTERM)
                    signalled_at = now
            elif not killed and now - signalled_at >= KILL_GRACE:
                _killpg(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(POLL_INTERVAL)
        # The leader is a zombie until reaped, so its group id cannot have been reused: kill leftovers
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return reason

    def _remove_worktree(self, worktree: Path) -> None:
        with self.worktree_lock:
            removed = _git(["worktree", "remove", "--force", "--force", str(worktree)], self.repo.root, False)
            if removed.returncode != 0 or worktree.exists():
                if worktree.exists():
                    _rmtree(worktree)
                _git(["worktree", "prune"], self.repo.root, False)


# Range selection


def read_base_file(path: Path) -> str | None:
    """The hash on the first line of `path` that is neither blank nor a comment."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            token = line.split()[0]
            return token if HASH_RE.match(token) else None
    return None


def newest_pass(repo: Repo, cache: Cache) -> str | None:
    for sha in repo.ancestry():
        if cache.status(sha) == PASS:
            return sha
    return None


def select_range(
    repo: Repo, cache: Cache, revrange: str | None, base_file: Path | None, note: Callable[[str], None]
) -> tuple[list[Commit], str]:
    """The commits to gate, oldest first, and a description of how they were chosen."""
    if revrange is not None:
        # A single revision means that commit alone; anything else is a range in git's syntax
        single = None if revrange.startswith("^") else repo.resolve(revrange)
        return repo.commits([f"{single}^!" if single else revrange], revrange), revrange
    origin = repo.resolve("refs/remotes/origin/main")
    if origin is not None and origin != repo.head:
        return repo.commits([f"{origin}..{repo.head}"], "origin/main..HEAD"), "origin/main..HEAD"
    if base_file is not None:
        base = read_base_file(base_file)
        base_sha = repo.resolve(base) if base else None
        if base is None:
            note(f"base file {base_file} is missing or names no commit hash; not used")
        elif base_sha is None:
            note(f"base file {base_file} names {base}, which is not a commit here; not used")
        elif not repo.is_ancestor(base_sha, repo.head):
            note(f"base file {base_file} names {base}, which is not an ancestor of HEAD; not used")
        else:
            desc = f"{base_sha[:12]}..HEAD (from {base_file})"
            return repo.commits([f"{base_sha}..{repo.head}"], desc), desc
    if _git(["rev-parse", "--is-shallow-repository"], repo.root, False).stdout.strip() == "true":
        note(
            "shallow clone: older commits are missing, so the range may be too short (git fetch --unshallow)"
        )
    verified = newest_pass(repo, cache)
    if verified is None:
        return repo.commits([repo.head], "HEAD"), "all of HEAD's history (no remembered pass)"
    desc = f"{verified[:12]}..HEAD (newest remembered pass)"
    return repo.commits([f"{verified}..{repo.head}"], desc), desc


# Output helpers


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"[{minutes:02d}:{secs:02d}]"


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(deque(f, maxlen=lines))
    except OSError:
        return []


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treats SIGTERM like Ctrl-C, so a killed gate still cleans up its worktrees."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# The command


@dataclass
class Options:
    revrange: str | None
    recipe: str
    jobs: int
    no_cache: bool
    time_budget: float | None
    allow_skip: bool
    base_file: Path | None
    exclude_head: bool
    timeout: float | None
    list_only: bool
    record_base: Path | None
    progress_interval: float


def _info(message: str) -> None:
    click.echo(f"mirage gate: {message}", err=True)


def _record_base(repo: Repo, cache: Cache, path: Path, recipe: str) -> int:
    verified = newest_pass(repo, cache)
    if verified is None:
        raise GateError(
            f"no commit in HEAD's history has a remembered pass of `just {recipe}`; run `mirage gate` first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# Newest commit known to pass `just {recipe}` (written by `mirage gate --record-base`).\n"
        f"# CI gates only the commits after it: mirage gate --base-file {path} --exclude-head\n"
        f"{verified}\n"
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    click.echo(f"wrote {repo.describe(verified)} to {path}")
    if verified != repo.head:
        newer = len(repo.commits([f"{verified}..{repo.head}"], "HEAD"))
        _info(f"{newer} newer commit(s) have no remembered pass")
    return 0


def _print_list(commits: list[Commit], cache: Cache) -> None:
    for commit in commits:
        outcome = cache.outcome(commit.sha)
        status = "not run" if outcome is None else f"{outcome.status} ({format_duration(outcome.duration)})"
        click.echo(f"{commit.short}  {status:<16}  {commit.subject}")


def _print_report(commits: list[Commit], outcomes: dict[str, Outcome]) -> None:
    rows = [(c, outcomes.get(c.sha, Outcome(NOT_RUN))) for c in commits]
    short_w = max(len("commit"), *(len(c.short) for c in commits))
    label_w = max(len("result"), *(len(o.label()) for _, o in rows))
    click.echo(f"{'commit':<{short_w}}  {'result':<{label_w}}  {'time':>7}  subject")
    for commit, outcome in rows:
        duration = format_duration(outcome.duration)
        click.echo(
            f"{commit.short:<{short_w}}  {outcome.label():<{label_w}}  {duration:>7}  {commit.subject}"
        )
    failing = [(c, o) for c, o in rows if o.status in (FAIL, ERROR)]
    for commit, outcome in failing:
        click.echo(f"\n--- {commit.short} {commit.subject}: {outcome.label()}")
        if outcome.status == ERROR:
            click.echo(f"error: {outcome.detail}")
        if outcome.log is not None:
            click.echo(f"log: {outcome.log}")
            lines = tail(outcome.log)
            if lines:
                click.echo(f"last {len(lines)} lines:")
                click.echo("".join(lines).rstrip("\n"))
    first = next((c for c, o in rows if o.failed), None)
    if first is not None:
        click.echo(f"\nfirst failing commit: {first.short} {first.subject}")


def _schedule(
    runner: Runner,
    pending: deque[Commit],
    outcomes: dict[str, Outcome],
    running: dict[cf.Future[Outcome], tuple[Commit, float]],
    pool: cf.ThreadPoolExecutor,
    opts: Options,
    started: float,
) -> None:
    """Runs the pending commits, `opts.jobs` at a time, reporting progress on stderr."""
    last_progress = time.monotonic()

    def stamp() -> str:
        return _clock(time.monotonic() - started)

    while pending or running:
        while pending and len(running) < opts.jobs:
            if opts.time_budget is not None and time.monotonic() - started >= opts.time_budget:
                for commit in pending:
                    outcomes[commit.sha] = Outcome(SKIPPED)
                click.echo(f"{stamp()} time budget spent: {len(pending)} commit(s) not started", err=True)
                pending.clear()
                break
            commit = pending.popleft()
            click.echo(f"{stamp()} start  {commit.short} {commit.subject}", err=True)
            running[pool.submit(runner.run, commit)] = (commit, time.monotonic())
        if not running:
            break
        wait_for = max(0.0, last_progress + opts.progress_interval - time.monotonic())
        done, _ = cf.wait(running, timeout=wait_for, return_when=cf.FIRST_COMPLETED)
        for future in done:
            commit, _ = running.pop(future)
            outcome = future.result()
            outcomes[commit.sha] = outcome
            duration = format_duration(outcome.duration)
            click.echo(
                f"{stamp()} {outcome.label():<6} {commit.short} ({duration}) {commit.subject}", err=True
            )
        now = time.monotonic()
        if now - last_progress >= opts.progress_interval:
            last_progress = now
            if running:
                busy = ", ".join(f"{c.short} ({format_duration(now - t)})" for c, t in running.values())
                click.echo(f"{stamp()} still running: {busy}", err=True)


def run_gate(opts: Options) -> int:
    """The gate itself; returns the exit status, raises GateError for usage errors."""
    if not RECIPE_RE.match(opts.recipe):
        raise GateError(f"invalid recipe name '{opts.recipe}'")
    if opts.record_base is not None and (opts.revrange is not None or opts.list_only):
        raise GateError("--record-base cannot be combined with REVRANGE or --list")
    repo = Repo(Path.cwd())
    cache = Cache(repo.identity, opts.recipe)
    if opts.record_base is not None:
        return _record_base(repo, cache, opts.record_base, opts.recipe)

    commits, desc = select_range(repo, cache, opts.revrange, opts.base_file, _info)
    if opts.exclude_head:
        commits = [c for c in commits if c.sha != repo.head]
    merges = [c for c in commits if c.is_merge]
    if merges:
        names = ", ".join(f"{c.short} ({c.subject})" for c in merges[:3]) + (
            ", ..." if len(merges) > 3 else ""
        )
        raise GateError(
            f"{desc} contains {len(merges)} merge commit(s): {names}; the gate needs linear history"
        )
    if opts.list_only:
        _info(f"{len(commits)} commit(s) in {desc}")
        _print_list(commits, cache)
        return 0
    just = shutil.which("just")
    if just is None:
        raise GateError("`just` not found on PATH (install it, e.g. `pip install rust-just`)")
    if not commits:
        _info(f"nothing to gate in {desc}")
        return 0

    outcomes: dict[str, Outcome] = {}
    pending: deque[Commit] = deque()
    for commit in commits:
        remembered = None if opts.no_cache else cache.outcome(commit.sha)
        if remembered is not None:
            outcomes[commit.sha] = remembered
        else:
            pending.append(commit)
    _info(
        f"{len(commits)} commit(s) in {desc}: {len(outcomes)} remembered, {len(pending)} to run "
        f"(`just {opts.recipe}`, -j {opts.jobs})"
    )

    started = time.monotonic()
    interrupted = False
    running: dict[cf.Future[Outcome], tuple[Commit, float]] = {}
    with (
        _sigterm_as_interrupt(),
        tempfile.TemporaryDirectory(prefix="mirage-gate-", ignore_cleanup_errors=True) as tmp,
    ):
        runner = Runner(repo, cache, just, opts.recipe, opts.timeout, Path(tmp))
        pool = cf.ThreadPoolExecutor(max_workers=opts.jobs, thread_name_prefix="mirage-gate")
        try:
            _schedule(runner, pending, outcomes, running, pool, opts, started)
        except KeyboardInterrupt:
            interrupted = True
            runner.stop.set()
            _info("interrupted: stopping the running commits and removing their worktrees")
            for future, (commit, _) in running.items():
                outcomes[commit.sha] = future.result()
        finally:
            runner.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        _git(["worktree", "prune"], repo.root, False)

    _print_report(commits, outcomes)
    statuses = [outcomes.get(c.sha, Outcome(NOT_RUN)).status for c in commits]
    passed = statuses.count(PASS)
    failed = statuses.count(FAIL) + statuses.count(ERROR)
    skipped = statuses.count(SKIPPED)
    unfinished = len(statuses) - passed - failed - skipped
    click.echo(
        f"\n{len(commits)} commit(s): {passed} passed, {failed} failed, {skipped} skipped"
        + (f", {unfinished} interrupted" if unfinished else "")
        + f" in {format_duration(time.monotonic() - started)}"
    )
    if interrupted:
        _info("interrupted; runs that did not finish were not remembered")
        return 130
    if skipped and not opts.allow_skip:
        _info(f"{skipped} commit(s) skipped because of --time-budget (--allow-skip accepts that)")
    return 1 if failed or (skipped and not opts.allow_skip) else 0


@click.command("gate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("revrange", required=False)
@click.option("--recipe", default="test", show_default=True, help="Justfile recipe to run at each commit.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Commits to run in parallel.",
)
@click.option("--no-cache", is_flag=True, help="Rerun commits that have a remembered result.")
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Start no commit after this many seconds; the rest are reported as skipped.",
)
@click.option("--allow-skip", is_flag=True, help="Exit 0 even if --time-budget skipped commits.")
@click.option(
    "--base-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Without REVRANGE, gate BASE..HEAD where BASE is the commit named in PATH.",
)
@click.option("--exclude-head", is_flag=True, help="Leave HEAD itself out of the range.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Kill a commit's recipe (its whole process group) after this long; counts as a fail.",
)
@click.option(
    "--list", "list_only", is_flag=True, help="Only list the commits to gate and their remembered results."
)
@click.option(
    "--record-base",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Write the newest commit in HEAD's history with a remembered pass to PATH, and exit.",
)
@click.option("--progress-interval", type=click.FloatRange(min=0.05), default=60.0, hidden=True)
@click.pass_context
def gate(ctx: click.Context, **kwargs: Any) -> None:
    """Run `just test` on every commit of REVRANGE, each in a temporary git worktree.

    REVRANGE uses git's syntax (A..B); a single revision means that commit alone. Results are
    remembered per commit, so verified commits are not run again. Without REVRANGE: origin/main..HEAD if origin/main exists and differs from HEAD, else
    BASE..HEAD with BASE from --base-file, else the commits newer than the newest one with a
    remembered pass. Exits 1 if a commit fails, 2 on usage errors.
    """
    try:
        code = run_gate(Options(**kwargs))
    except GateError as exc:
        click.echo(f"mirage gate: error: {exc}", err=True)
        code = 2
    except KeyboardInterrupt:
        # Before or after running commits: nothing to clean up
        click.echo("mirage gate: interrupted", err=True)
        code = 130
    ctx.exit(code)
