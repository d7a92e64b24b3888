"""A model mixed with a Kneser-Ney n-gram: per-token scores, the fitted weight and the mixture's figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.evaluation.mixture import fit_weight, interpolate, mixture_log_probs
from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.models import NonCausalModelError
from pipeline.models.scoring import evaluate_split, token_log_probs
from pipeline.vocab import EOS_ID
from tests.train_helpers import tiny_model

VOCAB = 12


def _ids(n: int, seed: int = 0) -> np.ndarray:
    """Token ids 2..VOCAB-1 with an <eos> every ~9 tokens: records for the records mode."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=n)
    ids[rng.random(n) < 0.11] = EOS_ID
    ids[-1] = EOS_ID
    return ids


def _model(softmax: str = "full", cell: str = "gru", **fields):
    extra = {"softmax": "adaptive", "cutoffs": [4, 8]} if softmax == "adaptive" else {}
    return tiny_model(VOCAB, cell=cell, **extra, **fields).eval()


@pytest.mark.parametrize(("softmax", "mode", "batch_size", "bptt"), [
    ("full", "stream", 1, 16), ("full", "stream", 3, 16), ("adaptive", "stream", 2, 7), ("full", "windows", 2, 16),
    ("adaptive", "records", 4, 6), ("full", "records", 3, 64)])
