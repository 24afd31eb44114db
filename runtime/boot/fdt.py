"""A small flattened device tree (DTB, version 17) encoder and decoder.

Devicetree Specification v0.4, chapter 5. A tree is plain data: a node is a dict whose values are
either child nodes (dicts) or property values:
  int               one u32 cell                      <0x1>
  list of ints      u32 cells (empty list: empty)     <0x0 0x80000000>
  U64(a, b, ...)    64-bit values as cell pairs       <0x0 0x80000000>
  str               a NUL-terminated string           "ns16550a"
  list of strs      a string list                     "sifive,test1", "sifive,test0"
  True              an empty property                 interrupt-controller;
  bytes             raw bytes
  None / False      no property (convenient for optional ones)
Properties are emitted before child nodes, in dict order.
"""

from __future__ import annotations

import struct

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 0x1
FDT_END_NODE = 0x2
FDT_PROP = 0x3
FDT_NOP = 0x4
FDT_END = 0x9
VERSION = 17
LAST_COMP_VERSION = 16
HEADER_SIZE = 40


class FdtError(ValueError):
    """A tree that cannot be encoded, or a blob that is not a valid DTB."""


class U64(tuple):
    """64-bit values, each encoded as two big-endian u32 cells (high first)."""

    def __new__(cls, *values: int) -> U64:
        return super().__new__(cls, values)


def encode_value(value) -> bytes | None:
    """The bytes of one property value (None: leave the property out)."""
    if value is None or value is False:
        return None
    if value is True:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, U64):
        for v in value:
            if not 0 <= v < 1 << 64:
                raise FdtError(f"u64 value {v:#x} out of range")
        return b"".join(struct.pack(">Q", v) for v in value)
    if isinstance(value, int):
        value = [value]
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value) and value:
            return b"".join(_string(v) for v in value)
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 32:
                raise FdtError(f"cell {v!r} is not a u32")
            out.append(struct.pack(">I", v))
        return b"".join(out)
    raise FdtError(f"cannot encode property value {value!r}")


def _string(s: str) -> bytes:
    if "\0" in s:
        raise FdtError(f"string {s!r} contains NUL")
    return s.encode() + b"\0"


def _pad4(b: bytearray) -> None:
    b.extend(b"\0" * (-len(b) % 4))


def encode(tree: dict, reserved: list[tuple[int, int]] | None = None, boot_cpuid: int = 0,
           pad: int = 0) -> bytes:
    """The DTB of `tree` (the root node). `reserved`: memory reservation (address, size) pairs;
    `pad`: free bytes appended inside totalsize, room for firmware to grow the tree in place."""
    strings = bytearray()
    offsets: dict[str, int] = {}
    struct_blk = bytearray()

    def name_off(name: str) -> int:
        off = offsets.get(name)
        if off is None:
            off = offsets[name] = len(strings)
            strings.extend(_string(name))
        return off

    def node(name: str, body: dict) -> None:
        if "/" in name or "\0" in name:
            raise FdtError(f"bad node name {name!r}")
        struct_blk.extend(struct.pack(">I", FDT_BEGIN_NODE))
        struct_blk.extend(name.encode() + b"\0")
        _pad4(struct_blk)
        children = []
        for key, value in body.items():
            if isinstance(value, dict):
                children.append((key, value))
                continue
            data = encode_value(value)
            if data is None:
                continue
            struct_blk.extend(struct.pack(">III", FDT_PROP, len(data), name_off(key)))
            struct_blk.extend(data)
            _pad4(struct_blk)
        for key, value in children:
            node(key, value)
        struct_blk.extend(struct.pack(">I", FDT_END_NODE))

    node("", tree)
    struct_blk.extend(struct.pack(">I", FDT_END))

    rsv = bytearray()
    for addr, size in reserved or []:
        rsv.extend(struct.pack(">QQ", addr, size))
    rsv.extend(struct.pack(">QQ", 0, 0))

    off_rsv = HEADER_SIZE  # 8-byte aligned, as the spec requires (5.3)
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(struct_blk)
    total = off_strings + len(strings)
    total += -total % 4 + pad
    header = struct.pack(">10I", FDT_MAGIC, total, off_struct, off_strings, off_rsv, VERSION,
                         LAST_COMP_VERSION, boot_cpuid, len(strings), len(struct_blk))
    blob = header + rsv + struct_blk + strings
    return blob + b"\0" * (total - len(blob))


def decode(blob: bytes) -> dict:
    """The tree of a DTB, with every property value as raw bytes (for tests and inspection)."""
    if len(blob) < HEADER_SIZE:
        raise FdtError("blob shorter than a DTB header")
    (magic, total, off_struct, off_strings, _off_rsv, version, _last, _cpu, size_strings,
     size_struct) = struct.unpack_from(">10I", blob, 0)
    if magic != FDT_MAGIC:
        raise FdtError(f"bad magic {magic:#x}")
    if version < 16 or total > len(blob):
        raise FdtError(f"unsupported or truncated DTB (version {version}, totalsize {total})")
    strings = blob[off_strings:off_strings + size_strings]
    pos = off_struct
    end = off_struct + size_struct
    stack: list[dict] = []
    root: dict | None = None
    while pos < end:
        (tok,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if tok == FDT_BEGIN_NODE:
            nul = blob.index(b"\0", pos)
            name = blob[pos:nul].decode()
            pos = nul + 1 + (-(nul + 1) % 4)
            new: dict = {}
            if stack:
                stack[-1][name] = new
            else:
                root = new
            stack.append(new)
        elif tok == FDT_END_NODE:
            stack.pop()
        elif tok == FDT_PROP:
            length, noff = struct.unpack_from(">II", blob, pos)
            pos += 8
            pname = strings[noff:strings.index(b"\0", noff)].decode()
            stack[-1][pname] = bytes(blob[pos:pos + length])
            pos += length + (-length % 4)
        elif tok == FDT_NOP:
            continue
        elif tok == FDT_END:
            break
        else:
            raise FdtError(f"bad structure token {tok:#x} at {pos - 4:#x}")
    if root is None or stack:
        raise FdtError("unbalanced structure block")
    return root


def cells(data: bytes) -> list[int]:
    """A property's value as u32 cells."""
    return list(struct.unpack(f">{len(data) // 4}I", data[:len(data) // 4 * 4]))


def strings_of(data: bytes) -> list[str]:
    """A property's value as a string list."""
    return [s.decode() for s in data.split(b"\0")[:-1]]
