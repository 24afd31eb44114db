"""Instruction emitters: one function per instruction (or family), the single source of its semantics.

Each emitter receives the block builder and the decoded instruction and appends IR. Emitters that
end a block (branches, jumps, system instructions) set `b.terminated`.
"""

from __future__ import annotations

from collections.abc import Callable

from translator.isa import Insn

Emitter = Callable[["object", Insn], None]
EMITTERS: dict[str, Emitter] = {}
# Instructions that always end their block.
TERMINATORS: set[str] = set()


def emits(*names: str, terminator: bool = False) -> Callable[[Emitter], Emitter]:
    def register(fn: Emitter) -> Emitter:
        for n in names:
            assert n not in EMITTERS, f"two emitters for {n}"
            EMITTERS[n] = fn
            if terminator:
                TERMINATORS.add(n)
        return fn
    return register


def load_all() -> None:
    """Imports every emitter module so the registry is complete."""
    from translator.emit import rva, rvf, rvi, rvm, system  # noqa: F401
