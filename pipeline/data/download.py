"""Materialise corpora into ``data/raw/<name>/`` from https, a local path or an installed package.

Each corpus folder is built in a temporary folder and moved into place whole, so a
failure never leaves a half-written corpus.  Beside it, ``<name>.manifest.json``
records the source it came from and the sha256 of every file; a later run whose
source is unchanged and whose files still match is skipped (nothing is fetched twice).

https downloads stream into ``data/raw/.partial/`` and survive an interruption:
the next attempt (a retry after back-off, or a later run) resumes with an HTTP
``Range`` request.  Every file is checked against its pinned sha256 before it is
used; archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) are unpacked with
every member checked to stay inside the corpus folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import logging
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import requests
import urllib3

from pipeline import io
from pipeline.config import CorpusConfig, PackageSource, PathSource, UrlFile, UrlSource, to_plain
from pipeline.data.sources import selected_files, sha256_file, source_digest
from pipeline.errors import UserError

log = logging.getLogger(__name__)

CHUNK = 1 << 16
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

#: Exporter for sources this module does not handle itself (e.g. ``music21``):
#: ``exporter(source, dest_dir) -> None`` writes the corpus files into ``dest_dir``.
Exporter = Callable[[object, Path], None]


class DownloadError(UserError):
    """A corpus that could not be materialised; the message names the corpus and the fix."""


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
        recorded = io.read_json(manifest)
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
        files = _listing(root / name)
        size = sum((root / name / f).stat().st_size for f in files)
        return CorpusReport(name, len(files), size, skipped=True)
    try:
        _materialise(name, corpus, root, exporters, session)
    finally:  # a partly downloaded file stays for the next attempt to resume; empty folders do not
        _remove_empty(root / ".partial" / name, root / ".partial")
    files = _listing(root / name)
    size = sum((root / name / f).stat().st_size for f in files)
    return CorpusReport(name, len(files), size, skipped=False)


def _remove_empty(*folders: Path) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):  # missing or not empty
            folder.rmdir()


def _materialise(name: str, corpus: CorpusConfig, root: Path, exporters: dict[str, Exporter] | None,
                 session: requests.Session | None) -> None:
    source = corpus.source
    with io.atomic_dir(root / name) as tmp:
        if isinstance(source, UrlSource):
            _from_urls(name, source, tmp, root / ".partial" / name, session or requests.Session())
        elif isinstance(source, PathSource):
            _from_path(name, source, tmp)
        elif isinstance(source, PackageSource):
            _from_package(name, source, tmp)
        else:
            exporter = (exporters or {}).get(source.type)
            if exporter is None:
                raise DownloadError(f"corpus {name!r}: no exporter for source type {source.type!r}")
            exporter(source, tmp)
        files = _listing(tmp)
        if not files:
            raise DownloadError(f"corpus {name!r}: the source produced no files (check corpora.{name}.source)")
    io.write_json(_manifest_path(root, name), {"source": _source_fingerprint(corpus), "files": files})
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


# --------------------------------------------------------------------------- https


def _filename(file: UrlFile) -> str:
    return file.filename or PurePosixPath(urlparse(file.url).path).name or "download"


def _from_urls(name: str, source: UrlSource, dest: Path, partial_dir: Path, session: requests.Session) -> None:
    partial_dir.mkdir(parents=True, exist_ok=True)
    for file in source.files:
        fname = _filename(file)
        part = partial_dir / fname
        fetch(name, file, part, session, timeout_s=source.timeout_s, retries=source.retries)
        if file.extract and fname.lower().endswith(ARCHIVE_SUFFIXES):
            extract_archive(part, dest, where=f"corpus {name!r}: {fname}")
            part.unlink()
        else:
            shutil.move(part, dest / fname)


def fetch(
    name: str, file: UrlFile, part: Path, session: requests.Session, timeout_s: float = 30.0, retries: int = 4
) -> None:
    """Download ``file.url`` into ``part`` (resuming what is there) and verify its sha256."""
    expected = file.sha256.lower()
    if part.exists() and sha256_file(part) == expected:
        return
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            _stream(file.url, part, session, timeout_s)
            break
        except _Permanent as e:
            raise DownloadError(f"corpus {name!r}: {e}") from None
        except (requests.ConnectionError, requests.Timeout, _Transient) as e:
            if attempt == retries:
                raise DownloadError(
                    f"corpus {name!r}: cannot fetch {file.url} after {retries + 1} attempts ({_short(e)}); "
                    f"if you are offline, download it elsewhere and set corpora.{name}.source to "
                    f"{{type: path, path: <file or folder>}}"
                ) from None
            log.warning("corpus %s: %s; retrying in %.1fs", name, _short(e), delay)
            time.sleep(delay)
            delay *= 2
    actual = sha256_file(part)
    if actual != expected:
        part.unlink()
        raise DownloadError(
            f"corpus {name!r}: sha256 mismatch for {file.url}: expected {expected}, got {actual} "
            f"(the file changed upstream or the pin in params.yaml is wrong)"
        )


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, a connection cut mid-body)."""


class _Permanent(Exception):
    """A failure that retrying cannot fix (404, 403, ...)."""


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]


def _stream(url: str, part: Path, session: requests.Session, timeout_s: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    # identity encoding: the bytes on disk must be the bytes the sha256 pins, and Range offsets count them.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    with session.get(url, headers=headers, stream=True, timeout=timeout_s) as resp:
        if resp.status_code == 416 and have:  # we already hold every byte
            return
        if resp.status_code in (429,) or resp.status_code >= 500:
            raise _Transient(f"HTTP {resp.status_code} from {url}")
        if resp.status_code >= 400:
            raise _Permanent(f"HTTP {resp.status_code} from {url} (check corpora.*.source.files[].url)")
        mode = "ab" if resp.status_code == 206 else "wb"  # 200: server ignored Range, start over
        if resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()  # inconsistent answer: start over on the next attempt
            raise _Transient(f"server answered Range {have}- with {resp.headers.get('Content-Range')!r}")
        expected_len = resp.headers.get("Content-Length")
        written = 0
        try:
            with open(part, mode) as f:
                # raw reads hand over every byte received before a cut (iter_content drops the last chunk).
                while chunk := resp.raw.read(CHUNK, decode_content=False):
                    f.write(chunk)
                    written += len(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError, TimeoutError) as e:
            raise _Transient(f"connection cut after {written} bytes") from e
        if expected_len is not None and written < int(expected_len):
            raise _Transient(f"connection cut after {written} of {expected_len} bytes")


# --------------------------------------------------------------------------- archives


def _check_member(name: str, where: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DownloadError(f"{where}: archive member {name!r} would escape the target folder; refusing the archive")
    return path


def extract_archive(archive: Path, dest: Path, where: str) -> None:
    """Unpack a zip or tar archive into ``dest``, refusing any member that would land outside it."""
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for m in members:
                    _check_member(m.filename, where)
                zf.extractall(dest)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            archive.unlink(missing_ok=True)  # it matched its sha256 pin, so fetching it again cannot help
            raise DownloadError(f"{where}: not a readable zip archive ({e}); check the url and sha256 pin in "
                                f"params.yaml, or unpack it yourself and use a path source") from None
        return
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_member(m.name, where)
                if m.issym() or m.islnk():
                    _check_member(str(PurePosixPath(m.name).parent / m.linkname), where)
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, zlib.error, EOFError) as e:
        archive.unlink(missing_ok=True)
        raise DownloadError(f"{where}: not a readable archive ({e}); check the url and sha256 pin in params.yaml, "
                            f"or unpack it yourself and use a path source") from None
