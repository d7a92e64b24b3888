"""Local ``path`` sources: the files one selects, their sha256, and whether DVC watches them.

The download stage copies a ``path`` source (a file, or a folder's files matching ``pattern``) into
``data/raw/<corpus>/``.  Two checks keep that copy in step with its source:

* the copy's manifest lists the sha256 of every copied file; :func:`source_digest` hashes the source the
  same way, and :func:`pipeline.data.download.is_current` copies again when the two differ;
* ``dvc repro`` runs the download stage only for a change DVC can see, so every enabled path source must be
  one of the stage's ``deps`` in dvc.yaml (a file, or a folder above it).  :func:`check_tracked` names the
  sources that are not and the line to add; the stage calls it when DVC runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from pipeline.config import CorpusConfig, PathSource
from pipeline.errors import UserError
from pipeline.files import sha256_file


class UntrackedSourceError(UserError):
    """A path source DVC does not watch: editing it would not re-run the download stage."""


def selected_files(source: PathSource) -> list[tuple[str, Path]]:
    """``(name inside the corpus folder, file)`` for each file the source copies; empty if nothing is there."""
    src = Path(source.path).expanduser()
    if src.is_file():
        return [(src.name, src)]
    if not src.is_dir():
        return []
    return [(p.relative_to(src).as_posix(), p) for p in sorted(src.rglob(source.pattern)) if p.is_file()]


def source_digest(source: PathSource) -> dict[str, str]:
    """``{name: sha256}`` of the files the source selects, in the shape of a corpus manifest's ``files``."""
    return {name: sha256_file(path) for name, path in selected_files(source)}


def path_sources(corpora: Mapping[str, CorpusConfig]) -> dict[str, str]:
    """``{corpus: path}`` of every enabled corpus with a ``path`` source."""
    return {name: c.source.path for name, c in corpora.items() if c.enabled and isinstance(c.source, PathSource)}


def untracked_sources(corpora: Mapping[str, CorpusConfig], deps: Iterable[str], root: Path) -> dict[str, str]:
    """The enabled path sources (``{corpus: path}``) that no dep covers; paths relative to ``root``."""
    watched = [_absolute(dep, root) for dep in deps]
    return {name: path for name, path in path_sources(corpora).items()
            if not any(w == p or w in p.parents for p in [_absolute(path, root)] for w in watched)}


def stage_deps(dvc_yaml: Path, stage: str) -> list[str]:
    """The ``deps`` of ``stage`` in ``dvc_yaml`` (a foreach stage's ``stage@key`` reads its template)."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8")).get("stages", {})
    definition = stages.get(stage.split("@")[0], {})
    return [str(d) for d in definition.get("do", definition).get("deps", [])]


def check_tracked(corpora: Mapping[str, CorpusConfig], dvc_yaml: Path, stage: str) -> None:
    """Raise :class:`UntrackedSourceError` unless every enabled path source is one of ``stage``'s deps."""
    missing = untracked_sources(corpora, stage_deps(dvc_yaml, stage), Path(dvc_yaml).resolve().parent)
    if missing:
        listed = "; ".join(f"corpora.{name}.source.path {path!r}" for name, path in missing.items())
        lines = ", ".join(f"`- {path}`" for path in missing.values())
        raise UntrackedSourceError(
            f"{listed}: not a dependency of the {stage} stage, so `dvc repro` would not see it change; "
            f"add {lines} to stages.{stage}.deps in {dvc_yaml}")


def _absolute(path: str, root: Path) -> Path:
    return (root / Path(path).expanduser()).resolve()
