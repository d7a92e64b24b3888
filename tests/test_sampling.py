"""Sampling: batched generation, <eos>/<pad> handling, seeds, top-k/top-p, refusal of bidirectional models."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.models import NonCausalModelError
from pipeline.models.sampling import SamplingError, filter_logits, sample
from tests.model_helpers import CELL_IDS, CELLS, VOCAB, tiny_model

PAD, EOS = 0, 2


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
def test_every_causal_model_samples(cell, nonlinearity, layers):
    model = tiny_model(cell, "uni", layers, nonlinearity=nonlinearity, dropout=0.2)
    samples = sample(model, n=5, max_length=12, seed=0, temperature=2.0)
    assert len(samples) == 5
    for row in samples:
        assert len(row) <= 12
        assert all(isinstance(t, int) and 0 <= t < VOCAB for t in row)
        assert PAD not in row and EOS not in row  # <eos> ends a sample and is not included


@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
def test_bidirectional_models_are_refused(cell, nonlinearity):
    model = tiny_model(cell, "bi", 2, nonlinearity=nonlinearity)
    with pytest.raises(NonCausalModelError) as info:
        sample(model, n=1, max_length=5)
    message = str(info.value)
    assert "direction: bi" in message and "cannot generate" in message and "direction: uni" in message


def _hot(model, token: int, value: float = 50.0):
    """Make ``token`` overwhelmingly likely at every step."""
    with torch.no_grad():
        model.output.bias[token] = value
    return model


def test_eos_stops_a_sample_and_pad_is_never_drawn():
    assert sample(_hot(tiny_model(), EOS), n=4, max_length=10, seed=0) == [[], [], [], []]
    rows = sample(_hot(tiny_model(), PAD), n=4, max_length=10, seed=0, eos_id=None, prime=[5])
    assert all(len(row) == 10 and PAD not in row for row in rows)  # pad banned despite its huge logit
    rows = sample(_hot(tiny_model(), EOS), n=2, max_length=6, eos_id=None, prime=[5], seed=0)
    assert rows == [[EOS] * 6, [EOS] * 6]  # eos_id=None: no early stop


def test_same_seed_same_samples_and_the_global_rng_is_untouched():
    model = tiny_model("gru")
    rng_before = torch.get_rng_state()
    first = sample(model, n=6, max_length=15, seed=123, temperature=3.0)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert sample(model, n=6, max_length=15, seed=123, temperature=3.0) == first
    assert sample(model, n=6, max_length=15, seed=124, temperature=3.0) != first


def _greedy(model, context: list[int], steps: int) -> list[int]:
    """Reference: re-run the whole sequence each step and take the argmax (pad excluded)."""
    tokens = list(context)
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = model(torch.tensor([tokens]))
            last = logits[0, -1].clone()
            last[PAD] = -math.inf
            tokens.append(int(last.argmax()))
    return tokens[len(context):]


@pytest.mark.parametrize("cell", ["lstm", "gru_minimal"])
def test_top_k_1_and_tiny_top_p_are_greedy_and_batching_keeps_rows_apart(cell):
    model = tiny_model(cell, "uni", 2, dropout=0.3).eval()
    prime = [5, 7, 1]
    expected = _greedy(model, prime, 8)  # eos_id=None: no implicit <eos> start token, no early stop
    kwargs = dict(max_length=8, prime=prime, eos_id=None, seed=9)
    assert sample(model, n=3, top_k=1, **kwargs) == [expected] * 3
    assert sample(model, n=2, top_p=1e-6, **kwargs) == [expected] * 2
    assert sample(model, n=1, top_k=1, **{**kwargs, "prime": [4]}) == [_greedy(model, [4], 8)]
    # With eos_id set, samples start after an <eos> (not doubled when the prime has one) and stop at the next.
    with_eos = _greedy(model, [EOS, *prime], 8)
    with_eos = with_eos[: with_eos.index(EOS)] if EOS in with_eos else with_eos
    assert sample(model, n=2, top_k=1, max_length=8, prime=prime, seed=9) == [with_eos] * 2
    assert sample(model, n=1, top_k=1, max_length=8, prime=[EOS, *prime], seed=9) == [with_eos]


def test_sampling_restores_training_mode_and_the_onednn_flag():
    model = tiny_model("lstm", dropout=0.5).train()
    sample(model, n=2, max_length=4, seed=0)
    assert model.training
    assert torch.backends.mkldnn.enabled
    model.eval()
    sample(model, n=2, max_length=4, seed=0)
    assert not model.training


def test_top_k_restricts_the_support():
    model = tiny_model("rnn")
    with torch.no_grad():
        first_logits = model(torch.tensor([[EOS]]))[0][0, -1]
    first_logits[PAD] = -math.inf
    top3 = set(first_logits.topk(3).indices.tolist())
    firsts = [row[0] for row in sample(model, n=300, max_length=1, top_k=3, temperature=5.0, seed=1, eos_id=None,
                                       prime=[EOS])]
    assert set(firsts) == top3  # all three drawn at a high temperature, nothing else


def test_filter_logits_top_k_top_p_and_ban():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    kept = lambda out: set(torch.isfinite(out[0]).nonzero().flatten().tolist())  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == {1, 3}
    assert kept(filter_logits(logits, top_p=0.5)) == {1}  # 0.5 alone reaches 0.5
    assert kept(filter_logits(logits, top_p=0.7)) == {1, 3}  # 0.5 + 0.3 >= 0.7
    assert kept(filter_logits(logits, top_p=0.81)) == {1, 2, 3}
    assert kept(filter_logits(logits, top_p=1.0)) == {0, 1, 2, 3}
    assert kept(filter_logits(logits, top_k=3, top_p=0.7, banned=1)) == {2, 3}  # ban first, then the rest
    assert kept(filter_logits(logits, banned=0)) == {1, 2, 3}
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)
    assert torch.equal(logits, probs.log())  # the input is not modified


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=math.nan), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(n=0), "n and max_length"),
    (dict(max_length=0), "n and max_length"),
    (dict(prime=[3, VOCAB]), r"prime\[1\]"),
    (dict(prime=[-1]), r"prime\[0\]"),
    (dict(eos_id=None), "pass a prime"),
    (dict(eos_id=VOCAB), "eos_id"),
    (dict(device="cuda"), "move the model"),
])
def test_invalid_arguments_are_one_line_user_errors(kwargs, match):
    arguments = {"n": 2, "max_length": 3, **kwargs}
    with pytest.raises(SamplingError, match=match) as info:
        sample(tiny_model(), **arguments)
    assert "\n" not in str(info.value)
