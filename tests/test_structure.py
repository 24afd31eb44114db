"""The code's structure: no import cycles, hidden ones (imports inside functions) included, and
dependencies that point one way (docs/architecture.md): the translator knows nothing of the
runtime or the monitor, platforms are data, the monitor acts through the runtime but not through
its front ends, and only front ends wire the monitor in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("translator", "runtime", "vfm", "platforms")
# Runtime modules that wire everything together (and so may import the monitor).
FRONT_ENDS = {"runtime.cli", "runtime.gdbstub", "runtime.snippet"}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports pkg.mod when it is a module, else pkg.
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            for t in targets:
                r = resolve(t)
                if r is not None and r != name:
                    graph[name].add(r)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = _imports(_modules())
    assert _cycles(graph) == []


def test_the_checker_sees_hidden_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_dependencies_point_one_way():
    graph = _imports(_modules())
    wrong = []
    for mod, deps in graph.items():
        pkg = mod.split(".")[0]
        for dep in deps:
            dpkg = dep.split(".")[0]
            if pkg == "translator" and dpkg != "translator":
                wrong.append(f"{mod} -> {dep}: the translator knows no runtime, monitor or platform")
            elif pkg == "platforms" and dpkg != "platforms":
                wrong.append(f"{mod} -> {dep}: platforms are data")
            elif pkg == "vfm" and dep in FRONT_ENDS:
                wrong.append(f"{mod} -> {dep}: the monitor acts through the machine, not its front ends")
            elif pkg == "runtime" and dpkg == "vfm" and mod not in FRONT_ENDS:
                wrong.append(f"{mod} -> {dep}: only front ends wire the monitor in")
    assert wrong == []
