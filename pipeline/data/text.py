"""Text corpora: read raw files strictly as UTF-8, cut them into records, split records into train/val/test.

A *record* is the unit that ``<eos>`` closes and that splits are made of: a line
(names, Penn Treebank sentences, verse) or a paragraph (prose: the lines between
blank lines, joined with a space).  Blank records are dropped, except with ``verbatim_line``: every line,
blank ones too, so that the token stream is the text itself with ``<eos>`` for each newline (how char-rnn
and nanoGPT read tinyshakespeare).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.config import SplitConfig
from pipeline.errors import UserError

SPLITS = ("train", "val", "test")


class TextCorpusError(UserError):
    """A text corpus that cannot be read or split; the message names the file."""


def read_text(path: Path) -> str:
    """Decode ``path`` as UTF-8 (BOM dropped, newlines normalised), naming the byte offset of bad input."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if looks_binary(data):
            raise TextCorpusError(
                f"{path}: a binary file, not text (byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8); "
                f"point the corpus at a text file"
            ) from None
        raise TextCorpusError(
            f"{path}: not valid UTF-8 at byte offset {e.start} (byte 0x{data[e.start]:02x}); "
            f"convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def looks_binary(data: bytes, sample: int = 8192) -> bool:
    """True for bytes that are no text in any 8-bit encoding: a NUL byte, or more than 10% control bytes
    other than tab, newline, carriage return and form feed, in the first ``sample`` bytes."""
    head = data[:sample]
    if b"\0" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13) or b == 127)
    return controls > 0.1 * max(len(head), 1)


def to_records(text: str, record: str, pattern: str | None = None) -> list[str]:
    """Cut text into records: ``line``, ``paragraph``, ``regex`` (first group of each match), or ``verbatim_line``."""
    if record == "regex":
        return [" ".join(m.group(1).split()) for m in re.finditer(pattern, text, re.MULTILINE) if m.group(1).strip()]
    if record == "line":
        return [line for line in text.split("\n") if line.strip()]
    if record == "verbatim_line":
        lines = text.split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines  # a final newline closes the last line
    if record == "paragraph":
        paragraphs = []
        for block in text.split("\n\n"):
            joined = " ".join(line.strip() for line in block.split("\n") if line.strip())
            if joined:
                paragraphs.append(joined)
        return paragraphs
    raise ValueError(f"unknown record kind {record!r}")  # config validation makes this unreachable


def corpus_files(raw_dir: Path) -> list[Path]:
    """Every file of a corpus folder, in a stable order."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise TextCorpusError(f"{raw_dir}: corpus folder not found; run the download stage first (dvc repro download)")
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TextCorpusError(f"{raw_dir}: corpus folder is empty")
    return files


def load_split_records(
    raw_dir: Path, record: str, split: SplitConfig, pattern: str | None = None, dedupe: bool = False
) -> dict[str, list[str]]:
    """Read a corpus folder and return its records per split (``train``, ``val``, ``test``).

    With ``dedupe`` a record repeated anywhere in the corpus is kept once (its first occurrence), so the same
    name can never be in both train and val.
    """
    raw_dir = Path(raw_dir)
    if split.method == "files":
        out = {}
        for name in SPLITS:
            path = raw_dir / split.files[name]
            if not path.is_file():
                present = ", ".join(p.name for p in corpus_files(raw_dir))
                raise TextCorpusError(f"{path}: split file for {name!r} not found (files here: {present})")
            out[name] = to_records(read_text(path), record, pattern)
        if dedupe:
            seen: set[str] = set()
            out = {name: [r for r in recs if not (r in seen or seen.add(r))] for name, recs in out.items()}
    else:
        records = [r for p in corpus_files(raw_dir) for r in to_records(read_text(p), record, pattern)]
        if dedupe:
            records = list(dict.fromkeys(records))
        out = split_records(records, split, by_length=record == "verbatim_line")
    if not out["train"]:
        raise TextCorpusError(f"{raw_dir}: no non-blank {record} in the training split; the corpus is empty")
    return out


def split_records(records: Sequence[str], split: SplitConfig, by_length: bool = False) -> dict[str, list[str]]:
    """Assign records to splits: ``contiguous`` (head/tail) or ``random`` (seeded, corpus order kept inside a split).

    Shares count records, or with ``by_length`` (contiguous only) characters: the cut falls at the end of the line
    holding the ``1 - val - test`` mark of the text, as nanoGPT cuts tinyshakespeare at 90 % of its characters.
    """
    n = len(records)
    n_val, n_test = round(n * split.val), round(n * split.test)
    n_train = n - n_val - n_test
    if by_length and split.method == "contiguous" and n:
        ends = np.cumsum([len(r) + 1 for r in records])  # + 1: the <eos> (newline) closing each record
        # round(): 1 - 0.2 - 0.1 is 0.7000000000000001, which would push a mark sitting on a line end one line on.
        n_train = int(np.searchsorted(ends, round(ends[-1] * (1 - split.val - split.test), 6))) + 1
        n_val = min(n - n_train, int(np.searchsorted(ends, round(ends[-1] * (1 - split.test), 6))) + 1 - n_train)
        n_test = n - n_train - n_val
    order = np.arange(n) if split.method == "contiguous" else np.random.default_rng(split.seed).permutation(n)
    parts = {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }
    return {name: [records[i] for i in idx] for name, idx in parts.items()}
