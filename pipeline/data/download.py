"""Materialise corpora into ``data/raw/<name>/`` from https, a local path or an installed package.

Each corpus folder is built in a temporary folder and moved into place whole, so a
failure never leaves a half-written corpus.  Beside it, ``<name>.manifest.json``
records the source it came from and the sha256 of every file; a later run whose
source is unchanged and whose files still match is skipped (nothing is fetched twice).

https downloads (resumed, retried, sha256-checked, archives unpacked safely) are
:mod:`pipeline.data.fetching`'s; local paths are hashed by :mod:`pipeline.data.sources`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import requests

from pipeline import files
from pipeline.config import CorpusConfig, PackageSource, PathSource, UrlSource, to_plain
from pipeline.data.fetching import DownloadError, from_urls
from pipeline.data.sources import selected_files, source_digest
from pipeline.files import sha256_file

#: Exporter for sources this module does not handle itself (e.g. ``music21``):
#: ``exporter(source, dest_dir) -> None`` writes the corpus files into ``dest_dir``.
Exporter = Callable[[object, Path], None]


@dataclasses.dataclass(frozen=True)
class CorpusReport:
    name: str
    files: int
    bytes: int
    skipped: bool  # already present and verified


# --------------------------------------------------------------------------- hashing and manifests


def _manifest_path(root: Path, name: str) -> Path:
    return root / f"{name}.manifest.json"


def _source_fingerprint(corpus: CorpusConfig) -> dict:
    return to_plain(corpus.source)


def _listing(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def is_current(root: Path, name: str, corpus: CorpusConfig) -> bool:
    """True when ``data/raw/<name>/`` came from this very source and no file changed since, at either end
    (a ``path`` source is hashed again: an edited source is copied again)."""
    folder, manifest = root / name, _manifest_path(root, name)
    if not folder.is_dir() or not manifest.is_file():
        return False
    try:
        recorded = files.read_json(manifest)
    except ValueError:
        return False
    if isinstance(corpus.source, PathSource) and recorded.get("files") != source_digest(corpus.source):
        return False
    return recorded.get("source") == _source_fingerprint(corpus) and recorded.get("files") == _listing(folder)


# --------------------------------------------------------------------------- entry point


def materialise(
    name: str,
    corpus: CorpusConfig,
    root: Path,
    exporters: dict[str, Exporter] | None = None,
    session: requests.Session | None = None,
) -> CorpusReport:
    """Make ``root/<name>/`` hold the corpus described by ``corpus``; skip if already current."""
    root = Path(root)
    if is_current(root, name, corpus):
        listing = _listing(root / name)
        size = sum((root / name / f).stat().st_size for f in listing)
        return CorpusReport(name, len(listing), size, skipped=True)
    try:
        _materialise(name, corpus, root, exporters, session)
    finally:  # a partly downloaded file stays for the next attempt to resume; empty folders do not
        _remove_empty(root / ".partial" / name, root / ".partial")
    listing = _listing(root / name)
    size = sum((root / name / f).stat().st_size for f in listing)
    return CorpusReport(name, len(listing), size, skipped=False)


def _remove_empty(*folders: Path) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):  # missing or not empty
            folder.rmdir()


def _materialise(name: str, corpus: CorpusConfig, root: Path, exporters: dict[str, Exporter] | None,
                 session: requests.Session | None) -> None:
    source = corpus.source
    with files.atomic_dir(root / name) as tmp:
        if isinstance(source, UrlSource):
            from_urls(name, source, tmp, root / ".partial" / name, session or requests.Session())
        elif isinstance(source, PathSource):
            _from_path(name, source, tmp)
        elif isinstance(source, PackageSource):
            _from_package(name, source, tmp)
        else:
            exporter = (exporters or {}).get(source.type)
            if exporter is None:
                raise DownloadError(f"corpus {name!r}: no exporter for source type {source.type!r}")
            exporter(source, tmp)
        listing = _listing(tmp)
        if not listing:
            raise DownloadError(f"corpus {name!r}: the source produced no files (check corpora.{name}.source)")
    files.write_json(_manifest_path(root, name), {"source": _source_fingerprint(corpus), "files": listing})
    shutil.rmtree(root / ".partial" / name, ignore_errors=True)


def prune(root: Path, keep: set[str]) -> list[str]:
    """Remove corpus folders (and manifests) under ``root`` that are no longer enabled."""
    removed = []
    for manifest in sorted(Path(root).glob("*.manifest.json")):
        name = manifest.name.removesuffix(".manifest.json")
        if name not in keep:
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            manifest.unlink()
            removed.append(name)
    return removed


# --------------------------------------------------------------------------- local sources


def _from_path(name: str, source: PathSource, dest: Path) -> None:
    src = Path(source.path).expanduser()
    if not src.exists():
        raise DownloadError(f"corpus {name!r}: path {str(src)!r} does not exist (fix corpora.{name}.source.path)")
    matched = selected_files(source)  # the same selection is_current hashes
    if not matched:
        raise DownloadError(f"corpus {name!r}: no file in {str(src)!r} matches pattern {source.pattern!r}")
    for rel, p in matched:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)


def _from_package(name: str, source: PackageSource, dest: Path) -> None:
    try:
        base = importlib.resources.files(source.package)
    except ModuleNotFoundError as e:
        raise DownloadError(
            f"corpus {name!r}: package {source.package!r} is not installed (pip install {source.package})"
        ) from e
    for rel in source.files:
        if any(ch in rel for ch in "*?["):
            # A glob needs a package installed as plain files (the normal case for wheels).
            matches = sorted(p for p in Path(str(base)).glob(rel) if p.is_file())
            if not matches:
                raise DownloadError(f"corpus {name!r}: no file in package {source.package!r} matches {rel!r}")
            resources = [(p.name, p) for p in matches]
        else:
            resource = base.joinpath(*PurePosixPath(rel).parts)
            if not resource.is_file():
                raise DownloadError(f"corpus {name!r}: package {source.package!r} has no file {rel!r}")
            resources = [(PurePosixPath(rel).name, resource)]
        for fname, resource in resources:
            target = dest / fname
            if target.exists():
                raise DownloadError(f"corpus {name!r}: two package files are both named {fname!r}; list them apart")
            target.write_bytes(resource.read_bytes())
