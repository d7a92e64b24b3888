"""The heads over the cells (pipeline.models.heads): the concatenated BRNN, tagger, classifier, conditioned LM
and the forget-gate bias."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.config import ConfigError, ModelConfig
from pipeline.models import build_head_model
from pipeline.models.brnn import BidirectionalStack
from pipeline.models.heads import set_forget_bias
from pipeline.models.registry import MODEL_REGISTRY
from pipeline.models.sampling import sample

VOCAB = 11
CELLS = list(MODEL_REGISTRY)


def _cfg(cell: str = "lstm", direction: str = "uni", layers: int = 1, hidden_size: int = 7) -> ModelConfig:
    return ModelConfig(cell=cell, embedding_size=5, hidden_size=hidden_size, num_layers=layers, direction=direction)


def _ids(batch: int = 3, length: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layers", [1, 2])
def test_brnn_is_torchs_bidirectional_lstm(layers):
    """Same weights copied in: the stack computes exactly nn.LSTM(bidirectional=True), layer inputs included."""
    torch.manual_seed(0)
    stack = BidirectionalStack(_cfg(layers=layers), MODEL_REGISTRY["lstm"]).double()
    reference = nn.LSTM(5, 7, num_layers=layers, bidirectional=True, batch_first=True).double()
    with torch.no_grad():
        for depth in range(layers):
            for suffix, layer in (("", stack.forward_layers[depth]), ("_reverse", stack.backward_layers[depth])):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, f"{name}_l{depth}{suffix}").copy_(getattr(layer, f"{name}_l0"))
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(stack(x), reference(x)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_bidirectional_rows_ignore_their_padding(cell):
    torch.manual_seed(1)
    stack = BidirectionalStack(_cfg(cell, layers=2), MODEL_REGISTRY[cell]).eval()
    x = torch.randn(2, 6, 5)
    padded = torch.cat([x[:1, :4], torch.randn(1, 2, 5)], dim=1)  # row 0's 4 real steps, then junk
    out = stack(torch.cat([padded, x[1:]]), lengths=torch.tensor([4, 6]))
    alone = stack(x[:1, :4])
    torch.testing.assert_close(out[0, :4], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_a_unidirectional_tagger_never_sees_the_future_and_a_bidirectional_one_does(cell):
    ids = _ids()
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] - 3 + 1) % (VOCAB - 3) + 3  # a different real token at t = 6
    for direction, sees_future in (("uni", False), ("bi", True)):
        torch.manual_seed(2)
        tagger = build_head_model("tagger", _cfg(cell, direction), VOCAB, 3).eval()
        before, after = tagger(ids), tagger(changed)
        assert before.shape == (3, 9, 3)
        assert torch.equal(before[:, :6], after[:, :6]) != sees_future
        assert tagger.causal == (not sees_future)


@pytest.mark.parametrize("direction", ["uni", "bi"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "lstm_peephole"])
def test_a_classifier_reads_each_row_up_to_its_length(cell, direction):
    torch.manual_seed(3)
    classifier = build_head_model("classifier", _cfg(cell, direction, layers=2), VOCAB, 4).eval()
    ids = _ids(2, 8)
    padded = ids.clone()
    padded[0, 5:] = 0  # row 0 is 5 tokens long, then <pad>
    batch = classifier(padded, torch.tensor([5, 8]))
    assert batch.shape == (2, 4)
    torch.testing.assert_close(batch[0], classifier(ids[:1, :5])[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch[1], classifier(ids[1:])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "gru_minimal", "lstm_peephole"])
def test_the_condition_sets_the_initial_state(cell):
    torch.manual_seed(4)
    lm = build_head_model("conditioned_lm", _cfg(cell, layers=2), VOCAB, 3).eval()
    ids = _ids(2, 5)
    state = lm.condition_state(torch.tensor([0, 2]))
    parts = state if isinstance(state, tuple) else (state,)
    assert all(p.shape == (2, 2, 7) for p in parts) and (parts[0].abs() < 1).all()
    logits_0, _ = lm(ids, conditions=torch.tensor([0, 0]))
    logits_2, _ = lm(ids, conditions=torch.tensor([2, 2]))
    assert logits_0.shape == (2, 5, VOCAB) and not torch.allclose(logits_0, logits_2)
    explicit, _ = lm(ids, state)  # a passed state wins; conditions only replace a missing one
    torch.testing.assert_close(explicit[1], logits_2[1])


def test_a_fixed_condition_samples_reproducibly_and_differs_by_condition():
    torch.manual_seed(5)
    lm = build_head_model("conditioned_lm", _cfg("lstm", hidden_size=16), VOCAB, 2)
    with torch.no_grad():
        lm.condition.weight.mul_(40)  # make the two styles far apart
    one = sample(lm.conditioned(1), n=4, max_length=12, seed=7, eos_id=None, prime=[2])
    assert one == sample(lm.conditioned(1), n=4, max_length=12, seed=7, eos_id=None, prime=[2])
    assert one != sample(lm.conditioned(0), n=4, max_length=12, seed=7, eos_id=None, prime=[2])
    with pytest.raises(ValueError, match="outside 0..1"):
        lm.conditioned(2)


def test_build_head_model_names_what_is_wrong():
    with pytest.raises(ConfigError, match=r"model.cell: unknown cell 'transformer' \(valid: rnn, gru, lstm"):
        build_head_model("tagger", _cfg("transformer"), VOCAB, 2)
    with pytest.raises(ConfigError, match="a conditioned LM generates, so it must be 'uni'"):
        build_head_model("conditioned_lm", _cfg(direction="bi"), VOCAB, 2)
    with pytest.raises(ValueError, match="choose tagger, classifier, conditioned_lm"):
        build_head_model("parser", _cfg(), VOCAB, 2)


@pytest.mark.parametrize(("cell", "direction", "layers"), [("lstm", "uni", 2), ("lstm", "bi", 2), ("lstm_peephole", "uni", 1),
                                                          ("gru", "uni", 1)])
def test_forget_bias_is_set_on_every_lstm_layer(cell, direction, layers):
    model = build_head_model("classifier", _cfg(cell, direction, layers), VOCAB, 2)
    expected = 0 if cell == "gru" else layers * (2 if direction == "bi" else 1)
    assert set_forget_bias(model, 1.5) == expected
    for module in model.modules():
        if isinstance(module, nn.LSTM):
            effective = module.bias_ih_l0 + module.bias_hh_l0  # the two biases add up inside the gate
            torch.testing.assert_close(effective[7:14], torch.full((7,), 1.5))
            assert not torch.allclose(effective[:7], torch.full((7,), 1.5))  # the input gate is untouched
        elif hasattr(module, "w_cf"):
            torch.testing.assert_close(module.bias[7:14].detach(), torch.full((7,), 1.5))
