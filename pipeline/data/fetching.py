"""https corpus files: streamed into ``data/raw/.partial/``, resumed and retried, checked, unpacked.

A download survives an interruption: the next attempt (a retry after back-off, or a later run) resumes with an
HTTP ``Range`` request.  Every file is checked against its pinned sha256 before it is used; archives (.zip,
.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) are unpacked with every member checked to stay inside the corpus folder.
"""

from __future__ import annotations

import logging
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import requests
import urllib3

from pipeline.config import UrlFile, UrlSource
from pipeline.errors import UserError
from pipeline.files import sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 16
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class DownloadError(UserError):
    """A corpus that could not be materialised; the message names the corpus and the fix."""


# --------------------------------------------------------------------------- https


def _filename(file: UrlFile) -> str:
    """The name ``file`` is stored under: its ``filename`` (a plain name, checked with the params), else the
    last part of its URL's path (never ``.`` or ``..``)."""
    if file.filename:
        return file.filename
    name = PurePosixPath(urlparse(file.url).path).name
    return name if name not in ("", ".", "..") else "download"


def from_urls(name: str, source: UrlSource, dest: Path, partial_dir: Path, session: requests.Session) -> None:
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
    """Unpack a zip or tar archive into ``dest``, refusing any member that would land outside it (and, in a zip,
    any symbolic link).  A refused or unreadable archive is deleted: it matched its sha256 pin, so fetching it
    again cannot help."""
    try:
        (_extract_zip if archive.name.lower().endswith(".zip") else _extract_tar)(archive, dest, where)
    except DownloadError:
        archive.unlink(missing_ok=True)
        raise


def _extract_zip(archive: Path, dest: Path, where: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for m in zf.infolist():
                _check_member(m.filename, where)
                if stat.S_ISLNK(m.external_attr >> 16):  # zipfile would write the link's target as a file
                    raise DownloadError(f"{where}: archive member {m.filename!r} is a symbolic link; refusing the "
                                        f"archive (unpack it yourself and use a path source)")
            zf.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise DownloadError(f"{where}: not a readable zip archive ({e}); check the url and sha256 pin in "
                            f"params.yaml, or unpack it yourself and use a path source") from None


def _extract_tar(archive: Path, dest: Path, where: str) -> None:
    try:
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                _check_member(m.name, where)
                if m.issym() or m.islnk():
                    _check_member(str(PurePosixPath(m.name).parent / m.linkname), where)
            tf.extractall(dest, filter="data")
    except (tarfile.TarError, zlib.error, EOFError) as e:
        raise DownloadError(f"{where}: not a readable archive ({e}); check the url and sha256 pin in params.yaml, "
                            f"or unpack it yourself and use a path source") from None
