"""No import cycles inside ``pipeline/``, at any depth.

The graph is built from the source with ``ast``, every import counted: module level, inside functions, under
``if TYPE_CHECKING:``, relative (``from . import x``).  A cycle means two modules are one idea split badly (a
loop and a reporter that holds the loop), whether or not Python happens to tolerate it at import time.

An edge goes to the module an import names: ``from pipeline.models import ensure_causal`` points at the package
``pipeline.models`` (its ``__init__``), ``from pipeline import files`` at the module ``pipeline.files``.  The
parent packages that Python runs on the way are not edges, as in import-linter (grimp): a package's
``__init__`` that re-exports its submodules is not a cycle with them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted name: file}`` for every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative levels resolved against ``module``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` itself when it is a module of the graph, else its longest prefix that is one, else None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, every ``import`` statement in the file counted."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [_known(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                targets = [_known(f"{base}.{alias.name}", modules) if f"{base}.{alias.name}" in modules
                           else _known(base, modules) for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t is not None and t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules that import one another."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; pipeline's depth is far below the recursion limit
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(min(group), group, graph) for group in groups]


def _cycle_through(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected group but on no cycle")  # cannot happen


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


# --------------------------------------------------------------------------- the check


def test_pipeline_has_no_import_cycles():
    graph = import_graph(REPO_ROOT, "pipeline")
    assert len(graph) > 50 and graph["pipeline.training.loop"], "the walk found too little of pipeline/"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in pipeline/ (merge the modules, or move what both need below them):\n" + (
        _describe(cycles))


# --------------------------------------------------------------------------- the detector itself


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_through_a_function_level_import_is_caught(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/loop.py": "from pkg.reporter import Reporter\n",
        "pkg/reporter.py": "class Reporter:\n    def attach(self):\n        from pkg import loop\n        return loop\n",
    })
    cycles = find_cycles(import_graph(root, "pkg"))
    assert cycles == [["pkg.loop", "pkg.reporter", "pkg.loop"]]
    assert "pkg.loop -> pkg.reporter -> pkg.loop" in _describe(cycles)


def test_type_checking_and_relative_imports_count(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from .state import State\n",
        "pkg/sub/state.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..step import Step\n",
        "pkg/step.py": "import pkg.sub.state\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.sub"] == {"pkg.sub.state"} and graph["pkg.sub.state"] == {"pkg.step"}
    assert find_cycles(graph) == [["pkg.step", "pkg.sub.state", "pkg.step"]]


def test_a_longer_cycle_is_named_and_an_acyclic_package_passes(tmp_path):
    root = _package(tmp_path, {
        "pkg/__init__.py": "from pkg.a import A\n",  # re-exporting a submodule is not a cycle
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "import os\nfrom pkg.c import C\n",
        "pkg/c.py": "C = 1\n",
    })
    assert find_cycles(import_graph(root, "pkg")) == []
    (root / "pkg/c.py").write_text("def late():\n    import pkg.a\n", encoding="utf-8")
    assert find_cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
