"""Atomic file writes and the small on-disk formats shared by the stages.

Every writer goes through a temporary file in the destination folder followed by
``os.replace``, so a crash or an error never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DISK_FULL, UserError


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual mode
        os.replace(tmp_path, path)
    except OSError as e:
        raise _in_place(e, tmp_path, path) from None
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as e:
        raise _in_place(e, tmp, path) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _in_place(error: OSError, tmp: Path, path: Path) -> OSError:
    """``error`` naming the output a user knows instead of its temporary twin: a file under ``tmp`` becomes the
    same file under ``path``; a full disk on a write that named no file (an open file's) names ``path``."""
    if error.filename is not None and (Path(error.filename) == tmp or tmp in Path(error.filename).parents):
        return named_os_error(error, path / Path(error.filename).relative_to(tmp))
    return named_os_error(error, path) if error.filename is None and error.errno in DISK_FULL else error


class OutputPathError(UserError):
    """An output folder that cannot be created or written; the message names it and the option that set it."""


def ensure_writable_dir(path: str | Path, option: str = "output folder") -> Path:
    """Create folder ``path`` if needed and check that a file can be written in it, before any work is done."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".seqlab-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputPathError(f"{path}: cannot write to this folder ({e.strerror or e}); choose another {option} "
                              f"or fix its permissions") from None
    return path


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline (stable diffs for DVC metrics)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def smallest_uint_dtype(max_value: int) -> np.dtype:
    """The narrowest unsigned integer dtype that holds ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def write_tokens(path: str | Path, ids: np.ndarray, vocab_size: int) -> None:
    """Save a 1-D token-id array as ``.npy`` in the smallest dtype that fits the vocabulary: the bytes
    ``np.save`` writes, through :func:`stream_tokens` so that a full disk names the file and its cause."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"token arrays are 1-D, got shape {ids.shape}")
    with stream_tokens(path, ids.size, vocab_size) as writer:
        writer.write(ids)


class TokenFileError(UserError):
    """A token array that is missing or unreadable; the message names the file and the stage that writes it."""


class TokenIdError(TokenFileError, ValueError):
    """A token id the vocabulary does not have: the token file and its ``vocab.json`` disagree."""


def token_id_error(bad: int, vocab_size: int, path: str | Path | None = None,
                   position: int | None = None) -> TokenIdError:
    """The one-line error for id ``bad`` (at ``position`` of the token file ``path``, when known)."""
    where, at = (f"{path}: " if path else ""), (f" at position {position}" if position is not None else "")
    dataset = (Path(path).parent.name if path else "") or "<dataset>"
    return TokenIdError(f"{where}token id {bad}{at} is outside the vocabulary (ids 0..{vocab_size - 1}): the token "
                        f"file and vocab.json disagree (a damaged or edited file); rerun the stage that writes them "
                        f"(dvc repro -f tokenize@{dataset}, or encode_midi@{dataset} for music)")


def first_bad_id(ids: np.ndarray, vocab_size: int) -> int | None:
    """The index of the first id in ``ids`` outside ``0..vocab_size - 1``, or None when every id is inside."""
    if not ids.size or (ids.max() < vocab_size and (ids.dtype.kind == "u" or ids.min() >= 0)):
        return None
    return int(np.flatnonzero((ids >= vocab_size) | (ids < 0))[0])


#: Why a streamed token file can come out with another length than its first pass counted.
_CHANGED = "the input changed while it was being read; run the stage again"


class TokenWriter:
    """Appends blocks of token ids to an open ``.npy`` file whose header announced their total number."""

    def __init__(self, file: Any, length: int, dtype: np.dtype, path: str | Path = "") -> None:
        self.file, self.length, self.dtype, self.written, self.path = file, length, dtype, 0, path

    def write(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=self.dtype)
        if ids.ndim != 1 or self.written + ids.size > self.length:
            raise TokenFileError(f"{self.path}: more token ids than the {self.length} counted before writing: "
                                 f"{_CHANGED}")
        try:
            self.file.write(ids.data)
        except OSError as e:
            raise named_os_error(e, self.path) from None
        self.written += ids.size


def named_os_error(error: OSError, path: str | Path) -> OSError:
    """``error`` with ``path`` as its file name (a write to an open file names none), keeping its errno."""
    return OSError(error.errno, error.strerror or str(error), str(path))


@contextlib.contextmanager
def stream_tokens(path: str | Path, length: int, vocab_size: int) -> Iterator[TokenWriter]:
    """Write a 1-D token array of ``length`` ids block by block: byte for byte the file :func:`write_tokens`
    writes for the same ids, moved into place only if the block succeeds and every id was written.

    Plain appends, not a memory map (``open_memmap``): pages written through a map count towards the process's
    resident memory until the kernel writes them back, so a split's output would show up in the peak RSS.
    """
    dtype = smallest_uint_dtype(max(vocab_size - 1, 0))
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    with atomic_path(path, suffix=".npy") as tmp:
        f = open(tmp, "wb")  # noqa: SIM115 - closed below, where a failing flush must name the file
        try:
            np.lib.format.write_array_header_1_0(f, header)  # the version np.save picks for any 1-D array
            writer = TokenWriter(f, length, dtype, path)
            yield writer
            if writer.written != length:
                raise TokenFileError(f"{path}: {writer.written} token ids written, {length} counted before: {_CHANGED}")
        except BaseException:
            with contextlib.suppress(OSError):  # the file is removed; a failing flush would hide the first error
                f.close()
            raise
        try:
            f.close()  # flushes the last buffered ids: a full disk can show here first
        except OSError as e:
            raise named_os_error(e, path) from None


def write_dataset(out: str | Path, vocab: Any, ids: dict[str, np.ndarray], stats: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> None:
    """A token dataset as the tokenize and encode_midi stages write it, all or nothing: ``vocab.json`` (``vocab``
    has ``save(path)`` and ``len``), ``<split>.npy`` per split, ``stats.json`` and one JSON file per ``extra`` key."""
    with atomic_dir(out) as tmp:
        vocab.save(tmp / "vocab.json")
        for split, split_ids in ids.items():
            write_tokens(tmp / f"{split}.npy", split_ids, len(vocab))
        write_json(tmp / "stats.json", stats)
        for name, content in (extra or {}).items():
            write_json(tmp / name, content)


def read_tokens(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """A 1-D token-id array, memory-mapped read-only in the dtype it was stored in (uint8/uint16/uint32).

    With ``vocab_size``, every id is first checked to be below it (:func:`check_token_file`): an id outside
    the vocabulary is a :class:`TokenIdError` naming the file, the id and its position.

    Nothing the size of the split is read or converted here: the operating system pages in what a caller
    touches, so a split of any size costs only the pages of the batches gathered from it (nanoGPT and fairseq
    read their token files the same way).  Callers index it and convert only the batch to int64
    (:func:`pipeline.data.windows.gather`); ``np.asarray(ids, np.int64)`` would copy the whole split.
    """
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise TokenFileError(f"{path}: token file not found; run the tokenize/encode_midi stage first (dvc repro)") from None
    except (ValueError, OSError) as e:
        raise TokenFileError(f"{path}: not a readable .npy token array ({e}); rerun the stage that writes it") from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TokenFileError(f"{path}: expected a 1-D integer array, got {ids.dtype} of shape {ids.shape}")
    if vocab_size is not None:
        check_token_file(path, ids, vocab_size)
    return ids


#: Ids read per step when a token file is checked against its vocabulary.
_CHECK_IDS = 1 << 22


def check_token_file(path: str | Path, ids: np.ndarray, vocab_size: int) -> None:
    """Raise :class:`TokenIdError` for the first id of token file ``path`` (``ids``: as :func:`read_tokens`
    mapped it) outside ``0..vocab_size - 1``.

    The file is read in blocks of :data:`_CHECK_IDS` ids into one buffer, not through the map: pages touched
    through a map count towards the process's resident memory, so a check of a 1 GB split would add 1 GB to it.
    A dtype too narrow to hold an id that large needs no reading at all.
    """
    if not ids.size or (ids.dtype.kind == "u" and np.iinfo(ids.dtype).max < vocab_size):
        return
    buffer = np.empty(min(_CHECK_IDS, ids.size), ids.dtype)
    with open(path, "rb") as f:
        f.seek(ids.offset)  # where the ids start, after the header
        for start in range(0, ids.size, buffer.size):
            block = buffer[: min(buffer.size, ids.size - start)]
            if f.readinto(block.view(np.uint8)) != block.nbytes:
                raise TokenFileError(f"{path}: shorter than its header says; rerun the stage that writes it")
            _check_block(path, block, start, vocab_size)


def _check_block(path: str | Path, block: np.ndarray, start: int, vocab_size: int) -> None:
    if (bad := first_bad_id(block, vocab_size)) is not None:
        raise token_id_error(int(block[bad]), vocab_size, path, start + bad)
