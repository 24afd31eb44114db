"""Rare instruction semantics computed in Python, reached through the helper callout."""

from __future__ import annotations

from collections.abc import Callable

HELPERS: dict[int, Callable[[int, int], int]] = {}


def helper(op: int) -> Callable[[Callable[[int, int], int]], Callable[[int, int], int]]:
    def register(fn: Callable[[int, int], int]) -> Callable[[int, int], int]:
        HELPERS[op] = fn
        return fn
    return register


def call(op: int, a: int, b: int) -> int:
    return HELPERS[op](a, b) & 0xFFFFFFFFFFFFFFFF
