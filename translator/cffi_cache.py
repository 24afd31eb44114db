"""An FFI for a cdef without parsing it at every start.

cffi parses a cdef with pycparser, which takes ~20 ms (import and parse) and parses again every
type string first used in ffi.cast/new/callback. cffi's out-of-line ABI mode writes what the parse
found as a small Python module whose FFI (`_cffi_backend.FFI`) needs no parser at all, types in
strings included. That module is kept in a directory (translator/__pycache__ for abi.py), named
after a hash of the cdef and cffi's version: a changed cdef never finds the module of another. A
module is written only after its FFI was checked to lay out every type as the parsed one does; its
first line is a checksum of that hash and the rest, and one that does not match (damaged, or
another cdef's module) is made again; a directory that cannot be written costs only the time saved.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import _cffi_backend

MODULE = "_mirage_cdef"
# What the generated text means; part of its key (a new format never finds an old file).
FORMAT = 1
_HEADER = "# mirage cffi module, sha256 of its cdef's key and the rest: "


def _key(cdef: str) -> str:
    """A hash of the cdef, cffi's version and FORMAT."""
    return hashlib.sha256(f"{FORMAT} {_cffi_backend.__version__}\n{cdef}".encode()).hexdigest()


def filename(name: str, cdef: str) -> str:
    """The file the module of `cdef` named `name` is kept in."""
    return f"{name}-ffi-{_key(cdef)[:32]}.py"


def load(name: str, cdef: str, directory: Path | None) -> Any:
    """The FFI of `cdef`: from its module in `directory` if there is a sound one, else parsed (and
    its module written there for the next start, replacing those of other cdefs called `name`;
    directory None: parsed, nothing written)."""
    path = directory / filename(name, cdef) if directory is not None else None
    if path is not None:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            text = None
        if text is not None:
            ffi = _from_text(cdef, text, str(path))
            if ffi is not None:
                return ffi
    parsed, body = _generate(cdef)
    text = _seal(cdef, body)
    ffi = _from_text(cdef, text, MODULE)
    if ffi is None or layout(ffi) != layout(parsed):
        return parsed  # Never written: only a module that builds the same layout is kept
    if path is not None:
        _write(path, text, f"{name}-ffi-*.py")
    return ffi


def layout(ffi: Any) -> dict:
    """Every named type of an FFI: size, alignment and, for a struct or union, its fields (name,
    offset, type, bit size)."""
    names, structs, unions = ffi.list_types()
    out = {}
    for name in [*names, *(f"struct {s}" for s in structs), *(f"union {u}" for u in unions)]:
        t = ffi.typeof(name)
        fields = None
        if t.kind in ("struct", "union"):
            fields = [(n, f.offset, f.type.cname, f.bitsize) for n, f in t.fields]
        out[name] = (t.kind, ffi.sizeof(t), ffi.alignof(t), fields)
    return out


def _generate(cdef: str) -> tuple[Any, str]:
    """The parsed FFI of `cdef` and the text of its out-of-line module."""
    import cffi
    from cffi import recompiler

    parsed = cffi.FFI()
    parsed.cdef(cdef)
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, MODULE + ".py")
        recompiler.make_py_source(parsed, MODULE, tmp)
        return parsed, Path(tmp).read_text()


def _seal(cdef: str, body: str) -> str:
    """A module's text for `cdef`: its checksum line, then `body`."""
    return f"{_HEADER}{hashlib.sha256((_key(cdef) + body).encode()).hexdigest()}\n{body}"


def _from_text(cdef: str, text: str, filename: str) -> Any:
    """The FFI a module's text builds, or None if its checksum line does not match `cdef` and the
    rest, or it fails."""
    body = text.partition("\n")[2]
    if text != _seal(cdef, body):
        return None
    ns: dict = {"__name__": MODULE}
    try:
        exec(compile(body, filename, "exec"), ns)
    except Exception:
        return None
    ffi = ns.get("ffi")
    return ffi if isinstance(ffi, _cffi_backend.FFI) else None


def _write(path: Path, text: str, others: str) -> None:
    """Writes `text` to `path` atomically (another process may read or write it at the same time)
    and removes the files matching `others` (modules of earlier cdefs); a directory that cannot be
    written is left alone."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        for old in path.parent.glob(others):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
