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

from pipeline.vocab import EOS, EOS_ID, Vocabulary

# The tokens: <...> markers, words, single marks.  Written so that ``re`` does half the work (the same tokens
# as ``<[^<>\s]+>|\w+(?:['’-]\w+)*|[^\w\s]``; tests/test_tokenize_stream.py checks): the whitespace before a
# token is consumed by the match instead of failing all three alternatives at every position, words (the most
# common) are tried first (no alternative starts like another, but "<"), and nothing is backtracked into.
_WORD = re.compile(r"\s*+(\w++(?:['’-]\w+)*+|<[^<>\s]+>|[^\w\s])")


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


# --------------------------------------------------------------------------- for blocks of records

#: Joins a block's records: the spaces keep every token inside its record for both splitters (no token spans
#: whitespace), and the marker is one token for both, the ``<eos>`` that :func:`encode` appends after a record.
_EOS_JOIN = f" {EOS} "


def block_tokens(records: Sequence[str], split: Callable[[str], list[str]], lowercase: bool = False) -> list[str]:
    """The tokens :func:`encode` maps for ``records`` (``<eos>`` after each), from one ``split`` call.

    A literal ``<eos>`` inside a record becomes the ``<eos>`` id here as in :func:`encode`; lowercasing the
    joined text equals lowercasing each record (a final sigma's context stops at a space).
    """
    text = _EOS_JOIN.join(records) + _EOS_JOIN.rstrip()
    return split(text.lower() if lowercase else text)


class FirstSeenIds(dict):
    """Token -> provisional id, in order of first appearance: looking up a new token gives it the next id, so
    ``np.fromiter(map(ids.__getitem__, tokens), ...)`` numbers a block with no Python code per known token.
    ``list(ids)`` is then the token of each provisional id."""

    def __missing__(self, token: str) -> int:
        self[token] = i = len(self)
        return i
