"""runtime/boot/elf.py against pyelftools (the reference the loader used before): the same entry,
segments, bytes and symbols for real RISC-V ELF files, and for damaged ones either the same image
or a one-line LoadError, never another exception."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_ST_INFO_TYPE

from runtime.boot import elf, loader
from runtime.boot.images import build as images_build
from runtime.core.memory import PhysicalMemory

RAM_BASE = 0x8000_0000
RAM_SIZE = 32 << 20
OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf")

PROGRAM = r"""
  la t0, table
  ld t1, 8(t0)
  PASS
  .data
  .globl table
table:
  .dword 1, 2, 3
  .bss
buffer:
  .space 4096
"""


class ReferenceError(Exception):
    pass


def reference_load(mem: PhysicalMemory, path: Path) -> loader.Image:
    """The loader's ELF path as it was with pyelftools (its errors as ReferenceError)."""
    with open(path, "rb") as f:
        try:
            e = ELFFile(f)
            if e.get_machine_arch() != "RISC-V" or e.elfclass != 64:
                raise ReferenceError(f"machine {e.get_machine_arch()}, class {e.elfclass}")
            img = loader.Image(Path(path), e.header.e_entry)
            for seg in e.iter_segments():
                if seg.header.p_type != "PT_LOAD" or seg.header.p_memsz == 0:
                    continue
                data = seg.data()
                if len(data) < seg.header.p_filesz:
                    raise ReferenceError("truncated")
                paddr, memsz = seg.header.p_paddr, seg.header.p_memsz
                if not mem.is_ram(paddr, memsz):
                    raise ReferenceError("outside RAM")
                mem.load_bytes(paddr, data + bytes(memsz - len(data)))
                img.segments.append((paddr, memsz))
            if not img.segments:
                raise ReferenceError("no segments")
            symtab = e.get_section_by_name(".symtab")
            if symtab is not None:
                for sym in symtab.iter_symbols():
                    if sym.name and sym["st_info"]["type"] in ("STT_NOTYPE", "STT_OBJECT", "STT_FUNC"):
                        img.symbols.setdefault(sym.name, sym["st_value"])
            return img
        except (ELFError, ValueError, AssertionError, KeyError, IndexError, OSError) as ex:
            raise ReferenceError(str(ex)) from None


def both(path: Path):
    """(entry, segments, symbols, RAM bytes) from the reference and from the loader; a failure as
    ReferenceError (the reference's, whatever it raised) or LoadError (the loader's)."""
    out = []
    for load, failures, failed in ((reference_load, Exception, ReferenceError),
                                   (loader.load_elf, loader.LoadError, loader.LoadError)):
        mem = PhysicalMemory(RAM_BASE, RAM_SIZE)
        try:
            img = load(mem, path)
        except failures:
            out.append(failed)
            continue
        out.append((img.entry, img.segments, img.symbols,
                    [mem.read_bytes(a, n) for a, n in img.segments]))
    return out


@pytest.fixture(scope="module")
def elves(toolchain) -> list[Path]:
    from tests.guest import build

    paths = [build.build(PROGRAM), images_build.demo()]
    assert OPENSBI.is_file(), "OpenSBI is missing: run `just setup`"
    return [*paths, OPENSBI]


def test_real_files_load_as_pyelftools_reads_them(elves):
    for path in elves:
        ref, ours = both(path)
        assert isinstance(ref, tuple), path
        assert ours == ref, path
        # Every symbol, of every type.
        with open(path, "rb") as f:
            e, r = elf.ElfFile(f), ELFFile(f)
            symtab, ref_symtab = e.section_by_name(".symtab"), r.get_section_by_name(".symtab")
            assert (symtab is None) == (ref_symtab is None), path
            if symtab is not None:
                want = [(s.name, ENUM_ST_INFO_TYPE[s["st_info"]["type"]], s["st_value"])
                        for s in ref_symtab.iter_symbols()]
                assert e.symbols(symtab) == want, path
    assert "table" in both(elves[0])[1][2] and "_start" in both(elves[1])[1][2]


def test_another_machine_or_class_is_refused(tmp_path, elves):
    import sys

    host = Path(sys.executable).resolve()
    with pytest.raises(loader.LoadError, match=r"not a 64-bit RISC-V ELF \(machine x64, class 64\)"):
        loader.load_elf(PhysicalMemory(RAM_BASE, RAM_SIZE), host)
    data = bytearray(elves[0].read_bytes())
    data[4] = 1  # EI_CLASS: ELFCLASS32
    f = tmp_path / "c32.elf"
    f.write_bytes(bytes(data))
    with pytest.raises(loader.LoadError, match=r"machine RISC-V, class 32"):
        loader.load_elf(PhysicalMemory(RAM_BASE, RAM_SIZE), f)


def test_damaged_files_load_the_same_or_are_refused(tmp_path, elves):
    """Cut short anywhere, or bytes of the headers changed: what pyelftools loads, the loader loads
    the same; what it refuses, the loader refuses with a LoadError, or loads if the damage is in
    sections the loader never reads (pyelftools parses some, e.g. .riscv.attributes, whenever it
    lists sections). Never another exception."""
    good = elves[0].read_bytes()
    rng = random.Random(14)
    with open(elves[0], "rb") as f:
        e = elf.ElfFile(f)
        shdrs = (e.shoff, e.shoff + e.num_sections() * e.shentsize)
    cases = [good[:n] for n in sorted({*rng.sample(range(len(good)), 60), 16, 20, 63, 64, 120, 200})]
    for _ in range(300):
        data = bytearray(good)
        lo, hi = rng.choice([(0, 64), (64, 64 + 2 * 56), shdrs])
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(lo, hi)] = rng.choice([0, 1, 0xFF, rng.randrange(256)])
        cases.append(bytes(data))
    loaded = refused = 0
    path = tmp_path / "d.elf"
    for data in cases:
        path.write_bytes(data)
        ref, ours = both(path)  # The loader raising anything but LoadError fails the test here
        if ref is not ReferenceError:
            assert ours == ref
            loaded += 1
        elif ours is loader.LoadError:
            refused += 1
    assert loaded > 50 and refused > 50
