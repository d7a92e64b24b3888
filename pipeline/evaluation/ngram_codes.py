"""How the n-gram model packs a k-gram of token ids into one sortable numpy value.

Sorted arrays of such codes are the model's tables: counting is ``sort`` + run lengths, lookup is
``np.searchsorted``, and every operation runs on whole chunks of positions at once.  The code orders k-grams
lexicographically, oldest token first, so the k-grams that share a context (their first ``k - 1`` tokens)
lie side by side in a sorted table.

Two packings, chosen per order (:class:`GramCodec`):

* **narrow** (``vocab_size ** k <= 2 ** 64``): the k ids as the digits of one base-``vocab_size`` uint64.  Every
  character or music vocabulary at the configured orders fits (a 6-gram needs ``vocab_size <= 1625``, a 10-gram
  ``<= 84``); dropping the newest token is ``// V`` and dropping the oldest ``% V ** (k - 1)``.
* **wide** (otherwise, e.g. word vocabularies of more than 7,131 ids at order 5): one uint32 field per token in
  a structured row.  numpy sorts, compares and searches such rows field by field, which is the same
  lexicographic order, with no hashing and so no collisions, at 5-9x the narrow packing's time per sort or
  search (generic comparisons instead of integer ones); only the orders that do not fit pay it.
"""

from __future__ import annotations

import numpy as np

from pipeline.files import first_bad_id, token_id_error
from pipeline.vocab import EOS_ID

#: The largest vocabulary a wide row can hold (one uint32 field per token; token files are uint32 at most).
MAX_VOCAB = 2**32


class GramCodec:
    """The packing of the ``length``-grams over ids ``0..vocab_size-1`` (``length`` 0: the empty context)."""

    def __init__(self, vocab_size: int, length: int) -> None:
        if not 1 <= vocab_size <= MAX_VOCAB:
            raise ValueError(f"the n-gram model packs ids as uint32 at most: vocab_size must be in 1..2**32, "
                             f"got {vocab_size}")
        self.vocab_size, self.length = vocab_size, length
        self.narrow = vocab_size**length <= 2**64
        self.names = [f"t{j}" for j in range(length)]
        self.dtype = np.dtype(np.uint64) if self.narrow else np.dtype([(name, "<u4") for name in self.names])

    def windows(self, tokens: np.ndarray) -> np.ndarray:
        """The codes of the ``len(tokens) - length + 1`` windows of ``tokens`` (int64, 1-D), in order."""
        m = len(tokens) - self.length + 1
        return self.from_columns([tokens[j : j + m] for j in range(self.length)], m)

    def from_columns(self, columns: list[np.ndarray], m: int) -> np.ndarray:
        """The codes of ``m`` k-grams given as one array of ids per position, oldest first."""
        if not self.narrow:
            out = np.empty(m, self.dtype)
            for name, column in zip(self.names, columns, strict=True):
                out[name] = column
            return out
        code = np.zeros(m, np.uint64)
        base = np.uint64(self.vocab_size)
        for column in columns:  # Horner: fits, since every partial code is below V ** length <= 2 ** 64
            code *= base
            code += column.astype(np.uint64, copy=False)
        return code

    def columns(self, codes: np.ndarray) -> list[np.ndarray]:
        """The ids of each position of ``codes``, oldest first (the inverse of :meth:`from_columns`)."""
        if not self.narrow:
            return [codes[name] for name in self.names]
        digits, rest, base = [], codes, np.uint64(self.vocab_size)
        for _ in range(self.length):
            digits.append(rest % base)
            rest = rest // base
        return digits[::-1]

    def context(self, codes: np.ndarray) -> np.ndarray:
        """The codes (packed for ``length - 1``) of each k-gram's first ``k - 1`` tokens: its context."""
        shorter = GramCodec(self.vocab_size, self.length - 1)
        if self.narrow:
            return codes // np.uint64(self.vocab_size)
        return shorter.from_columns(self.columns(codes)[:-1], len(codes))

    def suffix(self, codes: np.ndarray) -> np.ndarray:
        """The codes (packed for ``length - 1``) of each k-gram's last ``k - 1`` tokens."""
        shorter = GramCodec(self.vocab_size, self.length - 1)
        if self.narrow:
            return codes % np.uint64(self.vocab_size ** (self.length - 1))
        return shorter.from_columns(self.columns(codes)[1:], len(codes))

    def last(self, codes: np.ndarray) -> np.ndarray:
        """The newest id of each k-gram (int64)."""
        newest = codes % np.uint64(self.vocab_size) if self.narrow else codes[self.names[-1]]
        return newest.astype(np.int64)

    def first_after(self, context: np.ndarray) -> np.ndarray:
        """The smallest code of the k-grams whose context is ``context`` (codes packed for ``length - 1``):
        where that context's k-grams start in a sorted table."""
        shorter = GramCodec(self.vocab_size, self.length - 1)
        return self.from_columns([*shorter.columns(context), np.zeros(len(context), np.int64)], len(context))


def padded_tokens(ids: np.ndarray, start: int, stop: int, before: int, vocab_size: int) -> np.ndarray:
    """``ids[start - before : stop]`` as int64, the positions before the first id being ``<eos>``: the
    stream as the model sees it (padded with ``<eos>``, the context every later record starts from).
    Only this slice becomes int64, never the split; ids outside the vocabulary are refused."""
    first = start - before
    part = np.asarray(ids[max(first, 0) : stop]).astype(np.int64)
    if (bad := first_bad_id(part, vocab_size)) is not None:
        raise token_id_error(int(part[bad]), vocab_size)
    if first < 0:
        part = np.concatenate([np.full(-first, EOS_ID, np.int64), part])
    return part
