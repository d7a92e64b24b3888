"""Text corpora split into train/val/test: records (:mod:`pipeline.data.reading`) assigned to splits.

The corpus is streamed: :func:`plan_splits` reads the records once and keeps a few bytes per record (a split
id; a length for a by-characters split), then :func:`iter_split_blocks` reads them again in blocks of about
:data:`BLOCK_BYTES`, each block's records sorted into train/val/test (:func:`load_split_records` collects
them all, for small corpora).  Memory grows with the block, the longest record and the number of records,
never with the corpus text, with two exceptions: ``record: regex`` reads each file whole (a match may span any
number of lines, which no chunked scan can follow exactly), so it needs memory for the largest file; and
``dedupe`` keeps a 16-byte hash of every distinct record (it is meant for name lists).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress
from pathlib import Path

import numpy as np

from pipeline.config import SplitConfig
from pipeline.data.reading import BLOCK_BYTES, TextCorpusError, corpus_files, iter_record_blocks
from pipeline.errors import SeqlabWarning

SPLITS = ("train", "val", "test")
DROPPED = len(SPLITS)  # the split id of a repeated record that ``dedupe`` drops


def _split_file(raw_dir: Path, split: SplitConfig, name: str) -> Path:
    path = raw_dir / split.files[name]
    if not path.is_file():
        present = ", ".join(p.name for p in corpus_files(raw_dir))
        raise TextCorpusError(f"{path}: split file for {name!r} not found (files here: {present})")
    return path


def load_split_records(
    raw_dir: Path, record: str, split: SplitConfig, pattern: str | None = None, dedupe: bool = False
) -> dict[str, list[str]]:
    """A corpus folder's records per split (``train``, ``val``, ``test``), all in memory: for small corpora.

    With ``dedupe`` a record repeated anywhere in the corpus is kept once (its first occurrence), so the same
    name can never be in both train and val.
    """
    plan = plan_splits(raw_dir, record, split, pattern, dedupe)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for block in iter_split_blocks(plan, record, pattern):
        for name, records in zip(SPLITS, block, strict=True):
            out[name] += records
    return out


def split_records(records: Sequence[str], split: SplitConfig, by_length: bool = False) -> dict[str, list[str]]:
    """Assign records to splits as :func:`split_assignment` does (``by_length``: shares count characters)."""
    lengths = np.fromiter((len(r) + 1 for r in records), np.uint32, len(records)) if by_length else None
    assign = split_assignment(len(records), split, (lambda: [lengths]) if by_length else None)
    return {name: list(compress(records, (assign == i).tolist())) for i, name in enumerate(SPLITS)}


def split_assignment(n: int, split: SplitConfig, lengths: Callable[[], Iterable[np.ndarray]] | None = None,
                     total: int | None = None) -> np.ndarray:
    """The split of each of ``n`` records, as a (n,) uint8 array of 0 (train), 1 (val), 2 (test).

    ``contiguous``: head/tail; ``random``: a seeded shuffle of the record indices (corpus order is kept inside
    a split by the callers, who read records in order).  Shares count records, or with ``lengths`` (contiguous
    only) characters: the cut falls at the end of the line holding the ``1 - val - test`` mark of the text, as
    nanoGPT cuts tinyshakespeare at 90 %.  ``lengths()`` yields each record's characters + 1 (the ``<eos>``
    closing it) block by block, and is called again for each pass (a streamed corpus is read again rather than
    kept); ``total``, their sum, saves one pass when the caller knows it.
    """
    n_val, n_test = round(n * split.val), round(n * split.test)
    n_train = n - n_val - n_test
    if lengths is not None and split.method == "contiguous" and n:
        if total is None:
            total = sum(int(block.sum(dtype=np.int64)) for block in lengths())
        total = np.int64(total)  # a numpy scalar, so numpy's round(), as the cut always was
        # round(): 1 - 0.2 - 0.1 is 0.7000000000000001, which would push a mark sitting on a line end one line on.
        marks = round(total * (1 - split.val - split.test), 6), round(total * (1 - split.test), 6)
        below_train, below_val = _ends_below(lengths(), marks)
        n_train = below_train + 1
        n_val = min(n - n_train, below_val + 1 - n_train)
        n_test = n - n_train - n_val
    if split.method == "contiguous":
        return np.repeat(np.arange(3, dtype=np.uint8), [n_train, n_val, n_test])
    order = np.random.default_rng(split.seed).permutation(n)
    assign = np.full(n, 2, np.uint8)
    assign[order[:n_train]] = 0
    assign[order[n_train : n_train + n_val]] = 1
    return assign


def _ends_below(blocks: Iterable[np.ndarray], marks: Sequence[float]) -> list[int]:
    """How many records end before each mark (``searchsorted`` over their cumulative ends), a million records
    at a time so that no int64 copy of all the ends is made."""
    below, offset = [0] * len(marks), np.int64(0)
    for lengths in blocks:
        for start in range(0, lengths.size, 1 << 20):
            ends = offset + np.cumsum(lengths[start : start + (1 << 20)], dtype=np.int64)
            below = [b + int(np.searchsorted(ends, mark)) for b, mark in zip(below, marks, strict=True)]
            offset = ends[-1]
    return below


# --------------------------------------------------------------------------- streaming: plan, then blocks


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Where each record of a streamed corpus goes: ``assign[i]`` is the split id (0 train, 1 val, 2 test, or
    :data:`DROPPED` for a repeat under ``dedupe``) of the i-th record read from ``paths`` in order."""

    raw_dir: Path
    paths: tuple[Path, ...]
    assign: np.ndarray  # (records,) uint8
    records: dict[str, int]  # kept records per split


