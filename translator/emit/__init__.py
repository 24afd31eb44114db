"""Instruction emitters: one function per instruction (or family), the single source of its semantics.

Each emitter receives the block builder and the decoded instruction and appends IR. Emitters that
end a block (branches, jumps, system instructions) set `b.terminated`.
"""

from __future__ import annotations

from translator.emit import rva, rvf, rvi, rvm, system  # noqa: F401 (they register their emitters)
from translator.emit.registry import EMITTERS, TERMINATORS, Emitter, emits

__all__ = ["EMITTERS", "TERMINATORS", "Emitter", "emits"]
