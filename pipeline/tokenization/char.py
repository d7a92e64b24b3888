"""Character-level tokenization: every Unicode code point is a token; a record ends with ``<eos>``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.vocab import EOS_ID, UNK_ID, Vocabulary

#: Records never contain a newline (line records are split on it, paragraphs are joined with spaces),
#: so it can stand for <eos> while a whole split is encoded in one pass.
_SEP = "\n"
#: Tables and counts indexed by code point have this many entries (U+0000..U+10FFFF).
CODE_POINTS = 0x110000


def count(records: Sequence[str]) -> Counter[str]:
    counts = Counter(_SEP.join(records))
    counts.pop(_SEP, None)
    return counts


def encode(records: Sequence[str], vocab: Vocabulary) -> np.ndarray:
    """All records as one id stream, each followed by ``<eos>``."""
    if not records:
        return np.zeros(0, dtype=np.int64)
    text = _SEP.join(records) + _SEP
    table = dict(vocab.index)
    table[_SEP] = EOS_ID
    get = table.get
    return np.fromiter((get(ch, UNK_ID) for ch in text), dtype=np.int64, count=len(text))


def tokens(record: str) -> list[str]:
    return list(record)


# --------------------------------------------------------------------------- vectorised, for blocks of records


def block_text(records: Sequence[str], lowercase: bool = False) -> str:
    """Records as :func:`encode` reads them, each followed by the separator that stands for ``<eos>``.

    Lowercasing the joined text equals lowercasing each record: the one context rule of ``str.lower`` (a final
    sigma) stops at a newline as it does at the end of a string, since a newline is neither cased nor
    case-ignorable.
    """
    text = _SEP.join([*records, ""])  # one copy, not two (join, then + _SEP)
    return text.lower() if lowercase else text


def code_points(text: str) -> np.ndarray:
    """(len(text),) uint32 code points, without a Python call per character (UTF-32 is one unit per point)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def counts_to_tokens(counts: np.ndarray) -> dict[str, int]:
    """Code point counts (from ``np.bincount``) as the token counts :func:`count` gives."""
    return {chr(c): int(counts[c]) for c in np.flatnonzero(counts) if c != ord(_SEP)}


def id_table(vocab: Vocabulary, dtype: np.dtype) -> np.ndarray:
    """Code point -> id: the separator is ``<eos>``, a character outside the vocabulary ``<unk>``."""
    table = np.full(CODE_POINTS, UNK_ID, dtype=dtype)
    for token, i in vocab.index.items():
        if len(token) == 1:  # the specials are longer
            table[ord(token)] = i
    table[ord(_SEP)] = EOS_ID
    return table
