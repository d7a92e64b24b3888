"""Word-level tokenization.

``whitespace``: tokens are what ``str.split`` gives (for pre-tokenized corpora such as
the Penn Treebank, whose ``<unk>`` then maps onto the vocabulary's ``<unk>``).
``punctuation``: words (letters/digits, with inner apostrophes or hyphens) and each
punctuation mark are separate tokens, and ``<...>`` markers stay whole.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.vocab import EOS_ID, Vocabulary

_WORD = re.compile(r"<[^<>\s]+>|\w+(?:['’-]\w+)*|[^\w\s]")


def splitter(word_split: str) -> Callable[[str], list[str]]:
    if word_split == "whitespace":
        return str.split
    if word_split == "punctuation":
        return _WORD.findall
    raise ValueError(f"unknown word_split {word_split!r}")  # config validation makes this unreachable


def count(records: Sequence[str], split: Callable[[str], list[str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(split(record))
    return counts


def encode(records: Sequence[str], vocab: Vocabulary, split: Callable[[str], list[str]]) -> np.ndarray:
    """All records as one id stream, each followed by ``<eos>``."""
    stream: list[str] = []
    eos = vocab.tokens[EOS_ID]
    for record in records:
        stream.extend(split(record))
        stream.append(eos)
    return vocab.encode(stream)
