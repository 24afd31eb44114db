"""IR text: values, labels, instructions and the helpers every builder part writes with."""

from __future__ import annotations

I64_MASK = (1 << 64) - 1


def const(v: int | str) -> str:
    """An i64 constant as LLVM spells it (signed decimal); an IR value (the interpreter's run-time
    instruction fields, translator/interp.py) stands for itself."""
    if isinstance(v, str):
        return v
    v &= I64_MASK
    return str(v - (1 << 64) if v >> 63 else v)


class IrText:
    """Appends LLVM IR text to `lines`; numbers temporaries (`_tmp`) and labels (`_label`)."""

    lines: list[str]
    _tmp: int
    _label: int

    def tmp(self) -> str:
        self._tmp += 1
        return f"%t{self._tmp}"

    def label(self, hint: str = "L") -> str:
        self._label += 1
        return f"{hint}{self._label}"

    def emit(self, line: str) -> None:
        self.lines.append("  " + line)

    def start_block(self, label: str) -> None:
        self.lines.append(f"{label}:")

    def _last_label(self) -> str:
        for line in reversed(self.lines):
            if not line.startswith("  "):
                return line[:-1]
        return "entry"

    def field_ptr(self, off: int) -> str:
        t = self.tmp()
        self.emit(f"{t} = getelementptr inbounds i8, ptr %h, i64 {off}")
        return t

    def load_field(self, off: int, ty: str = "i64") -> str:
        p = self.field_ptr(off)
        t = self.tmp()
        self.emit(f"{t} = load {ty}, ptr {p}")
        return t

    def store_field(self, off: int, value: str, ty: str = "i64") -> None:
        p = self.field_ptr(off)
        self.emit(f"store {ty} {value}, ptr {p}")

    def op(self, opcode: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = {opcode} {ty} {a}, {b}")
        return t

    def cast(self, opcode: str, v: str, src: str, dst: str) -> str:
        t = self.tmp()
        self.emit(f"{t} = {opcode} {src} {v} to {dst}")
        return t

    def icmp(self, cond: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = icmp {cond} {ty} {a}, {b}")
        return t

    def select(self, c: str, a: str, b: str, ty: str = "i64") -> str:
        t = self.tmp()
        self.emit(f"{t} = select i1 {c}, {ty} {a}, {ty} {b}")
        return t

    def zext_bool(self, c: str) -> str:
        return self.cast("zext", c, "i1", "i64")

    def sext32(self, v: str) -> str:
        """Sign-extends the low 32 bits of an i64 (the RV64 *W rule)."""
        t = self.cast("trunc", v, "i64", "i32")
        return self.cast("sext", t, "i32", "i64")

    def call(self, ret: str, fn: str, args: str) -> str:
        t = self.tmp()
        self.emit(f"{t} = call {ret} {fn}({args})")
        return t

    def eq(self, a, b: int) -> bool | str:
        """a == b: a Python bool when a is known now, else an i1 value."""
        if isinstance(a, int):
            return a == b
        return self.icmp("eq", a, str(b))

    def ne(self, a, b: int) -> bool | str:
        """a != b: a Python bool when a is known now, else an i1 value."""
        if isinstance(a, int):
            return a != b
        return self.icmp("ne", a, str(b))

    def both(self, a: bool | str, b: bool | str) -> bool | str:
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        return self.op("and", a, b, "i1")

    def when(self, cond: bool | str, body) -> None:
        """Emits body() where cond holds; body's code may leave or fall through to what follows."""
        if cond is False:
            return
        if cond is True:
            body()
            return
        yes, no = self.label("when"), self.label("whenot")
        self.emit(f"br i1 {cond}, label %{yes}, label %{no}")
        self.start_block(yes)
        body()
        self.emit(f"br label %{no}")
        self.start_block(no)
