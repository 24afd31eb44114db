"""The code's structure: no import cycles, hidden ones (imports inside functions) included, and
dependencies that point one way, stated by package (docs/architecture.md, docs/code-structure.md):

- translator/ knows nothing of the runtime, the monitor or the platforms; platforms/ are data.
- runtime/core/ (the machine) uses the translator and platforms only: never devices, boot, front
  ends, tools or the monitor.
- runtime/devices/ use the core (and the translator and platforms).
- runtime/boot/ uses the core and devices, never the front ends, tools or the monitor.
- runtime/tools/ use the core only.
- vfm/ acts through the machine (core and devices), never through boot, front ends or tools.
- runtime/frontends/ wire everything together, the monitor included; nothing but `runtime/__main__`
  imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("translator", "runtime", "vfm", "platforms")
# The packages runtime/ is made of; besides them it holds only __init__.py and __main__.py.
RUNTIME_PARTS = ("core", "devices", "boot", "frontends", "tools")
# Layer -> the layers its modules may import (their own layer always).
ALLOWED: dict[str, set[str]] = {
    "translator": set(),
    "platforms": set(),
    "runtime.core": {"translator", "platforms"},
    "runtime.devices": {"runtime.core", "translator", "platforms"},
    "runtime.boot": {"runtime.core", "runtime.devices", "translator", "platforms"},
    "runtime.tools": {"runtime.core"},
    "vfm": {"runtime.core", "runtime.devices", "translator", "platforms"},
    "runtime.frontends": {"runtime.core", "runtime.devices", "runtime.boot", "runtime.tools", "vfm",
                          "translator", "platforms"},
    # The package itself (`python3 -m runtime` starts the command line).
    "runtime": {"runtime.frontends"},
}


def _layer(mod: str) -> str:
    """translator.x -> translator, runtime.core.x -> runtime.core, runtime.__main__ -> runtime."""
    parts = mod.split(".")
    if parts[0] == "runtime" and len(parts) > 1 and parts[1] in RUNTIME_PARTS:
        return ".".join(parts[:2])
    return parts[0]


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


def _violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go against ALLOWED, one line each."""
    wrong = []
    for mod, deps in sorted(graph.items()):
        layer = _layer(mod)
        for dep in sorted(deps):
            dlayer = _layer(dep)
            if dlayer != layer and dlayer not in ALLOWED[layer]:
                wrong.append(f"{mod} -> {dep}: {layer} may import only {sorted(ALLOWED[layer])}")
    return wrong


def test_runtime_is_laid_out_by_role():
    mods = _modules()
    stray = sorted(m for m in mods if m.startswith("runtime.")
                   and m not in ("runtime.__main__",) and m.split(".")[1] not in RUNTIME_PARTS)
    assert stray == []
    assert {_layer(m) for m in mods} <= set(ALLOWED)


def test_dependencies_point_one_way():
    assert _violations(_imports(_modules())) == []


def test_the_checker_sees_wrong_directions():
    graph = {
        "runtime.core.machine": {"runtime.frontends.trace", "translator.isa", "runtime.core.hart"},
        "runtime.devices.uart": {"runtime.boot.fdt"},
        "runtime.boot.board": {"vfm.monitor", "runtime.devices.uart"},
        "vfm.monitor": {"runtime.frontends.cli", "runtime.core.hart"},
        "translator.isa": {"runtime.core.hart"},
        "runtime.frontends.cli": {"vfm.monitor", "runtime.boot.board", "runtime.tools.gate"},
    }
    assert [w.split(":")[0] for w in _violations(graph)] == [
        "runtime.boot.board -> vfm.monitor",
        "runtime.core.machine -> runtime.frontends.trace",
        "runtime.devices.uart -> runtime.boot.fdt",
        "translator.isa -> runtime.core.hart",
        "vfm.monitor -> runtime.frontends.cli",
    ]


# The monitor acts on the machine only through runtime/core/machine_api.py (issue 12): no private
# runtime name, no ABI module, no attribute assigned on the machine, no reach into its softmmu,
# translation cache or memory, and only members of MachineInterface.
MACHINE_INNARDS = {"mmu", "tcache", "mem"}


