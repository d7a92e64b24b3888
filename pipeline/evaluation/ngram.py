"""A count-based baseline: interpolated Kneser-Ney n-gram language model over token ids.

This is the row a user would pick instead of a neural model, so every comparison
report carries it.  It is trained on the same token streams as the RNNs (records
closed by ``<eos>``), predicts every token including ``<eos>``, and never predicts
``<pad>``.  The start of the stream is padded with ``<eos>``, the same context the
first token of every later record sees.

Model (Chen & Goodman 1998, interpolated Kneser-Ney with one discount per order)::

    P_k(w | h) = max(c_k(h, w) - D_k, 0) / c_k(h)  +  D_k * N1+(h .) / c_k(h) * P_{k-1}(w | h')
    P_0(w)     = 1 / V                                                  (uniform over the vocabulary)

where ``c_n`` are raw counts at the highest order and ``c_k`` (k < n) are continuation
counts ``N1+(. h w)`` (in how many distinct contexts the n-gram follows), ``h'`` drops
the oldest token of ``h``, ``N1+(h .)`` is the number of distinct words seen after ``h``
and ``D_k = n1 / (n1 + 2 n2)`` from the count-of-counts at that order.  An unseen
context hands its whole mass to the lower order.

The statistics are sorted numpy tables of packed n-grams (:mod:`pipeline.evaluation.ngram_counts`), counted
and looked up a chunk of positions at a time, so a split of any size is read from its memory map and only a
chunk becomes int64 (a 6-gram on 100M characters: bench/bench_ngram.py).  The figures are those of the
tuple-and-Counter model this replaced (tests/ngram_reference.py), bit for bit: the same floating-point
operations in the same order per token, ``math.log`` rather than ``np.log`` (whose SIMD logarithm differs in
the last bit on a few tokens in a thousand) and the negative log-likelihood summed token after token.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pipeline.evaluation.ngram_codes import GramCodec, padded_tokens
from pipeline.evaluation.ngram_counts import OrderTable, fit_tables
from pipeline.figures import perplexity
from pipeline.vocab import EOS_ID, PAD_ID

#: Positions scored at once: the lookups' temporaries stay at a few tens of MB.
SCORE_CHUNK = 1 << 20


class KneserNeyLM:
    """Interpolated Kneser-Ney of order ``order`` over ids ``0..vocab_size-1`` (``<pad>`` excluded)."""

    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        self.order = order
        self.vocab_size = vocab_size
        self.support = vocab_size - 1  # every id but <pad> can be predicted
        self.codecs = [GramCodec(vocab_size, k) for k in range(order + 1)]
        self.tables: dict[int, OrderTable] = fit_tables(np.zeros(0, np.int64), order, vocab_size)
        self.discounts: list[float] = [0.0] * (order + 1)

    def fit(self, ids: Sequence[int] | np.ndarray) -> KneserNeyLM:
        self.tables = fit_tables(_as_ids(ids), self.order, self.vocab_size)
        self.discounts = [0.0] + [self.tables[k].discount for k in range(1, self.order + 1)]
        return self

    def num_ngrams(self, k: int) -> int:
        """How many distinct k-grams the model holds at order ``k`` (the top order: distinct n-grams seen)."""
        return len(self.tables[k].grams)

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(word | the last order-1 tokens of context)."""
        if word == PAD_ID:
            return 0.0
        tokens = np.array([*self._history(context), word], dtype=np.int64)
        return float(self._probs(padded_tokens(tokens, 0, len(tokens), 0, self.vocab_size))[0])

    def _history(self, context: Sequence[int]) -> list[int]:
        """The ``order - 1`` ids a prediction after ``context`` sees (``<eos>`` before the first)."""
        padded = [EOS_ID] * (self.order - 1) + [int(i) for i in context]
        return padded[len(padded) - (self.order - 1) :]

    def _probs(self, tokens: np.ndarray) -> np.ndarray:
        """P(tokens[i] | the order-1 tokens before it) for every ``i >= order - 1`` of int64 ``tokens``: the
        interpolation from order 1 up, one vectorised lookup per order, each token's floating-point
        operations those of the reference model in the same order (so the same bits)."""
        n = self.order
        p = np.full(len(tokens) - (n - 1), 1.0 / self.support)
        for k in range(1, n + 1):
            table, grams = self.tables[k], tokens[n - k :]  # grams: the k-grams ending at each scored token
            seen, at = _lookup(table.contexts, self.codecs[k - 1].windows(grams[:-1]))
            if not seen.any():
                continue  # unseen context: all mass to the lower order
            found, where = _lookup(table.grams, self.codecs[k].windows(grams))
            count = np.where(found, table.counts[where], 0)
            total, d = table.totals[at], table.discount
            mixed = np.maximum(count - d, 0.0) / total + d * table.followers[at] / total * p
            p = np.where(seen, mixed, p)
        p[tokens[n - 1 :] == PAD_ID] = 0.0
        return p

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(w | context) for every id w at once, (V,): what :meth:`prob` gives one word at a time."""
        p = np.full(self.vocab_size, 1.0 / self.support)
        p[PAD_ID] = 0.0
        history = padded_tokens(np.array(self._history(context), np.int64), 0, self.order - 1, 0, self.vocab_size)
        for k in range(1, self.order + 1):
            table, h = self.tables[k], self.codecs[k - 1].windows(history[self.order - k :])  # (1,)
            seen, at = _lookup(table.contexts, h)
            if not seen[0]:
                continue
            first = int(np.searchsorted(table.grams, self.codecs[k].first_after(h))[0])
            total, followers, d = table.totals[at[0]], table.followers[at[0]], table.discount
            span = slice(first, first + int(followers))  # the context's k-grams sit side by side
            p = d * followers / total * p
            p[self.codecs[k].last(table.grams[span])] += np.maximum(table.counts[span] - d, 0.0) / total
        return p

    def sample(self, n: int, max_length: int, *, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int = 0, guide: Any = None) -> list[list[int]]:
        """``n`` sequences drawn as the RNNs' are: after an ``<eos>``, until the next (not included) or
        ``max_length``; the ids a ``guide`` bans (see :mod:`pipeline.models.sampling`), then temperature, top-k
        and top-p (nucleus) on the distribution.  Rows advance together, so a guide sees them step by step."""
        rng = np.random.default_rng(seed)
        rows: list[list[int]] = [[] for _ in range(n)]
        open_rows = list(range(n))
        banned, ended = guide.update([EOS_ID] * n, False) if guide is not None else (None, None)
        for _ in range(max_length):
            drawn = [EOS_ID] * n
            for r in open_rows:
                p = self.distribution(rows[r])
                if banned is not None:
                    p[banned[r]] = 0.0
                drawn[r] = int(rng.choice(self.vocab_size, p=_filtered(p, temperature, top_k, top_p)))
            open_rows = [r for r in open_rows if drawn[r] != EOS_ID]
            for r in open_rows:
                rows[r].append(drawn[r])
            if guide is not None:
                banned, ended = guide.update(drawn, True)
                if ended is not None:
                    open_rows = [r for r in open_rows if not ended[r]]
            if not open_rows:
                break
        return rows

    def token_log_probs(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """log P(ids[i] | the tokens before it) for every ``i`` (float64, nats), the first tokens in the
        context of ``<eos>`` as in :meth:`nll`."""
        ids = _as_ids(ids)
        out = np.empty(len(ids), np.float64)
        start = 0
        for log_probs in self._chunk_log_probs(ids):
            out[start : start + len(log_probs)] = log_probs
            start += len(log_probs)
        return out

    def _chunk_log_probs(self, ids: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(ids), SCORE_CHUNK):
            p = self._probs(padded_tokens(ids, start, min(start + SCORE_CHUNK, len(ids)), self.order - 1,
                                          self.vocab_size))
            # math.log, not np.log: the reference's logarithm, so every figure keeps its last digit.
            yield np.fromiter(map(math.log, p.tolist()), np.float64, count=len(p))

    def nll(self, ids: Sequence[int] | np.ndarray) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of every token of ``ids``, and how many were scored."""
        total, scored = 0.0, 0
        for log_probs in self._chunk_log_probs(_as_ids(ids)):
            for log_prob in log_probs.tolist():  # summed in order, as the baseline's figures always were
                total -= log_prob
            scored += len(log_probs)
        return total, scored

    def perplexity(self, ids: Sequence[int] | np.ndarray) -> float:
        nll, n = self.nll(ids)
        return perplexity(nll / max(n, 1))


def _as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """A 1-D id array: an array (a memory map included) as it is, never copied whole; a sequence converted."""
    array = ids if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of token ids, got shape {array.shape}")
    return array


def _lookup(table: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each code is in the sorted ``table``, and its index there (a valid index, 0, when it is not)."""
    if not len(table):
        return np.zeros(len(codes), bool), np.zeros(len(codes), np.int64)
    at = np.minimum(np.searchsorted(table, codes), len(table) - 1)
    return table[at] == codes, at


def _filtered(p: np.ndarray, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    """Temperature, top-k and top-p on a probability vector, renormalised (the RNN sampler's order)."""
    with np.errstate(divide="ignore"):
        logits = np.log(p) / temperature
    q = np.exp(logits - logits.max())
    if top_k is not None and top_k < np.count_nonzero(q):
        q[q < np.sort(q)[-top_k]] = 0.0
    q /= q.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-q, kind="stable")
        mass_before = np.cumsum(q[order]) - q[order]
        q[order[1:][mass_before[1:] >= top_p]] = 0.0
        q /= q.sum()
    return q

