"""Loading guest programs: ELF files (by their program headers) and raw binaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from runtime.memory import PhysicalMemory


class LoadError(Exception):
    """A guest image cannot be loaded; the message says why, in one line."""


@dataclass
class Image:
    path: Path
    entry: int
    symbols: dict[str, int] = field(default_factory=dict)
    is_elf: bool = True
    segments: list[tuple[int, int]] = field(default_factory=list)  # (paddr, size)


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def load_elf(mem: PhysicalMemory, path: Path) -> Image:
    """Loads PT_LOAD segments at their physical addresses; returns entry and symbols."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise LoadError(f"{path}: {e.strerror}") from None
    with f:
        try:
            elf = ELFFile(f)
            if elf.get_machine_arch() != "RISC-V" or elf.elfclass != 64:
                raise LoadError(f"{path}: not a 64-bit RISC-V ELF (machine {elf.get_machine_arch()}, "
                                f"class {elf.elfclass})")
            img = Image(Path(path), elf.header.e_entry)
            for seg in elf.iter_segments():
                if seg.header.p_type != "PT_LOAD" or seg.header.p_memsz == 0:
                    continue
                data = seg.data()
                if len(data) < seg.header.p_filesz:
                    raise LoadError(f"{path}: truncated file (segment at {seg.header.p_paddr:#x})")
                paddr = seg.header.p_paddr
                memsz = seg.header.p_memsz
                try:
                    mem.load_bytes(paddr, data + bytes(memsz - len(data)))
                except ValueError as e:
                    raise LoadError(f"{path}: {e}") from None
                img.segments.append((paddr, memsz))
            if not img.segments:
                raise LoadError(f"{path}: no loadable segments")
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                for sym in symtab.iter_symbols():
                    if sym.name and sym["st_info"]["type"] in ("STT_NOTYPE", "STT_OBJECT", "STT_FUNC"):
                        img.symbols.setdefault(sym.name, sym["st_value"])
            return img
        except (ELFError, ValueError, AssertionError, KeyError, IndexError, OSError) as e:
            raise LoadError(f"{path}: malformed or truncated ELF ({e})") from None


def load_raw(mem: PhysicalMemory, path: Path, addr: int) -> Image:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise LoadError(f"{path}: {e.strerror}") from None
    try:
        mem.load_bytes(addr, data)
    except ValueError as e:
        raise LoadError(f"{path}: {e}") from None
    return Image(Path(path), addr, is_elf=False, segments=[(addr, len(data))])


def load(mem: PhysicalMemory, path: Path, raw_addr: int) -> Image:
    """An ELF is loaded at its own addresses; anything else is a raw binary at raw_addr."""
    path = Path(path)
    if not path.exists():
        raise LoadError(f"{path}: no such file")
    if path.is_dir():
        raise LoadError(f"{path}: is a directory")
    if is_elf(path):
        return load_elf(mem, path)
    return load_raw(mem, path, raw_addr)
