#!/usr/bin/env python3
"""Check the house rules the code can be checked for: import circles, upward imports, and
private attributes reached on other objects.

    tools/check_layers.py            # report; exit 1 if a circle or an upward import exists
    tools/check_layers.py --private  # also list every `other._name` access

Layers, lowest first (docs/architecture.md): errors, chardev, devices, machine, then the
management layer (options, monitor, testing, capture, cli, pytest_plugin). A module may import
its own layer and those below it. Imports under `if TYPE_CHECKING:` count too: a circle that
only the type checker sees is still two modules that know each other.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: package name -> source folder (e2kchar.devices lives in devices/, see pyproject.toml)
PACKAGES = {"e2kchar": ROOT / "e2kchar", "e2kchar.devices": ROOT / "devices"}
#: first component under e2kchar -> layer rank; anything not listed is the management layer
LAYERS = {"errors": 0, "chardev": 1, "devices": 2, "machine": 3}
MANAGEMENT = 4
#: underscore names that are public API by convention (namedtuple, enum, os, sys)
CONVENTIONAL = {"_replace", "_asdict", "_fields", "_make", "_exit", "_getframe", "_value_",
                "_name_", "_missing_", "_generate_next_value_", "_member_map_", "_thread"}
#: the one module allowed to reach into a third party's internals (unicorn's binding; its
#: docstring says why and how it falls back to the public API)
THIRD_PARTY_INTERNALS = {"e2kchar.machine.ucfast"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def modules() -> dict[str, Module]:
    out: dict[str, Module] = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "firmware" in parts:
                continue
            name = ".".join([pkg, *parts])
            if name.startswith("e2kchar.devices") and pkg == "e2kchar":
                continue
            out[name] = Module(name, path)
    return out


def layer(name: str) -> int:
    parts = name.split(".")
    if len(parts) == 1:
        return MANAGEMENT
    return LAYERS.get(parts[1], MANAGEMENT)


def imports(mod: Module, known: dict[str, Module]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of a package module in mod."""
    tree = ast.parse(mod.path.read_text(), str(mod.path))
    base = mod.name if mod.is_package else mod.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base.split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                target = ".".join(pkg + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    yield sub, node.lineno
                elif target in known:
                    yield target, node.lineno


def graph(known: dict[str, Module]) -> dict[str, dict[str, int]]:
    return {name: dict(imports(mod, known)) for name, mod in known.items()}


def circles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w == v:
                continue
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

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, dict[str, int]], known: dict[str, Module]) -> list[str]:
    out = []
    for name, deps in g.items():
        for dep, line in deps.items():
            if layer(dep) > layer(name):
                out.append(f"{known[name].path.relative_to(ROOT)}:{line}: {name} imports {dep}")
    return out


def private_accesses(known: dict[str, Module]) -> list[str]:
    """`x._name` where x is not self or cls: another object's private attribute."""
    out = []
    for mod in known.values():
        if mod.name in THIRD_PARTY_INTERNALS:
            continue
        tree = ast.parse(mod.path.read_text(), str(mod.path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in CONVENTIONAL:
                continue
            v = node.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls", "this"):
                continue  # `this` is construct's context, not an object of ours
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            out.append(f"{mod.path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--private", action="store_true", help="list private cross-object accesses")
    args = ap.parse_args(argv)
    known = modules()
    g = graph(known)
    circ = circles(g)
    up = upward(g, known)
    priv = private_accesses(known)
    for c in circ:
        print("circle: " + " <-> ".join(c))
    for u in up:
        print("upward: " + u)
    if args.private:
        for p in priv:
            print("private: " + p)
    print(f"{len(known)} modules, {len(circ)} circles, {len(up)} upward imports, "
          f"{len(priv)} private cross-object accesses")
    return 1 if circ or up else 0


if __name__ == "__main__":
    sys.exit(main())
