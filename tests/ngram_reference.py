"""THE REFERENCE, not shipped code: the tuple-and-Counter Kneser-Ney that ``pipeline.evaluation.ngram`` replaced.

Kept verbatim below this note (the implementation whose figures the pipeline's metric files were written
with) as the oracle the vectorised model is checked against in tests/test_ngram.py: the same log-probabilities
to rtol 1e-9, the same ``nll`` bit for bit, the same distributions.  bench/bench_ngram.py times it for the
speed ratio.  Do not "improve" it: its worth is that it is unchanged.

The original module docstring follows.

A count-based baseline: interpolated Kneser-Ney n-gram language model over token ids.

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
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.vocab import EOS_ID, PAD_ID


class KneserNeyLM:
    """Interpolated Kneser-Ney of order ``order`` over ids ``0..vocab_size-1`` (``<pad>`` excluded)."""

    def __init__(self, order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        self.order = order
        self.vocab_size = vocab_size
        self.support = vocab_size - 1  # every id but <pad> can be predicted
        # Per order k (1..n): counts[k][(h..., w)], context totals, distinct followers, discount.
        self.counts: list[dict[tuple[int, ...], int]] = [{} for _ in range(order + 1)]
        self.totals: list[dict[tuple[int, ...], int]] = [{} for _ in range(order + 1)]
        self.followers: list[dict[tuple[int, ...], int]] = [{} for _ in range(order + 1)]
        self.discounts: list[float] = [0.0] * (order + 1)
        self._index: list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]] | None = None  # for sampling

    def fit(self, ids: Sequence[int] | np.ndarray) -> KneserNeyLM:
        stream = self._padded(ids)
        n = self.order
        top: Counter[tuple[int, ...]] = Counter(
            tuple(stream[i - n + 1 : i + 1]) for i in range(n - 1, len(stream))
        )
        self.counts[n] = dict(top)
        # Continuation counts: each distinct (k+1)-gram adds one to the count of its k-gram suffix.
        for k in range(n - 1, 0, -1):
            cont: Counter[tuple[int, ...]] = Counter(gram[1:] for gram in self.counts[k + 1])
            self.counts[k] = dict(cont)
        for k in range(1, n + 1):
            totals: defaultdict[tuple[int, ...], int] = defaultdict(int)
            followers: defaultdict[tuple[int, ...], int] = defaultdict(int)
            for gram, c in self.counts[k].items():
                totals[gram[:-1]] += c
                followers[gram[:-1]] += 1
            self.totals[k], self.followers[k] = dict(totals), dict(followers)
            self.discounts[k] = _discount(self.counts[k].values())
        return self

    def _padded(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        return [EOS_ID] * (self.order - 1) + [int(i) for i in ids]

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(word | the last order-1 tokens of context)."""
        if word == PAD_ID:
            return 0.0
        p = 1.0 / self.support
        history = tuple([EOS_ID] * (self.order - 1) + [int(i) for i in context])[len(context) :]
        for k in range(1, self.order + 1):
            h = history[len(history) - (k - 1) :] if k > 1 else ()
            total = self.totals[k].get(h, 0)
            if total == 0:
                continue  # unseen context: all mass to the lower order
            d = self.discounts[k]
            c = self.counts[k].get((*h, word), 0)
            p = max(c - d, 0.0) / total + d * self.followers[k][h] / total * p
        return p

    def _followers(self, k: int, h: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The ids seen after context ``h`` at order ``k`` and their counts (an index built on first use)."""
        if self._index is None:
            self._index = [{} for _ in self.counts]
            for order in range(1, self.order + 1):
                grouped: defaultdict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
                for gram, c in self.counts[order].items():
                    grouped[gram[:-1]].append((gram[-1], c))
                self._index[order] = {ctx: (np.array([w for w, _ in pairs]), np.array([c for _, c in pairs], dtype=float))
                                      for ctx, pairs in grouped.items()}
        return self._index[k].get(h, (np.zeros(0, dtype=np.int64), np.zeros(0)))

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(w | context) for every id w at once, (V,): what :meth:`prob` gives one word at a time."""
        p = np.full(self.vocab_size, 1.0 / self.support)
        p[PAD_ID] = 0.0
        history = tuple([EOS_ID] * (self.order - 1) + [int(i) for i in context])[len(context) :]
        for k in range(1, self.order + 1):
            h = history[len(history) - (k - 1) :] if k > 1 else ()
            total = self.totals[k].get(h, 0)
            if total == 0:
                continue
            d = self.discounts[k]
            ids, counts = self._followers(k, h)
            p = d * self.followers[k][h] / total * p
            p[ids] += np.maximum(counts - d, 0.0) / total
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
        stream = self._padded(ids)
        start = self.order - 1
        return np.array([math.log(self.prob(stream[i - start : i], stream[i])) for i in range(start, len(stream))],
                        dtype=np.float64)

    def nll(self, ids: Sequence[int] | np.ndarray) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of every token of ``ids``, and how many were scored."""
        log_probs = self.token_log_probs(ids)
        total = 0.0
        for log_prob in log_probs.tolist():  # summed in order, as the baseline's figures always were
            total -= log_prob
        return total, len(log_probs)

    def perplexity(self, ids: Sequence[int] | np.ndarray) -> float:
        nll, n = self.nll(ids)
        return math.exp(nll / max(n, 1))


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


def _discount(counts) -> float:
    hist = Counter(c for c in counts if c <= 2)
    n1, n2 = hist.get(1, 0), hist.get(2, 0)
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)
