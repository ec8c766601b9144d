"""The house: raydask's modules import one way, also inside functions.

Data flows key → task spec → dispatch → Ray → completion → state → events →
dashboard, and the client is glue on top.  A module that imports one above it,
even lazily inside a function, ties the two into one circle: this test finds
every such circle in the source.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "raydask"

pytestmark = pytest.mark.timeout(60)


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: pathlib.Path, node, modules) -> list[str]:
    """The raydask modules ``node`` (an import statement in ``module``) imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        # ``from . import x`` imports the module x; ``from .m import name`` imports m
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    return [name for name in names if name in modules and name != module]


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for every import, at any depth of the code."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _imported(name, path, node, modules):
                    graph[name].setdefault(target, node.lineno)
    return graph


def find_cycle(graph) -> list[str] | None:
    """One circle of imports (``[a, b, ..., a]``), or None."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in graph[node]:
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_graph_reads_lazy_imports():
    """The walker sees imports inside functions, relative and absolute (else the next test proves nothing)."""
    graph = import_graph()
    assert "raydask.client" in graph["raydask.worker"]  # top level: worker builds clients
    assert "raydask.dashboard.server" in graph["raydask.client"]  # inside Client.__init__
    assert "raydask.dashboard.source" in graph["raydask.dashboard.server"]  # a function-level import
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_no_module_imports_one_above_it():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "an import circle: " + " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"
