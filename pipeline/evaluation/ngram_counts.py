"""The Kneser-Ney model's statistics as sorted numpy tables, counted chunk by chunk.

The top order's n-grams are packed (:mod:`pipeline.evaluation.ngram_codes`), sorted and run-length counted a
chunk of positions at a time; each chunk's distinct codes are merged into the running table (matching codes
add their counts, new ones are inserted in order).  Memory therefore grows with the number of *distinct*
n-grams, never with the corpus: the split is a memory map and only a chunk of it becomes int64.

Below the top order every count is a continuation count, as in :class:`pipeline.evaluation.ngram.KneserNeyLM`:
each distinct (k+1)-gram adds one to the count of its k-token suffix, so the k-gram table is the run lengths
of the sorted suffixes of the (k+1)-gram table.  A context's total and its number of distinct followers are
sums and run lengths over the k-grams that share it, which sit side by side in the sorted table.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.evaluation.ngram_codes import GramCodec, padded_tokens

#: Positions counted at once: a few tens of MB of int64 and uint64 temporaries per chunk.
CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class OrderTable:
    """The statistics of one order k, each array sorted by code (``contexts`` packed for ``k - 1`` tokens)."""

    codec: GramCodec
    grams: np.ndarray  # the distinct k-grams
    counts: np.ndarray  # int64, per k-gram: raw counts at the top order, continuation counts N1+(. g) below
    contexts: np.ndarray  # the distinct contexts h: the k-grams' first k - 1 tokens
    totals: np.ndarray  # int64, per context: c_k(h), the counts of its k-grams summed
    followers: np.ndarray  # int64, per context: N1+(h .), how many distinct k-grams it starts
    discount: float


def fit_tables(ids: np.ndarray, order: int, vocab_size: int) -> dict[int, OrderTable]:
    """The tables of orders ``1..order`` for ``ids`` (1-D, any integer dtype, a memory map included), the stream
    being padded in front with ``order - 1`` ``<eos>`` as the model sees it."""
    codecs = [GramCodec(vocab_size, k) for k in range(order + 1)]
    grams, counts = _top_counts(ids, codecs[order], CHUNK)
    tables: dict[int, OrderTable] = {}
    for k in range(order, 0, -1):
        if k < order:  # continuation counts: one per distinct (k+1)-gram, given to its k-token suffix
            grams, counts = sorted_counts(codecs[k + 1].suffix(tables[k + 1].grams))
        tables[k] = _order_table(codecs[k], grams, counts)
    return tables


def _top_counts(ids: np.ndarray, codec: GramCodec, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct top-order n-grams of the padded stream and how often each occurs."""
    grams, counts = np.empty(0, codec.dtype), np.empty(0, np.int64)
    for start in range(0, len(ids), chunk):
        tokens = padded_tokens(ids, start, min(start + chunk, len(ids)), codec.length - 1, codec.vocab_size)
        grams, counts = merge_counts(grams, counts, *sorted_counts(codec.windows(tokens)))
    return grams, counts


def sorted_counts(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``codes``, sorted, and how many times each occurs (int64).

    Sort and run lengths, written out: ``np.unique`` is the same thing, but without ``return_counts`` numpy 2.4
    takes a path ~10x slower on uint64 here."""
    ordered = np.sort(codes)
    starts = run_starts(ordered)
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def run_starts(ordered: np.ndarray) -> np.ndarray:
    """The indices where a new value begins in a sorted array (int64; empty for an empty array)."""
    if not len(ordered):
        return np.zeros(0, np.int64)
    changed = np.empty(len(ordered), bool)
    changed[0] = True
    changed[1:] = ordered[1:] != ordered[:-1]  # (no ufunc `out=` for the wide packing's structured rows)
    return np.flatnonzero(changed)


def merge_counts(grams: np.ndarray, counts: np.ndarray, new: np.ndarray,
                 new_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted tables of distinct codes with counts as one: counts of shared codes add up (in place in
    ``counts``), codes only in ``new`` are inserted where they sort."""
    if not len(grams):
        return new, new_counts
    at = np.searchsorted(grams, new)
    shared = at < len(grams)
    shared[shared] = grams[at[shared]] == new[shared]
    counts[at[shared]] += new_counts[shared]  # no index repeats: the codes of one table are distinct
    added = ~shared
    return np.insert(grams, at[added], new[added]), np.insert(counts, at[added], new_counts[added])


def _order_table(codec: GramCodec, grams: np.ndarray, counts: np.ndarray) -> OrderTable:
    contexts = codec.context(grams)  # sorted too: the code orders a k-gram by its context first
    starts = run_starts(contexts)
    totals = np.add.reduceat(counts, starts) if len(starts) else np.zeros(0, np.int64)
    followers = np.diff(np.append(starts, len(contexts)))
    return OrderTable(codec, grams, counts, contexts[starts], totals, followers, discount(counts))


def discount(counts: np.ndarray) -> float:
    """``D = n1 / (n1 + 2 n2)`` from the count-of-counts, kept in [0.05, 0.95] (0.5 without singletons)."""
    n1, n2 = int(np.count_nonzero(counts == 1)), int(np.count_nonzero(counts == 2))
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)
