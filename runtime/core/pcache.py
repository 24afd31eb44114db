"""Persistent translation cache: the object code of compiled modules, kept across runs.

Where: `<root>/tcache/<k[:2]>/<k>.obj`, root being $MIRAGE_CACHE_DIR or ~/.cache/mirage, and k the
hex SHA-256 of
  * the environment: the translator's version (a hash of translator/*.py and translator/emit/*.py),
    LLVM's version, the host CPU's name and features;
  * the codegen variant (LLVM levels the engine compiles the module with);
  * the module's IR text, which spells out the guest pcs, flags, tier and every instruction.
Generated code embeds no address of the process that compiled it (callouts, the dispatcher and
the FP slow path are imported symbols; RAM and hart state are reached through the hart pointer),
so an object compiled in one run links into another.

$MIRAGE_TCACHE_DIR, if set, replaces `<root>/tcache` and moves nothing else (images, statistics
and the gate's results stay under the root): `just bench-boot` points it at a scratch directory
so its warm runs leave the user's cache alone.

An entry: MAGIC (8 bytes) | key (32) | SHA-256 of the object (32) | bytes of machine code (u64) |
seconds its compilation took (f64) | the object file. One that is truncated, has another magic
or key, whose object fails its checksum or is not a well-formed object for this host
(runtime/core/objcheck.py: LLVM would abort on it) is rejected: counted, deleted and compiled anew (as
is one that the JIT fails to link). Entries are written to a temporary file and renamed into
place, so concurrent runs never read a partial one. A hit refreshes the entry's mtime; after a
run that wrote entries the cache is trimmed to 90% of its bound (1 GiB) from the least recently
used end.

A run's warm set: `<root>/tcache/runs/<k>.ws`, k the hex SHA-256 of the environment and of what
identifies the run (the program's files, the machine, the translation options: `run_key`) and
of RUN_VERSION. It lists every block and region the run translated, by guest address, physical address, flags and guest bytes,
with the cache entry and symbols of its code, so that the next run with the same key installs
those translations without building IR (runtime/core/tcache.py `load_warm_set`); each is checked
against the guest bytes in memory before it is installed. A file: RUN_MAGIC (8 bytes) | SHA-256
of the rest (32) | zlib-compressed JSON {version, key, modules, blocks}. One that is truncated,
has another magic or key, fails its checksum or does not parse is rejected (counted, deleted)
and the run starts cold. At most MAX_RUNS files are kept, the least recently used go first.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import struct
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.core import objcheck

MAGIC = b"MIRPC\x00\x01\n"
HEADER = struct.Struct("<8s32s32sQd")
DEFAULT_MAX_BYTES = 1 << 30
SUFFIX = ".obj"
RUN_MAGIC = b"MIRWS\x00\x01\n"
# The warm set's format (version 2: regions are kept); part of its key, so that a run never finds
# one of another format.
RUN_VERSION = 2
RUNS = "runs"
RUN_SUFFIX = ".ws"
MAX_RUNS = 64


def cache_root() -> Path:
    """Mirage's cache directory: $MIRAGE_CACHE_DIR, else ~/.cache/mirage."""
    env = os.environ.get("MIRAGE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mirage"


def tcache_dir() -> Path:
    """The persistent translation cache's directory: $MIRAGE_TCACHE_DIR, else <cache_root()>/tcache."""
    env = os.environ.get("MIRAGE_TCACHE_DIR")
    return Path(env) if env else cache_root() / "tcache"


@functools.cache
def translator_version() -> str:
    """A hash of the translator's sources: any change to how IR or code is made starts afresh."""
    import translator

    base = Path(translator.__file__).parent
    h = hashlib.sha256()
    for path in sorted([*base.glob("*.py"), *base.glob("emit/*.py")]):
        h.update(path.relative_to(base).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def environment() -> str:
    """What, besides the IR text, decides the object code: translator, LLVM and host CPU."""
    import llvmlite
    import llvmlite.binding as llvm

    from translator import jit

    jit._init()
    features = llvm.get_host_cpu_features().flatten()
    return (f"translator={translator_version()} llvm={'.'.join(map(str, llvm.llvm_version_info))} "
            f"llvmlite={llvmlite.__version__} cpu={llvm.get_host_cpu_name()} features={features}")


@dataclass
class PcacheStats:
    lookups: int = 0
    hits: int = 0
    misses: int = 0  # Lookups that found no usable entry (rejected ones included)
    rejected: int = 0  # Entries found unreadable, corrupt, mismatching or unlinkable
    writes: int = 0
    write_errors: int = 0
    bytes_written: int = 0
    evicted: int = 0
    skipped: int = 0  # Modules of code that keeps changing, neither looked up nor written
    seconds_saved: float = 0.0  # Compile seconds the hits' entries took when they were made
    run_loaded: bool = False  # A warm set for this run was found and read
    runs_rejected: int = 0  # Warm sets found unreadable, corrupt or mismatching
    run_saved: bool = False


@dataclass
class Entry:
    path: Path
    size: int
    mtime: float


class PersistentCache:
    """The object cache an Engine consults (see translator.jit.Engine.object_cache)."""

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.dir = root / "tcache" if root is not None else tcache_dir()
        self.max_bytes = max_bytes
        self.stats = PcacheStats()
        self._env: bytes | None = None
        self._tmp = itertools.count()
        self._put_lock = threading.Lock()
        self._hit_seconds: dict[str, float] = {}  # Of the hits, in case one is rejected
        # Set by the translation cache while it starts a module of self-modifying code: such a
        # module is neither looked up nor written (each version would be a new entry).
        self.volatile = False
        self._skipped: set[str] = set()
        self.runs_cleared = 0

    def key(self, text: str, variant: str) -> str:
        if self._env is None:
            self._env = environment().encode()
        h = hashlib.sha256(self._env)
        h.update(b"\0" + variant.encode() + b"\0")
        h.update(text.encode())
        return h.hexdigest()

    def check_dir(self) -> None:
        """Raises ValueError if the cache's directory, or the nearest of its parents that exists,
        is not a directory (e.g. $MIRAGE_TCACHE_DIR naming a file)."""
        for p in (self.dir, *self.dir.parents):
            if p.exists():
                if not p.is_dir():
                    raise ValueError(f"the translation cache directory {self.dir} cannot be made: {p} is not "
                                     "a directory (see $MIRAGE_TCACHE_DIR, $MIRAGE_CACHE_DIR)")
                return

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / (key + SUFFIX)

    def get(self, key: str) -> tuple[bytes, int] | None:
        """The object and its machine-code size, or None (a miss; bad entries are rejected)."""
        if self.volatile:
            self.stats.skipped += 1
            self._skipped.add(key)
            return None
        self.stats.lookups += 1
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except OSError:
            self.stats.misses += 1
            self.stats.rejected += 1
            return None
        entry = _parse(key, data)
        if entry is None:
            self.stats.misses += 1
            self.stats.rejected += 1
            path.unlink(missing_ok=True)
            return None
        obj, code, seconds = entry
        self.stats.hits += 1
        self.stats.seconds_saved += seconds
        self._hit_seconds[key] = seconds
        try:
            os.utime(path)
        except OSError:
            pass
        return obj, code

    def reject(self, key: str) -> None:
        """An entry `get` returned could not be used (the JIT did not link it)."""
        seconds = self._hit_seconds.pop(key, None)
        if seconds is not None:
            self.stats.hits -= 1
            self.stats.misses += 1
            self.stats.seconds_saved -= seconds
        self.stats.rejected += 1
        self.path(key).unlink(missing_ok=True)

    def put(self, key: str, obj: bytes, code_bytes: int, seconds: float) -> bool:
        """Stores an entry atomically; a cache that cannot be written only counts the failure.
        Whether the entry is in the cache now."""
        if key in self._skipped:
            self._skipped.discard(key)
            return False
        data = HEADER.pack(MAGIC, bytes.fromhex(key), hashlib.sha256(obj).digest(), code_bytes, seconds) + obj
        ok = self._write(self.path(key), data)
        with self._put_lock:  # The JIT's worker thread stores what it compiled
            if not ok:
                self.stats.write_errors += 1
                return False
            self.stats.writes += 1
            self.stats.bytes_written += len(data)
        return True

    def _write(self, path: Path, data: bytes) -> bool:
        """Writes a file atomically (a temporary file renamed into place)."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(self._tmp)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        return True

    # Warm sets (a run's translations, for the next run with the same key)
    def run_key(self, *parts: str) -> str:
        """The key of a run's warm set: the environment and what identifies the run."""
        h = hashlib.sha256(environment().encode() + RUN_VERSION.to_bytes(4, "little"))
        for p in parts:
            b = p.encode()
            h.update(len(b).to_bytes(8, "little") + b)
        return h.hexdigest()

    def run_path(self, key: str) -> Path:
        return self.dir / RUNS / (key + RUN_SUFFIX)

    def load_run(self, key: str) -> dict | None:
        """The warm set saved under `key`, or None (none, or rejected: counted and deleted)."""
        path = self.run_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            self.stats.runs_rejected += 1
            return None
        doc = _parse_run(key, data)
        if doc is None:
            self.stats.runs_rejected += 1
            path.unlink(missing_ok=True)
            return None
        self.stats.run_loaded = True
        try:
            os.utime(path)
        except OSError:
            pass
        return doc

    def reject_run(self, key: str) -> None:
        """The warm set `load_run` returned did not describe translations (its content is wrong)."""
        self.stats.run_loaded = False
        self.stats.runs_rejected += 1
        self.run_path(key).unlink(missing_ok=True)

    def save_run(self, key: str, modules: list, blocks: list) -> bool:
        """Saves a run's warm set (see the module's docstring) and keeps at most MAX_RUNS."""
        doc = {"version": RUN_VERSION, "key": key, "modules": modules, "blocks": blocks}
        payload = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)
        ok = self._write(self.run_path(key), RUN_MAGIC + hashlib.sha256(payload).digest() + payload)
        if not ok:
            self.stats.write_errors += 1
            return False
        self.stats.run_saved = True
        runs = self.runs()
        for e in sorted(runs, key=lambda e: e.mtime)[:max(0, len(runs) - MAX_RUNS)]:
            try:
                e.path.unlink()
            except OSError:
                pass
        return True

    def runs(self) -> list[Entry]:
        """The warm sets: `runs/<k>.ws` files, k a SHA-256 in hex."""
        out = []
        d = self.dir / RUNS
        if not d.is_dir():
            return out
        for e in os.scandir(d):
            if e.name.endswith(RUN_SUFFIX) and _is_key(e.name[:-len(RUN_SUFFIX)]):
                _add_file(out, e)
        return out

    def close(self) -> None:
        """At the end of a run: keeps the cache within its bound."""
        if self.stats.writes:
            self.trim()

    # Maintenance
    def entries(self) -> list[Entry]:
        """The cache's entries: `<k[:2]>/<k>.obj` files, k a SHA-256 in hex; nothing else counts."""
        out = []
        if not self.dir.is_dir():
            return out
        for sub in os.scandir(self.dir):
            if not (_is_bucket(sub.name) and sub.is_dir(follow_symlinks=False)):
                continue
            for e in os.scandir(sub.path):
                if _is_entry_name(sub.name, e.name):
                    _add_file(out, e)
        return out

    def trim(self, max_bytes: int | None = None) -> int:
        """Deletes least recently used entries until the cache is within 90% of its bound (and
        temporary files that a killed run left behind). Returns how many entries went."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        entries = self.entries()
        total = sum(e.size for e in entries)
        gone = 0
        if total > limit:
            for e in sorted(entries, key=lambda e: e.mtime):
                if total <= limit * 0.9:
                    break
                try:
                    e.path.unlink()
                except OSError:
                    continue
                total -= e.size
                gone += 1
        now = time.time()
        for tmp in self.dir.glob("*/.*.tmp"):
            try:
                if now - tmp.stat().st_mtime > 3600:
                    tmp.unlink()
            except OSError:
                pass
        self.stats.evicted += gone
        return gone

    def info(self) -> dict:
        entries = self.entries()
        return {
            "dir": str(self.dir),
            "entries": len(entries),
            "bytes": sum(e.size for e in entries),
            "max_bytes": self.max_bytes,
            "warm_sets": len(self.runs()),
            "oldest": min((e.mtime for e in entries), default=None),
            "newest": max((e.mtime for e in entries), default=None),
            "environment": environment(),
        }

    def clear(self) -> int:
        """Deletes every entry and warm set (and temporary files of those being written), nothing
        else: the directory may be one the user named ($MIRAGE_TCACHE_DIR) and hold other files.
        Returns how many entries went (`runs_cleared`: how many warm sets)."""
        gone = 0
        for e in self.entries():
            try:
                e.path.unlink()
            except OSError:
                continue
            gone += 1
        for e in self.runs():
            try:
                e.path.unlink()
            except OSError:
                continue
            self.runs_cleared += 1
        for tmp in self.dir.glob("*/.*.tmp"):
            tmp.unlink(missing_ok=True)
        if self.dir.is_dir():
            for sub in os.scandir(self.dir):
                if (_is_bucket(sub.name) or sub.name == RUNS) and sub.is_dir(follow_symlinks=False):
                    try:
                        os.rmdir(sub.path)  # Only if empty
                    except OSError:
                        pass
        return gone

    def as_dict(self) -> dict:
        return {"enabled": True, "dir": str(self.dir), **asdict(self.stats)}


def _is_bucket(name: str) -> bool:
    return len(name) == 2 and all(c in "0123456789abcdef" for c in name)


def _is_entry_name(bucket: str, name: str) -> bool:
    key = name[:-len(SUFFIX)]
    return name.endswith(SUFFIX) and key.startswith(bucket) and _is_key(key)


def _is_key(name: str) -> bool:
    """A SHA-256 in lower-case hex."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _add_file(out: list[Entry], e: os.DirEntry) -> None:
    """Adds a regular file (not a link) of a directory scan, if it can still be read."""
    if e.is_file(follow_symlinks=False):
        try:
            st = e.stat()
        except OSError:
            return
        out.append(Entry(Path(e.path), st.st_size, st.st_mtime))


def _parse(key: str, data: bytes) -> tuple[bytes, int, float] | None:
    if len(data) < HEADER.size:
        return None
    magic, k, digest, code, seconds = HEADER.unpack_from(data)
    obj = data[HEADER.size:]
    if magic != MAGIC or k != bytes.fromhex(key) or hashlib.sha256(obj).digest() != digest:
        return None
    if objcheck.problem(obj) is not None:
        return None  # Intact but not an object LLVM can link safely: it would abort the process
    return obj, code, seconds


def _parse_run(key: str, data: bytes) -> dict | None:
    head = len(RUN_MAGIC) + 32
    if len(data) < head or data[:len(RUN_MAGIC)] != RUN_MAGIC:
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(RUN_MAGIC):head]:
        return None
    try:
        doc = json.loads(zlib.decompress(payload))
    except (zlib.error, ValueError, RecursionError):
        return None
    if (not isinstance(doc, dict) or doc.get("version") != RUN_VERSION or doc.get("key") != key
            or not isinstance(doc.get("modules"), list) or not isinstance(doc.get("blocks"), list)):
        return None
    return doc
