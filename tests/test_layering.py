"""The composition root stays on top: no package imports it, and no import cycle crosses packages.

Imports are read from the source (function-level imports included, since they close cycles just the same).
`blacksoil.cli`, `blacksoil.platform` and `blacksoil.flywheel_bench` (which runs the whole platform) are the only
modules that may know every pillar.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "blacksoil"
ROOT_MODULES = {"blacksoil.cli", "blacksoil.platform", "blacksoil.flywheel_bench"}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    path, is_pkg = MODULES[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("blacksoil"):
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    hit = full if full in MODULES else _resolve(target)
                    if hit:
                        found.add(hit)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("blacksoil") and (hit := _resolve(alias.name)):
                    found.add(hit)
    found.discard(module)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in GRAPH:
        if start in index:
            continue
        work = [(start, iter(sorted(GRAPH[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ROOT_MODULES))
def test_no_module_below_the_root_imports_it(module: str) -> None:
    assert GRAPH[module] & ROOT_MODULES == set()


def test_no_import_cycle_crosses_packages() -> None:
    assert [c for c in _cycles() if len({_package(m) for m in c}) > 1] == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    GRAPH["blacksoil.errors"].add("blacksoil.platform")
    try:
        assert any("blacksoil.errors" in c for c in _cycles())
    finally:
        GRAPH["blacksoil.errors"].discard("blacksoil.platform")