def _interface_members() -> set[str]:
    from runtime.core.machine_api import MachineInterface

    tree = ast.parse((ROOT / "runtime" / "core" / "machine_api.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == MachineInterface.__name__)
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    return names | {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def _is_machine(node: ast.AST) -> bool:
    """`machine` or `<anything>.machine`: how vfm/ names the machine it is attached to."""
    return (isinstance(node, ast.Name) and node.id == "machine") or (
        isinstance(node, ast.Attribute) and node.attr == "machine")


def _monitor_violations(source: str, where: str, members: set[str]) -> list[str]:
    """What in one vfm/ module breaks the rules above."""
    out = []
    runtime_modules: set[str] = set()  # Local names of what vfm/ imports from the runtime
    for node in ast.walk(ast.parse(source)):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "translator.abi" or a.name.startswith("translator.abi."):
                    out.append(f"{at}: imports {a.name}")
                if a.name.startswith("runtime") and any(p.startswith("_") for p in a.name.split(".")):
                    out.append(f"{at}: imports private {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full == "translator.abi" or node.module == "translator.abi":
                    out.append(f"{at}: imports from translator.abi")
                if node.module.split(".")[0] == "runtime":
                    if any(p.startswith("_") for p in full.split(".")):
                        out.append(f"{at}: imports private {full}")
                    runtime_modules.add(a.asname or a.name)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast.walk(t):
                    if isinstance(sub, ast.Attribute) and _is_machine(sub.value):
                        out.append(f"{at}: assigns machine.{sub.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            if node.args and _is_machine(node.args[0]):
                out.append(f"{at}: setattr on the machine")
        if isinstance(node, ast.Attribute):
            if node.attr in MACHINE_INNARDS:
                out.append(f"{at}: reaches .{node.attr}")
            if _is_machine(node.value) and node.attr not in members:
                out.append(f"{at}: machine.{node.attr} is not in MachineInterface")
            if (isinstance(node.value, ast.Name) and node.value.id in runtime_modules
                    and node.attr.startswith("_")):
                out.append(f"{at}: uses private {node.value.id}.{node.attr}")
    return out


def test_the_monitor_uses_only_the_machine_interface():
    members = _interface_members()
    bad = []
    for p in sorted((ROOT / "vfm").rglob("*.py")):
        bad += _monitor_violations(p.read_text(), str(p.relative_to(ROOT)), members)
    assert bad == []


def test_the_monitor_rules_catch_each_kind():
    members = {"request_exit"}
    bad = """
from translator import abi
from translator.abi import OFF_PC
import translator.abi
from runtime.core.machine import _runtime_build
from runtime.core import system
system._illegal(0)
self.machine.sys_hook = f
machine.monitor = self
self.machine.mmu.flush(h)
m.tcache.jc_flush(h, "x")
setattr(machine, "x", 1)
machine.request_exit(h)
machine.harts
"""
    found = _monitor_violations(bad, "x", members)
    kinds = [f.split(": ", 1)[1] for f in found]
    assert "imports from translator.abi" in kinds and "imports translator.abi" in kinds
    assert "imports private runtime.core.machine._runtime_build" in kinds
    assert "uses private system._illegal" in kinds
    assert "assigns machine.sys_hook" in kinds and "assigns machine.monitor" in kinds
    assert "reaches .mmu" in kinds and "reaches .tcache" in kinds
    assert "setattr on the machine" in kinds
    assert "machine.harts is not in MachineInterface" in kinds
    assert not any("request_exit" in k for k in kinds)
    assert _monitor_violations("machine.request_exit(h)\nx = hart.pc\n", "ok", members) == []


def test_the_machine_implements_its_interface():
    """Every member of MachineInterface exists on Machine; a method takes the interface's
    parameters first, in order, and any more only with defaults."""
    import inspect

    from runtime.core.machine import Machine
    from runtime.core.machine_api import MachineInterface

    missing = []
    for name in sorted(_interface_members()):
        proto = getattr(MachineInterface, name, None)
        if proto is None or not callable(proto):
            # A data member: set in Machine.__init__
            if f"self.{name}" not in inspect.getsource(Machine.__init__):
                missing.append(name)
            continue
        impl = getattr(Machine, name, None)
        if impl is None:
            missing.append(name)
        else:
            want = list(inspect.signature(proto).parameters)
            have = list(inspect.signature(impl).parameters.values())
            extra = have[len(want):]
            if [p.name for p in have[:len(want)]] != want or any(p.default is p.empty for p in extra):
                missing.append(f"{name}{inspect.signature(impl)} does not fit {inspect.signature(proto)}")
    assert missing == []