def plan_splits(raw_dir: Path, record: str, split: SplitConfig, pattern: str | None = None, dedupe: bool = False,
                block_bytes: int = BLOCK_BYTES) -> SplitPlan:
    """Pass 1 of a streamed corpus: read every record once and decide its split as :func:`load_split_records`
    would, keeping two bytes per record (kept, split id), with ``dedupe`` a hash of each distinct record, and for
    a random split, while it is drawn, numpy's permutation (8 bytes per record).  A by-characters split reads the
    records once more to find where the marks fall instead of keeping every record's length."""
    raw_dir = Path(raw_dir)
    seen: set[bytes] | None = set() if dedupe else None
    if split.method == "files":  # each file is checked just before it is read, as the reference does
        paths, parts = [], []
        for i, name in enumerate(SPLITS):
            paths.append(_split_file(raw_dir, split, name))
            kept, _ = _scan(iter_record_blocks(paths[-1:], record, pattern, block_bytes), seen)
            parts.append(np.where(kept, np.uint8(i), np.uint8(DROPPED)))
        assign = np.concatenate(parts)
    else:
        paths = corpus_files(raw_dir)
        by_length = record == "verbatim_line" and split.method == "contiguous"
        kept, total = _scan(iter_record_blocks(paths, record, pattern, block_bytes), seen)

        def lengths() -> Iterator[np.ndarray]:  # the kept records' lengths, read again from the corpus
            return _kept_lengths(iter_record_blocks(paths, record, pattern, block_bytes), kept)

        assign = np.full(kept.size, DROPPED, np.uint8)
        assign[kept] = split_assignment(int(np.count_nonzero(kept)), split, lengths if by_length else None, total)
    counts = [np.count_nonzero(assign == i) for i in range(DROPPED + 1)]  # bincount would copy assign as int64
    if not counts[0]:
        raise TextCorpusError(f"{raw_dir}: no non-blank {record} in the training split; the corpus is empty")
    _warn_empty_splits(raw_dir, record, split, counts)
    return SplitPlan(raw_dir, tuple(paths), assign, {name: int(counts[i]) for i, name in enumerate(SPLITS)})


def _warn_empty_splits(raw_dir: Path, record: str, split: SplitConfig, counts: list[int]) -> None:
    """One warning line when a split given a share gets no record (a corpus of one long line, or a few)."""
    empty = [name for i, name in ((1, "val"), (2, "test")) if not counts[i] and getattr(split, name) > 0]
    if split.method == "files" or not empty:
        return
    records = sum(counts[:DROPPED])
    more = {"paragraph": "more paragraphs (blank lines between them)", "regex": "more matches of record_pattern"}
    warnings.warn(f"{raw_dir}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty: the corpus "
                  f"has {records} {record} record{'s' if records != 1 else ''}, and a record is never cut between "
                  f"splits; break the text into "
                  f"{more.get(record, 'more lines (e.g. fold -s -w 1000 on a text without newlines)')}"
                  + (", or the train stage stops on the empty validation split" if "val" in empty else ""),
                  SeqlabWarning, stacklevel=3)


def _scan(blocks: Iterable[list[str]], seen: set[bytes] | None) -> tuple[np.ndarray, int]:
    """Per record, whether it is kept (with ``seen``: the first of its text); the kept ones' lengths + 1, summed.

    One growing buffer, not an array per block: thousands of small arrays left among a pass's freed strings
    would each pin a block of the heap, ~150 MB for 1 GB of text."""
    kept, total = bytearray(), 0
    for block in blocks:
        if seen is None:
            kept += b"\x01" * len(block)
        else:
            mask = [_first_time(r, seen) for r in block]
            kept += bytes(mask)
            block = list(compress(block, mask))
        total += sum(map(len, block)) + len(block)
    return np.frombuffer(kept, dtype=bool), total


def _kept_lengths(blocks: Iterable[list[str]], kept: np.ndarray) -> Iterator[np.ndarray]:
    """Per block, the lengths + 1 of its records that ``kept`` keeps (uint32)."""
    start = 0
    for block in blocks:
        mask = kept[start : start + len(block)]
        start += len(block)
        yield np.fromiter(map(len, compress(block, mask.tolist())), np.uint32) + 1


def _first_time(record: str, seen: set[bytes]) -> bool:
    # 16 bytes of blake2b instead of the text: memory per distinct record stays flat, and no run will ever meet
    # a collision (Python's hash() would be 8 bytes, and salted differently in every process).
    digest = hashlib.blake2b(record.encode(), digest_size=16).digest()
    if digest in seen:
        return False
    seen.add(digest)
    return True


def iter_split_blocks(plan: SplitPlan, record: str, pattern: str | None = None,
                      block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Read the corpus of ``plan`` again: per block of records, its train, val and test records in order."""
    start = 0
    for block in iter_record_blocks(plan.paths, record, pattern, block_bytes):
        assign = plan.assign[start : start + len(block)]
        start += len(block)
        if assign.size < len(block):
            break
        yield _select(block, assign, 0), _select(block, assign, 1), _select(block, assign, 2)
    if start != plan.assign.size:
        raise TextCorpusError(f"{plan.raw_dir}: the corpus changed while it was being read; run the stage again")


def _select(block: list[str], assign: np.ndarray, split_id: int) -> list[str]:
    mask = assign == split_id
    if mask.all():
        return block
    return list(compress(block, mask.tolist())) if mask.any() else []
