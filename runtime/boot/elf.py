"""Reading the parts of an ELF file a guest is loaded from: the header, the program headers and the
symbol table (System V gABI, "ELF Header", "Program Header", "Sections", "Symbol Table").

What pyelftools reads for the loader, as it reads it, without importing it: its import alone took
~17 ms of every start. tests/test_elf.py checks both agree.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

from runtime.core import objcheck

EM_RISCV = 243
PT_LOAD = 1
SHT_SYMTAB, SHT_STRTAB = objcheck.SHT_SYMTAB, objcheck.SHT_STRTAB
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2
# e_phnum when the count is in section 0's sh_info; e_shstrndx when the index is in its sh_link.
PN_XNUM = 0xFFFF
SHN_XINDEX = 0xFFFF
# Names of e_machine values, as pyelftools gives them (for messages).
MACHINES = {0: "None", 3: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 40: "ARM", 62: "x64", 183: "AArch64",
            243: "RISC-V", 258: "LoongArch"}

# ELF-64 layouts without their byte order: header, section header and symbol as objcheck.py reads
# them; program header.
_EHDR = objcheck.EHDR.format[1:]
_SHDR = objcheck.SHDR.format[1:]
_SYM = objcheck.SYM.format[1:]
_PHDR = "IIQQQQQQ"


class ElfError(ValueError):
    """The file is not a well-formed ELF file (or is cut short)."""


class Segment(NamedTuple):
    type: int
    offset: int
    paddr: int
    filesz: int
    memsz: int


class Section(NamedTuple):
    name: int  # Offset in the section name string table
    type: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


class ElfFile:
    """An ELF file open for reading: `elfclass` (32 or 64) and `machine` always; the rest only for
    an ELF-64 file (read them after checking the class)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.size = f.seek(0, 2)
        ident = self._read(0, 16)
        if ident[:4] != b"\x7fELF":
            raise ElfError(f"magic number does not match: {ident[:4]!r}")
        if ident[4] not in (1, 2):
            raise ElfError(f"invalid EI_CLASS {ident[4]}")
        if ident[5] not in (1, 2):
            raise ElfError(f"invalid EI_DATA {ident[5]}")
        self.elfclass = 32 if ident[4] == 1 else 64
        self.order = "<" if ident[5] == 1 else ">"
        (self.machine,) = struct.unpack(self.order + "H", self._read(18, 2))
        self.entry = self.phoff = self.shoff = 0
        if self.elfclass == 64:
            (_, _, _, _, self.entry, self.phoff, self.shoff, _, _, self.phentsize, self.phnum, self.shentsize,
             self.shnum, self.shstrndx) = self._unpack(_EHDR, 0)

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"<unknown: {self.machine:#x}>")

    def _read(self, offset: int, size: int) -> bytes:
        # Checked first: a size from the file may be far larger than the file (and than memory).
        if offset + size > self.size:
            raise ElfError(f"truncated: {size} bytes at {offset:#x} past the end of the file")
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) < size:
            raise ElfError(f"truncated: {size} bytes at {offset:#x} past the end of the file")
        return data

    def _unpack(self, fmt: str, offset: int) -> tuple:
        fmt = self.order + fmt
        return struct.unpack(fmt, self._read(offset, struct.calcsize(fmt)))

    def section(self, n: int) -> Section:
        if self.shentsize < struct.calcsize(_SHDR):
            raise ElfError(f"section headers of {self.shentsize} bytes")
        sh_name, sh_type, _, _, sh_offset, sh_size, sh_link, sh_info, _, sh_entsize = self._unpack(
            _SHDR, self.shoff + n * self.shentsize)
        return Section(sh_name, sh_type, sh_offset, sh_size, sh_link, sh_info, sh_entsize)

    def num_sections(self) -> int:
        if self.shoff == 0:
            return 0
        return self.section(0).size if self.shnum == 0 else self.shnum

    def segments(self) -> list[Segment]:
        """The program headers (segments), in file order."""
        n = self.phnum if self.phnum < PN_XNUM else self.section(0).info
        if n and self.phentsize < struct.calcsize(_PHDR):
            raise ElfError(f"program headers of {self.phentsize} bytes")
        out = []
        for i in range(n):
            p_type, _, p_offset, _, p_paddr, p_filesz, p_memsz, _ = self._unpack(_PHDR, self.phoff + i * self.phentsize)
            out.append(Segment(p_type, p_offset, p_paddr, p_filesz, p_memsz))
        return out

    def data(self, seg: Segment) -> bytes:
        """A segment's bytes in the file, fewer than p_filesz if the file ends before them."""
        if seg.offset >= self.size:
            return b""
        self.f.seek(seg.offset)
        return self.f.read(min(seg.filesz, self.size - seg.offset))

    def section_by_name(self, name: str) -> Section | None:
        """The last section of that name (as pyelftools finds it), or None."""
        n = self.num_sections()
        if n == 0:
            return None
        sections = [self.section(i) for i in range(n)]
        strndx = self.shstrndx if self.shstrndx != SHN_XINDEX else sections[0].link
        names = sections[strndx] if strndx < n else self.section(strndx)
        found = None
        for sec in sections:
            if self._string(names.offset + sec.name) == name:
                found = sec
        return found

    def symbols(self, symtab: Section) -> list[tuple[str, int, int]]:
        """(name, type, value) of each symbol of a symbol table section, in order."""
        if symtab.type != SHT_SYMTAB:
            raise ElfError(f"the symbol table has section type {symtab.type}, not SHT_SYMTAB")
        if symtab.entsize == 0 or symtab.size % symtab.entsize:
            raise ElfError(f"the symbol table's size {symtab.size} is not a multiple of its entries' "
                           f"{symtab.entsize}")
        strtab = self.section(symtab.link)
        if strtab.type != SHT_STRTAB:
            raise ElfError(f"the symbol table's strings are in a section of type {strtab.type}, not SHT_STRTAB")
        count = symtab.size // symtab.entsize
        # The string table's bytes in the file; a name outside them is read as pyelftools reads it.
        start = min(strtab.offset, self.size)
        strings = self._read(start, min(strtab.size, self.size - start))
        fmt = self.order + _SYM
        size = struct.calcsize(fmt)
        table = self._read(symtab.offset, (count - 1) * symtab.entsize + size) if count else b""
        out = []
        for i in range(count):
            st_name, st_info, _, _, st_value, _ = struct.unpack_from(fmt, table, i * symtab.entsize)
            end = strings.find(b"\0", st_name)
            if end >= 0:
                name = strings[st_name:end].decode("utf-8", errors="replace")
            else:
                name = self._string(strtab.offset + st_name)
            out.append((name, st_info & 0xF, st_value))
        return out

    def _string(self, offset: int) -> str:
        """The NUL-terminated string at a file offset; '' if the file ends before its NUL."""
        self.f.seek(offset)
        data = b""
        while True:
            chunk = self.f.read(256)
            end = chunk.find(b"\0")
            if end >= 0:
                return (data + chunk[:end]).decode("utf-8", errors="replace")
            if not chunk:
                return ""
            data += chunk