def test_token_scores_add_up_to_the_split_figure_each_at_its_own_token(softmax, mode, batch_size, bptt):
    model, ids = _model(softmax), _ids(203)
    positions, log_probs = token_log_probs(model, ids, mode=mode, batch_size=batch_size, bptt=bptt)
    figures = evaluate_split(model, ids, mode=mode, batch_size=batch_size, bptt=bptt)
    assert len(log_probs) == figures["tokens"]
    assert -log_probs.mean() == pytest.approx(figures["loss"], rel=1e-6)
    assert len(set(positions.tolist())) == len(positions) and positions.min() >= 0 and positions.max() < len(ids)
    if mode != "records" or bptt >= 64:  # records of up to bptt tokens: every token is scored
        assert sorted(positions.tolist()) == list(range(len(ids)))
    # Each term is the model's log-probability of the token at its position, given what the mode lets it see.
    got = dict(zip(positions.tolist(), log_probs.tolist(), strict=True))
    if mode == "stream":  # stream r: tokens r*L .. of <eos> + ids, one sequence from a zero state
        flat, length = np.concatenate([[EOS_ID], ids]), math.ceil((len(ids) + 1) / batch_size)
        for row in range(batch_size):
            first, last = row * length, min((row + 1) * length, len(ids))
            expected = _scores(model, softmax, flat[first:last], ids[first:last])
            np.testing.assert_allclose([got[i] for i in range(first, last)], expected, rtol=1e-5, atol=1e-6)
    if mode == "records":  # a record is scored from <eos>, alone
        starts = np.concatenate([[0], np.flatnonzero(ids == EOS_ID)[:-1] + 1])
        first, record = starts[2], ids[starts[2] : starts[3]][:bptt]
        expected = _scores(model, softmax, np.concatenate([[EOS_ID], record[:-1]]), record)
        np.testing.assert_allclose([got[first + i] for i in range(len(record))], expected, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def _scores(model, softmax: str, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log P(targets[t] | inputs[:t+1]) from one forward pass over ``inputs`` from a zero state."""
    x = torch.from_numpy(inputs).long()[None]
    log_probs = torch.log_softmax(model(x)[0][0].double(), -1) if softmax == "full" else \
        model.output(model.features(x)[0])[0].double()
    return log_probs[torch.arange(len(targets)), torch.from_numpy(targets).long()].numpy()


def test_token_scores_refuse_a_model_that_sees_the_future():
    with pytest.raises(NonCausalModelError):
        token_log_probs(_model(cell="lstm", direction="bi"), _ids(50))


def test_ngram_token_scores_are_its_nll_term_by_term():
    train, test = _ids(2000, seed=1), _ids(300, seed=2)
    lm = KneserNeyLM(3, VOCAB).fit(train)
    log_probs = lm.token_log_probs(test)
    nll, n = lm.nll(test)
    assert n == len(test) == len(log_probs)
    assert -log_probs.sum() == pytest.approx(nll, rel=1e-12)
    assert log_probs[5] == pytest.approx(math.log(lm.prob(test[3:5], test[5])))


def _objective(a: np.ndarray, b: np.ndarray, weight: float) -> float:
    return float(np.log(weight * np.exp(a) + (1 - weight) * np.exp(b)).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_weight_is_the_best_on_a_fine_grid(seed):
    rng = np.random.default_rng(seed)
    a = np.log(rng.uniform(0.01, 0.9, size=500))
    b = np.log(np.clip(np.exp(a) * rng.lognormal(0.2 * seed - 0.2, 1.0, size=500), 1e-6, 1))
    weight = fit_weight(a, b)
    assert 0 < weight < 1
    grid = np.linspace(0.001, 0.999, 999)
    best = grid[np.argmax([_objective(a, b, w) for w in grid])]
    assert abs(weight - best) <= 0.002
    assert _objective(a, b, weight) >= max(_objective(a, b, w) for w in grid) - 1e-9


def test_weight_goes_to_the_model_that_is_better_on_every_token():
    rng = np.random.default_rng(0)
    a = np.log(rng.uniform(0.3, 0.9, size=200))
    assert fit_weight(a, a - 3.0) > 0.99
    assert fit_weight(a - 3.0, a) < 0.01
    assert fit_weight(a, a) == pytest.approx(0.5)  # either model, any weight: EM stays where it starts


def test_mixture_is_exact_at_the_ends_and_in_between():
    a, b = np.log(np.array([0.5, 0.1])), np.log(np.array([0.25, 0.3]))
    np.testing.assert_allclose(mixture_log_probs(a, b, 1.0), a)
    np.testing.assert_allclose(mixture_log_probs(a, b, 0.0), b)
    np.testing.assert_allclose(np.exp(mixture_log_probs(a, b, 0.25)), [0.25 * 0.5 + 0.75 * 0.25, 0.25 * 0.1 + 0.75 * 0.3])
    with pytest.raises(ValueError, match="same tokens"):
        fit_weight(a, b[:1])


def test_interpolated_figures_beat_both_models_on_validation():
    """At the weight fitted on validation, the mixture can be no worse there than either model alone."""
    model = _model("adaptive")
    train, splits = _ids(3000, seed=3), {"val": _ids(400, seed=4), "test": _ids(500, seed=5)}
    out = interpolate(model, train, splits, order=3, vocab_size=VOCAB, mode="stream", batch_size=1, bptt=32,
                      device="cpu", char_level=True)
    assert out["ngram_order"] == 3 and 0 <= out["model_weight"] <= 1 and out["ngram_fit_seconds"] >= 0
    val = out["val"]
    assert val["perplexity"] <= min(val["model_perplexity"], val["ngram_perplexity"]) * (1 + 1e-9)
    for name, ids in splits.items():
        assert out[name]["tokens"] == len(ids)
        assert out[name]["model_perplexity"] == pytest.approx(
            evaluate_split(model, ids, mode="stream", bptt=32)["perplexity"], rel=1e-6)
        assert out[name]["ngram_perplexity"] == pytest.approx(KneserNeyLM(3, VOCAB).fit(train).perplexity(ids),
                                                              rel=1e-6)
        assert out[name]["bpc"] == out[name]["bits_per_token"]
    with pytest.raises(ValueError, match="validation split"):
        interpolate(model, train, {"val": splits["val"][:0], "test": splits["test"]}, order=3, vocab_size=VOCAB,
                    mode="stream", batch_size=1, bptt=32, device="cpu", char_level=True)
