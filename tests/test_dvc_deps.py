"""dvc.yaml's code deps match the code each stage really runs.

For every stage whose command is ``python -m stages.<name>``, the test follows the stage module's imports
(module-level and inside functions: stages import the library lazily) through ``pipeline/`` and ``stages/``
and fails when a ``pipeline/`` file it reaches is not covered by one of the stage's deps (a file, or a folder
above it).  ``foreach`` stages are checked through their template.  Imports under ``if TYPE_CHECKING:`` never
run and are not followed.  A dep line that covers nothing the stage runs is stale and fails too: it would
re-run the stage for code it does not use.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PACKAGES = ("pipeline", "stages")
# The root package's __init__ runs on every import; it must stay import-free (checked below), so listing it
# in every stage would only re-run the whole pipeline for a version bump.  A package __init__ that holds a
# docstring only (pipeline/evaluation/) runs no code either.
EXEMPT = {"pipeline/__init__.py", "stages/__init__.py"}


def _runs_no_code(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


# --------------------------------------------------------------------------- following imports


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _with_parents(module: str) -> set[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = module.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def direct_imports(module: str, root: Path = REPO_ROOT) -> set[str]:
    """The project modules that running ``module`` imports, wherever the import statement sits."""
    path = module_file(module, root)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found |= _with_parents(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pipeline import files` is a module
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m, root) is not None}


def runs(module: str, root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """Every project module that running ``module`` imports, transitively, each with the chain that got there."""
    chains = {m: [module, m] for m in _with_parents(module) if module_file(m, root)}
    chains[module] = [module]
    todo = list(chains)
    while todo:
        current = todo.pop()
        for imported in sorted(direct_imports(current, root)):
            if imported not in chains:
                chains[imported] = [*chains[current], imported]
                todo.append(imported)
    return chains


# --------------------------------------------------------------------------- reading dvc.yaml


def stage_code(root: Path = REPO_ROOT) -> dict[str, tuple[str, list[str]]]:
    """``{stage: (stage module, code deps)}``; a foreach stage is read through its ``do`` template."""
    out = {}
    for name, stage in yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items():
        body = stage.get("do", stage)
        match = re.search(r"python -m (stages\.\w+)", " ".join(str(body["cmd"]).split()))
        if match:
            deps = [str(d) for d in body.get("deps", []) if str(d).split("/")[0] in PACKAGES and "${" not in str(d)]
            out[name] = (match.group(1), deps)
    return out


def _rel(module: str, root: Path) -> str:
    return module_file(module, root).relative_to(root).as_posix()


def _covered(path: str, dep: str) -> bool:
    return path == dep.rstrip("/") or path.startswith(dep.rstrip("/") + "/")


def missing_deps(stage: str, root: Path = REPO_ROOT) -> dict[str, list[str]]:
    """``{file: import chain}`` of each ``pipeline/`` file (and the stage module) the stage runs but does not list."""
    module, deps = stage_code(root)[stage]
    chains = runs(module, root)
    needed = {_rel(m, root): chain for m, chain in chains.items() if m.startswith("pipeline") or m == module}
    return {path: chain for path, chain in sorted(needed.items())
            if path not in EXEMPT and not _runs_no_code(root / path) and not any(_covered(path, dep) for dep in deps)}


def stale_deps(stage: str, root: Path = REPO_ROOT) -> list[str]:
    """Code deps that cover no file the stage runs (or do not exist)."""
    module, deps = stage_code(root)[stage]
    files = {_rel(m, root) for m in runs(module, root)}
    return [dep for dep in deps if not any(_covered(f, dep) for f in files)]


# --------------------------------------------------------------------------- the checks

STAGES = sorted(stage_code())


def test_every_python_stage_is_checked():
    assert {"download", "tokenize", "encode_midi", "train", "evaluate", "baseline", "report"} <= set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_library_file_it_imports(stage):
    missing = missing_deps(stage)
    assert not missing, f"dvc.yaml: stage {stage} runs code its deps do not list:\n" + "\n".join(
        f"  {path}  (via {' -> '.join(chain)})" for path, chain in missing.items())


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_list_no_code_the_stage_does_not_run(stage):
    assert stale_deps(stage) == [], f"dvc.yaml: stage {stage} lists deps it never imports (a needless re-run)"


def test_the_exempt_root_packages_import_nothing():
    for path in EXEMPT:
        tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], path


def test_imports_inside_functions_and_parent_packages_are_followed(tmp_path):
    """The walker itself: a lazy import inside a function, ``from pkg import module``, relative imports,
    the parent package's __init__ and its own imports are all reached; TYPE_CHECKING-only imports are not."""
    files = {
        "stages/__init__.py": "",
        "stages/s.py": "def run():\n    from pipeline.a import sub\n    return sub\n",
        "pipeline/__init__.py": "",
        "pipeline/a/__init__.py": "from pipeline import b\nfrom pipeline.docstring_only import e\n",
        "pipeline/a/sub.py": "from typing import TYPE_CHECKING\nfrom . import c\nif TYPE_CHECKING:\n"
                             "    from pipeline import d\n",
        "pipeline/a/c.py": "X = 1\n", "pipeline/b.py": "X = 1\n", "pipeline/d.py": "X = 1\n",
        "pipeline/unused.py": "X = 1\n", "pipeline/docstring_only/__init__.py": '"""Nothing runs here."""\n',
        "pipeline/docstring_only/e.py": "X = 1\n",
        "dvc.yaml": "stages:\n  s:\n    foreach: [x]\n    do:\n      cmd: python -m stages.s --x ${item}\n"
                    "      deps: [stages/s.py, pipeline/a, pipeline/docstring_only/e.py, pipeline/unused.py, 'data/${item}']\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert set(runs("stages.s", tmp_path)) == {"stages", "stages.s", "pipeline", "pipeline.a", "pipeline.a.sub",
                                                "pipeline.a.c", "pipeline.b", "pipeline.docstring_only",
                                                "pipeline.docstring_only.e"}
    assert list(missing_deps("s", tmp_path)) == ["pipeline/b.py"]
    assert missing_deps("s", tmp_path)["pipeline/b.py"] == ["stages.s", "pipeline.a", "pipeline.b"]
    assert stale_deps("s", tmp_path) == ["pipeline/unused.py"]
