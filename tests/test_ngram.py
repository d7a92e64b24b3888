"""The interpolated Kneser-Ney baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.vocab import EOS_ID, PAD_ID


def _stream(seed: int = 0, n: int = 3000, vocab: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A Markov-ish source: mostly "next id", sometimes random, with <eos> records.
    ids, cur = [], 3
    for _ in range(n):
        cur = cur + 1 if cur + 1 < vocab and rng.random() < 0.8 else int(rng.integers(3, vocab))
        ids.append(cur)
        if rng.random() < 0.1:
            ids.append(EOS_ID)
    return np.array(ids)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distribution_sums_to_one_and_never_predicts_pad(order):
    vocab = 12
    lm = KneserNeyLM(order, vocab).fit(_stream())
    rng = np.random.default_rng(1)
    contexts = [[], [EOS_ID], [3, 4], list(rng.integers(1, vocab, size=6)), [11, 11, 11, 11]]
    for ctx in contexts:
        probs = [lm.prob(ctx, w) for w in range(vocab)]
        assert probs[PAD_ID] == 0.0
        assert math.isclose(sum(probs), 1.0, rel_tol=1e-9), (ctx, sum(probs))
        assert all(p > 0 for p in probs[1:])  # smoothing: unseen words keep some mass


def test_higher_order_beats_unigram_on_structured_text():
    train, test = _stream(0), _stream(1, n=800)
    ppl = {order: KneserNeyLM(order, 12).fit(train).perplexity(test) for order in (1, 2, 3)}
    assert ppl[2] < 0.6 * ppl[1]
    assert ppl[3] <= ppl[2] * 1.05
    assert ppl[1] < 12  # better than uniform over the support


def test_unseen_tokens_still_get_probability_and_counts_scored_tokens():
    lm = KneserNeyLM(3, 20).fit(np.array([3, 4, 5, EOS_ID] * 10))
    nll, n = lm.nll(np.array([3, 19, EOS_ID]))
    assert n == 3 and math.isfinite(nll)


def test_bigram_matches_hand_computation():
    # stream (padded with one <eos>): eos a b eos a c eos  with a=3, b=4, c=5, V=6 (support 5)
    lm = KneserNeyLM(2, 6).fit(np.array([3, 4, EOS_ID, 3, 5, EOS_ID]))
    d2 = lm.discounts[2]  # bigram counts: (e,a)=2, (a,b)=1, (b,e)=1, (a,c)=1, (c,e)=1 -> n1=4, n2=1
    assert d2 == pytest.approx(4 / 6)
    # continuation unigrams: a<-{e}, b<-{a}, c<-{a}, e<-{b,c}: N=5 -> n1=3, n2=1, D1=3/5
    d1 = lm.discounts[1]
    assert d1 == pytest.approx(3 / 5)
    p1_b = (1 - d1) / 5 + d1 * 4 / 5 * (1 / 5)
    expected = (1 - d2) / 2 + d2 * 2 / 2 * p1_b  # context a: total 2, followers {b, c}
    assert lm.prob([3], 4) == pytest.approx(expected)


def test_order_must_be_positive():
    with pytest.raises(ValueError):
        KneserNeyLM(0, 10)
