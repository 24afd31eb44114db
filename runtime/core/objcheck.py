"""Structural checks of an ELF relocatable object before LLVM links it.

LLVM's JIT linkers trust their input: a persistent-cache object whose checksum matches but whose
contents are corrupt (a relocation of an unknown type, an offset past its section, a symbol
index or name out of range) aborts or crashes the process inside LLVM. `problem` looks at every
field the linker follows (ELF gABI, "Sections", "Symbol Table", "Relocation") and names the first
that is out of bounds, so the entry can be rejected and the module compiled anew.
"""

from __future__ import annotations

import platform
import struct

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")
RELA = struct.Struct("<QQq")
SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS = 2, 3, 4, 8
SHN_LORESERVE, SHN_ABS, SHN_COMMON = 0xFF00, 0xFFF1, 0xFFF2
# e_machine of the host, and the relocation types (with the bytes each patches) that the objects
# Mirage compiles use and LLVM's linker resolves (x86-64 psABI, table "Relocation Types").
HOST_MACHINE = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "riscv64": 243}.get(platform.machine().lower())
RELOC_WIDTH = {62: {1: 8, 2: 4, 4: 4, 9: 4, 10: 4, 11: 4, 24: 8, 41: 4, 42: 4}}.get(HOST_MACHINE)


def problem(obj: bytes) -> str | None:
    """What is wrong with `obj` as a relocatable object for this host, or None if nothing is."""
    if len(obj) < EHDR.size:
        return "shorter than an ELF header"
    ident, e_type, machine, _v, _entry, _phoff, shoff, _flags, _ehsize, _phes, _phnum, shes, shnum, shstrndx = \
        EHDR.unpack_from(obj)
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        return "not a little-endian ELF64 file"
    if e_type != 1:
        return f"ELF type {e_type}, not relocatable"
    if HOST_MACHINE is not None and machine != HOST_MACHINE:
        return f"machine {machine}, not the host's {HOST_MACHINE}"
    if shes != SHDR.size or shnum == 0 or shoff + shnum * SHDR.size > len(obj) or shstrndx >= shnum:
        return "section header table out of bounds"
    secs = [SHDR.unpack_from(obj, shoff + i * SHDR.size) for i in range(shnum)]
    for i, (_name, stype, _f, _a, off, size, _link, _info, _al, _es) in enumerate(secs):
        if stype != SHT_NOBITS and off + size > len(obj):
            return f"section {i} out of bounds"
        if stype == SHT_STRTAB and size and obj[off + size - 1] != 0:
            return f"string table {i} not terminated"
    if secs[shstrndx][1] != SHT_STRTAB:
        return "section names not in a string table"
    names_size = secs[shstrndx][5]
    if any(s[0] >= max(names_size, 1) for s in secs[1:]):
        return "section name out of bounds"
    nsyms: dict[int, int] = {}
    for i, (_name, stype, _f, _a, off, size, link, _info, _al, es) in enumerate(secs):
        if stype != SHT_SYMTAB:
            continue
        if es != SYM.size or size % SYM.size or link >= shnum or secs[link][1] != SHT_STRTAB:
            return f"symbol table {i} malformed"
        # The fields of every symbol at once (a view of the table as 32- and 16-bit words: st_name
        # is word 0 of 6, st_shndx half-word 3 of 12), not a symbol at a time.
        table = memoryview(obj)[off:off + size]
        if size and max(table.cast("I")[0::6]) >= max(secs[link][5], 1):
            return f"symbol name out of bounds in section {i}"
        for shndx in set(table.cast("H")[3::12]):
            if shndx >= shnum and shndx not in (SHN_ABS, SHN_COMMON):
                return f"symbol section index {shndx} out of bounds"
        nsyms[i] = size // SYM.size
    for i, (_name, stype, _f, _a, off, size, link, info, _al, es) in enumerate(secs):
        if stype != SHT_RELA:
            continue
        if es != RELA.size or size % RELA.size or link not in nsyms or not 0 < info < shnum:
            return f"relocation section {i} malformed"
        target_size = secs[info][5]
        if not size:
            continue
        # All at once, as the symbols: r_offset is 64-bit word 0 of 3, the type and symbol of r_info
        # 32-bit words 2 and 3 of 6. A relocation near its section's end is looked at alone.
        rela = memoryview(obj)[off:off + size]
        words = rela.cast("I")
        if max(words[3::6]) >= nsyms[link]:
            return f"relocation symbol {max(words[3::6])} out of bounds in section {i}"
        if RELOC_WIDTH is None:
            continue
        unknown = set(words[2::6]) - RELOC_WIDTH.keys()
        if unknown:
            return f"relocation type {min(unknown)} in section {i}"
        if max(rela.cast("Q")[0::3]) + 8 <= target_size:
            continue
        for r_offset, r_info, _addend in RELA.iter_unpack(rela):
            rtype, sym = r_info & 0xFFFFFFFF, r_info >> 32
            if sym >= nsyms[link]:
                return f"relocation symbol {sym} out of bounds in section {i}"
            if RELOC_WIDTH is not None:
                width = RELOC_WIDTH.get(rtype)
                if width is None:
                    return f"relocation type {rtype} in section {i}"
                if r_offset + width > target_size:
                    return f"relocation offset {r_offset:#x} past its section in section {i}"
    return None
