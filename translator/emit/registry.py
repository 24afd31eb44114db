"""The emitter registry: `@emits(name, ...)` enters a function as the semantics of instructions."""

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
