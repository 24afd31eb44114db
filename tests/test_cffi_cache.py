"""The FFI kept as a generated module (translator/cffi_cache.py) against cffi's own parse of the
same cdef: the same layout, never the module of another cdef, never a damaged module."""

from __future__ import annotations

import cffi
import pytest

from translator import abi, cffi_cache

CDEF_A = """
typedef struct { uint64_t a; uint32_t b; } pair_t;
typedef struct { uint8_t tag; pair_t items[3]; void *next; } node_t;
"""
# The same names, another layout: a field added in front.
CDEF_B = CDEF_A.replace("uint64_t a;", "uint16_t z; uint64_t a;")


def parsed(cdef: str) -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi


def test_abi_ffi_lays_out_hart_t_as_cffi_parses_it():
    assert abi.ffi.list_types() == parsed(abi.CDEF).list_types() and "hart_t" in abi.ffi.list_types()[0]
    assert cffi_cache.layout(abi.ffi) == cffi_cache.layout(parsed(abi.CDEF))
    assert abi.HART_SIZE == parsed(abi.CDEF).sizeof("hart_t")


def test_a_kept_module_serves_the_next_load_without_parsing(tmp_path, monkeypatch):
    first = cffi_cache.load("t", CDEF_A, tmp_path)
    assert (tmp_path / cffi_cache.filename("t", CDEF_A)).is_file()

    def no_parse(cdef):
        raise AssertionError("parsed again")

    monkeypatch.setattr(cffi_cache, "_generate", no_parse)
    again = cffi_cache.load("t", CDEF_A, tmp_path)
    assert cffi_cache.layout(again) == cffi_cache.layout(first) == cffi_cache.layout(parsed(CDEF_A))
    # Types in strings are parsed by cffi's backend, without pycparser.
    node = again.new("node_t *")
    node.items[2].a = 7
    assert again.offsetof("node_t", "next") == parsed(CDEF_A).offsetof("node_t", "next")
    assert int(again.cast("uint64_t *", again.addressof(node.items[2], "a"))[0]) == 7


def test_a_changed_cdef_never_gets_the_module_of_the_old_one(tmp_path):
    cffi_cache.load("t", CDEF_A, tmp_path)
    b = cffi_cache.load("t", CDEF_B, tmp_path)
    assert cffi_cache.layout(b) == cffi_cache.layout(parsed(CDEF_B))
    assert b.offsetof("pair_t", "a") == 8 and b.sizeof("node_t") != parsed(CDEF_A).sizeof("node_t")
    # The old module was replaced; going back to the old cdef makes its own again.
    assert [p.name for p in tmp_path.iterdir()] == [cffi_cache.filename("t", CDEF_B)]
    a = cffi_cache.load("t", CDEF_A, tmp_path)
    assert cffi_cache.layout(a) == cffi_cache.layout(parsed(CDEF_A))


DAMAGE = ["truncated", "body of another cdef", "module of another cdef", "sealed broken body", "not utf-8"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_module_is_made_again_not_run(tmp_path, damage):
    cffi_cache.load("t", CDEF_A, tmp_path)
    path = tmp_path / cffi_cache.filename("t", CDEF_A)
    good = path.read_text()
    other = tmp_path / "other"
    cffi_cache.load("t", CDEF_B, other)
    other_text = (other / cffi_cache.filename("t", CDEF_B)).read_text()
    if damage == "truncated":
        path.write_text(good[:len(good) // 2])
    elif damage == "body of another cdef":
        path.write_text(good.partition("\n")[0] + "\n" + other_text.partition("\n")[2])
    elif damage == "module of another cdef":
        path.write_text(other_text)  # Whole, its checksum line included
    elif damage == "sealed broken body":
        path.write_text(cffi_cache._seal(CDEF_A, "raise RuntimeError('must not run')\n"))
    else:
        path.write_bytes(b"\xff\xfe" + good.encode())
    ffi = cffi_cache.load("t", CDEF_A, tmp_path)
    assert cffi_cache.layout(ffi) == cffi_cache.layout(parsed(CDEF_A))
    assert path.read_text() == good


def test_an_unwritable_directory_still_gives_the_ffi(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    ffi = cffi_cache.load("t", CDEF_A, blocked / "sub")
    assert cffi_cache.layout(ffi) == cffi_cache.layout(parsed(CDEF_A))
