"""Loading guest programs: ELF files (by their program headers) and raw binaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.boot import elf as elffile
from runtime.core.memory import PhysicalMemory


class LoadError(Exception):
    """A guest image cannot be loaded; the message says why, in one line."""


@dataclass
class Image:
    path: Path
    entry: int
    symbols: dict[str, int] = field(default_factory=dict)
    is_elf: bool = True
    segments: list[tuple[int, int]] = field(default_factory=list)  # (paddr, size)


class Layout:
    """What is placed in the guest's RAM before it starts (firmware, kernel, initrd, device tree,
    boot info): each object must lie inside the guest's RAM, [base, end), and overlap no other, or
    it is refused (as QEMU refuses overlapping ROM regions) instead of silently overwriting."""

    def __init__(self, base: int, end: int) -> None:
        self.base = base
        self.end = end
        self.placed: list[tuple[str, int, int]] = []  # (what, start, end)

    def place(self, what: str, start: int, size: int) -> None:
        """Records `what` at [start, start + size); raises LoadError if it does not fit."""
        end = start + max(size, 1)
        if start < self.base or end > self.end:
            raise LoadError(f"{what} [{start:#x}, {end:#x}) does not fit in the guest's RAM "
                            f"[{self.base:#x}, {self.end:#x})")
        for other, lo, hi in self.placed:
            if start < hi and lo < end:
                raise LoadError(f"{what} [{start:#x}, {end:#x}) overlaps {other} [{lo:#x}, {hi:#x})")
        self.placed.append((what, start, end))


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def load_elf(mem: PhysicalMemory, path: Path, layout: Layout | None = None) -> Image:
    """Loads PT_LOAD segments at their physical addresses; returns entry and symbols."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise LoadError(f"{path}: {e.strerror}") from None
    with f:
        try:
            elf = elffile.ElfFile(f)
            if elf.machine != elffile.EM_RISCV or elf.elfclass != 64:
                raise LoadError(f"{path}: not a 64-bit RISC-V ELF (machine {elf.machine_name}, "
                                f"class {elf.elfclass})")
            img = Image(Path(path), elf.entry)
            for seg in elf.segments():
                if seg.type != elffile.PT_LOAD or seg.memsz == 0:
                    continue
                data = elf.data(seg)
                if len(data) < seg.filesz:
                    raise LoadError(f"{path}: truncated file (segment at {seg.paddr:#x})")
                paddr = seg.paddr
                memsz = seg.memsz
                if layout is not None:
                    layout.place(f"{path}'s segment", paddr, memsz)
                elif not mem.is_ram(paddr, memsz):
                    raise LoadError(f"{path}: segment [{paddr:#x}, {paddr + memsz:#x}) does not fit in RAM "
                                    f"[{mem.ram_base:#x}, {mem.ram_end:#x})")
                try:
                    mem.load_bytes(paddr, data + bytes(memsz - len(data)))
                except ValueError as e:
                    raise LoadError(f"{path}: {e}") from None
                img.segments.append((paddr, memsz))
            if not img.segments:
                raise LoadError(f"{path}: no loadable segments")
            symtab = elf.section_by_name(".symtab")
            if symtab is not None:
                for name, kind, value in elf.symbols(symtab):
                    if name and kind in (elffile.STT_NOTYPE, elffile.STT_OBJECT, elffile.STT_FUNC):
                        img.symbols.setdefault(name, value)
            return img
        except (ValueError, OverflowError, IndexError, OSError) as e:
            raise LoadError(f"{path}: malformed or truncated ELF ({e})") from None


def read_capped(path: Path, limit: int, what: str = "guest RAM") -> bytes:
    """A file's bytes, at most `limit` of them: a bigger file (or /dev/zero) is refused after
    reading limit + 1 bytes instead of filling the host's memory."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise LoadError(f"{path}: {e.strerror}") from None
    if len(data) > limit:
        raise LoadError(f"{path}: larger than the {limit:,} bytes of {what} it must fit in")
    return data


HINT = "give an ELF file, or a raw binary of RISC-V code to load at its address"


def looks_like_text(data: bytes) -> bool:
    """Printable UTF-8 throughout (tabs and line ends allowed): a text file, not machine code,
    whose every 32-bit word has control bytes in it."""
    sample = data[:1 << 16]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def load_raw(mem: PhysicalMemory, path: Path, addr: int, layout: Layout | None = None) -> Image:
    data = read_capped(path, max(0, (layout.end if layout is not None else mem.ram_end) - addr))
    # QEMU refuses an empty image too; a text file would run as garbage instructions.
    if not data:
        raise LoadError(f"{path}: empty file ({HINT})")
    if looks_like_text(data):
        raise LoadError(f"{path}: a text file, not a program ({HINT})")
    if layout is not None:
        layout.place(str(path), addr, len(data))
    try:
        mem.load_bytes(addr, data)
    except ValueError as e:
        raise LoadError(f"{path}: {e}") from None
    return Image(Path(path), addr, is_elf=False, segments=[(addr, len(data))])


def load(mem: PhysicalMemory, path: Path, raw_addr: int, layout: Layout | None = None) -> Image:
    """An ELF is loaded at its own addresses; anything else is a raw binary at raw_addr."""
    path = Path(path)
    if not path.exists():
        raise LoadError(f"{path}: no such file")
    if path.is_dir():
        raise LoadError(f"{path}: is a directory")
    if is_elf(path):
        return load_elf(mem, path, layout)
    return load_raw(mem, path, raw_addr, layout)
