"""Character-level tokenization: every Unicode code point is a token; a record ends with ``<eos>``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.vocab import EOS_ID, UNK_ID, Vocabulary

#: Records never contain a newline (line records are split on it, paragraphs are joined with spaces),
#: so it can stand for <eos> while a whole split is encoded in one pass.
_SEP = "\n"


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
