"""The model registry, causal and bidirectional LMs: shapes, gradients, causality, dropout, tying, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import ConfigError, ModelConfig
from pipeline.errors import UserError
from pipeline.models import (
    MODEL_REGISTRY,
    BidirectionalLM,
    BiLogits,
    NonCausalModelError,
    SequenceModel,
    build_model,
    count_parameters,
    detach_state,
    ensure_causal,
)
from tests.model_helpers import CELL_IDS, CELLS, GRID, GRID_IDS, VOCAB, logit_tensors, random_ids, tiny_model


def _state_tensors(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize(("cell", "direction", "layers"), GRID, ids=GRID_IDS)
def test_forward_shapes_and_carried_state(cell, direction, layers):
    model = tiny_model(cell[0], direction, layers, nonlinearity=cell[1]).eval()
    ids = random_ids(batch=3, length=7)
    logits, state = model(ids)
    assert isinstance(logits, BiLogits) == (direction == "bi")
    assert model.causal == (direction == "uni")
    for tensor in logit_tensors(logits):
        assert tensor.shape == (3, 7, VOCAB)
    expected_parts = 2 if cell[0] in ("lstm", "lstm_peephole") else 1
    assert len(_state_tensors(state)) == expected_parts
    for part in _state_tensors(state):
        assert part.shape == (layers, 3, 8)
    # state=None means the zero state from init_state
    explicit, _ = model(ids, model.init_state(3, "cpu"))
    for a, b in zip(logit_tensors(logits), logit_tensors(explicit), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Carrying the state is the same as running the concatenated sequence (forward direction).
    more = random_ids(batch=3, length=4, seed=2)
    continued, _ = model(more, state)
    whole, _ = model(torch.cat([ids, more], dim=1))
    torch.testing.assert_close(logit_tensors(continued)[0], logit_tensors(whole)[0][:, 7:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("cell", "direction", "layers"), GRID, ids=GRID_IDS)
def test_backward_reaches_every_parameter(cell, direction, layers):
    model = tiny_model(cell[0], direction, layers, nonlinearity=cell[1], dropout=0.1).train()
    ids = random_ids(batch=2, length=6)
    logits, _ = model(ids)
    loss = F.cross_entropy(logit_tensors(logits)[0][:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    if direction == "bi":
        loss = loss + F.cross_entropy(logits.backward[:, 1:].reshape(-1, VOCAB), ids[:, :-1].reshape(-1))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def _changed(ids: torch.Tensor, positions: slice) -> torch.Tensor:
    """ids with every token in ``positions`` replaced by a different one."""
    out = ids.clone()
    out[:, positions] = (out[:, positions] + 1 + torch.arange(out[:, positions].shape[1]) % 5) % VOCAB
    return out


@pytest.mark.parametrize(("cell", "direction", "layers"), GRID, ids=GRID_IDS)
def test_no_direction_sees_the_token_it_predicts(cell, direction, layers):
    model = tiny_model(cell[0], direction, layers, nonlinearity=cell[1], dropout=0.3).eval()
    ids = random_ids(batch=2, length=8)
    base = logit_tensors(model(ids)[0])
    length = ids.shape[1]
    for t in range(length - 1):
        # Forward: changing tokens after t leaves logits at <= t alone, and does change them at t + 1.
        future = logit_tensors(model(_changed(ids, slice(t + 1, None)))[0])
        torch.testing.assert_close(future[0][:, : t + 1], base[0][:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(future[0][:, t + 1], base[0][:, t + 1])
        if direction == "bi":  # the backward direction must have looked only at the future
            assert not torch.allclose(future[1][:, t], base[1][:, t])
    if direction == "bi":
        for t in range(1, length):
            past = logit_tensors(model(_changed(ids, slice(None, t)))[0])
            torch.testing.assert_close(past[1][:, t:], base[1][:, t:], rtol=0, atol=1e-6)
            assert not torch.allclose(past[1][:, t - 1], base[1][:, t - 1])


@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
def test_bidirectional_lengths_make_padding_invisible(cell, nonlinearity):
    model = tiny_model(cell, "bi", 2, nonlinearity=nonlinearity).eval()
    short = random_ids(batch=1, length=5)
    padded = torch.cat([short, torch.zeros(1, 3, dtype=torch.long)], dim=1)  # right-padded with <pad> = 0
    other = random_ids(batch=1, length=8, seed=7)
    alone, _ = model(short)
    batch, _ = model(torch.cat([padded, other]), lengths=torch.tensor([5, 8]))
    full, _ = model(other)
    torch.testing.assert_close(batch.backward[:1, :5], alone.backward, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch.forward[:1, :5], alone.forward, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch.backward[1:], full.backward, rtol=1e-5, atol=1e-6)
    unmasked, _ = model(padded)  # without lengths the backward stack reads the padding first
    assert not torch.allclose(unmasked.backward[:, :5], alone.backward)


def test_bidirectional_state_is_the_forward_stacks_and_stacks_are_separate():
    model = tiny_model("lstm", "bi", 2).eval()
    ids = random_ids()
    _, state = model(ids)
    _, direct = model.rnn(model.embedding(ids))
    for a, b in zip(state, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert isinstance(model, BidirectionalLM) and isinstance(model, SequenceModel)
    assert model.backward_rnn is not model.rnn
    assert {id(p) for p in model.rnn.parameters()}.isdisjoint(id(p) for p in model.backward_rnn.parameters())


@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_dropout_acts_only_in_training_mode(cell, nonlinearity, layers):
    model = tiny_model(cell, "uni", layers, nonlinearity=nonlinearity, dropout=0.5)
    ids = random_ids()
    model.train()
    first, second = model(ids)[0], model(ids)[0]
    assert not torch.allclose(first, second)
    model.eval()
    torch.testing.assert_close(model(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_inter_layer_dropout_is_inside_the_stack():
    """With 2 layers, train-mode hidden states of the top layer vary between calls (dropout between layers)."""
    for cell in ("lstm", "lstm_peephole", "gru_minimal"):
        model = tiny_model(cell, "uni", 2, dropout=0.5).train()
        embedded = model.embedding(random_ids())
        assert not torch.allclose(model.rnn(embedded)[0], model.rnn(embedded)[0]), cell
        single = tiny_model(cell, "uni", 1, dropout=0.5).train()  # nothing between layers to drop
        embedded = single.embedding(random_ids())
        torch.testing.assert_close(single.rnn(embedded)[0], single.rnn(embedded)[0], rtol=0, atol=0)


@pytest.mark.parametrize("direction", ["uni", "bi"])
def test_tie_weights_shares_embedding_and_output(direction):
    tied = tiny_model("gru", direction, 1, embedding_size=8, hidden_size=8, tie_weights=True)
    untied = tiny_model("gru", direction, 1, embedding_size=8, hidden_size=8)
    assert tied.output.weight is tied.embedding.weight
    assert untied.output.weight is not untied.embedding.weight
    assert count_parameters(untied) - count_parameters(tied) == VOCAB * 8
    logits, _ = tied(random_ids())
    logit_tensors(logits)[0].sum().backward()
    assert tied.embedding.weight.grad is not None


def test_count_parameters_matches_the_formula():
    model = tiny_model("lstm", "uni", 1)  # E=6, H=8, V=13
    lstm = 4 * 8 * (6 + 8) + 2 * 4 * 8
    assert count_parameters(model) == VOCAB * 6 + lstm + VOCAB * 8 + VOCAB
    assert count_parameters(tiny_model("lstm", "bi", 1)) == count_parameters(model) + lstm


def test_relu_rnn_uses_relu():
    assert tiny_model("rnn", nonlinearity="relu").rnn.nonlinearity == "relu"
    assert tiny_model("rnn").rnn.nonlinearity == "tanh"


def test_unknown_cell_lists_the_valid_keys():
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(cell="lsmt"), VOCAB)
    message = str(info.value)
    assert "'lsmt'" in message and "\n" not in message
    for key in MODEL_REGISTRY:
        assert key in message
    assert isinstance(info.value, UserError)


def test_relu_on_a_gated_cell_and_bad_vocab_are_config_errors():
    with pytest.raises(ConfigError, match="nonlinearity.*only to cell 'rnn'"):
        build_model(ModelConfig(cell="gru", nonlinearity="relu"), VOCAB)
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model(ModelConfig(cell="gru"), 0)


def test_detach_state_cuts_the_graph_for_tensors_and_tuples():
    for cell in ("gru", "lstm"):
        model = tiny_model(cell)
        _, state = model(random_ids())
        detached = detach_state(state)
        assert all(not t.requires_grad for t in _state_tensors(detached))
        assert all(t.requires_grad for t in _state_tensors(state))
        assert type(detached) is type(state)
    assert detach_state(None) is None
    assert SequenceModel.detach_state(None) is None


def test_ensure_causal_refuses_bidirectional_models():
    ensure_causal(tiny_model("gru", "uni"))
    with pytest.raises(NonCausalModelError, match=r"direction: bi.*sees the future.*cannot be trained"):
        ensure_causal(tiny_model("gru", "bi"), "be trained as a next-token model", remedy="use the bi loss")


def test_forward_lm_of_a_bidirectional_model_is_its_causal_forward_direction():
    import torch

    from pipeline.config import ModelConfig
    from pipeline.models import build_model
    from pipeline.models.sampling import sample

    torch.manual_seed(0)
    bi = build_model(ModelConfig(cell="lstm", hidden_size=16, embedding_size=8, direction="bi"), 11).eval()
    fwd = bi.forward_lm()
    assert fwd.causal and not bi.causal
    ids = torch.randint(3, 11, (2, 7))
    logits, _ = bi(ids)
    alone, _ = fwd(ids)
    assert torch.equal(alone, logits.forward)
    assert fwd.output.weight.data_ptr() == bi.output.weight.data_ptr()  # shared, not copied
    assert len(sample(fwd, n=3, max_length=5, seed=1)) == 3
