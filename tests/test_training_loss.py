"""Losses (masking, causality, both directions), whole-split evaluation, and gradient clipping statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.data.windows import record_batch
from pipeline.figures import summarize
from pipeline.models import NonCausalModelError
from pipeline.models.objective import batch_loss, next_token_loss
from pipeline.models.scoring import evaluate_split
from pipeline.training import devices
from pipeline.training.optim import clip_gradients, derived_after, layer_grad_norms
from tests.train_helpers import tiny_model

V = 30


def _ids(n: int, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(3, V, n)
    ids[::9] = 2
    ids[-1] = 2
    return ids


def test_padding_is_ignored_by_the_loss():
    model = tiny_model(V).eval()
    short, long = np.array([5, 6, 2]), np.array([7, 8, 9, 10, 11, 2])
    together = batch_loss(model, record_batch([short, long], 20))
    alone = [batch_loss(model, record_batch([r], 20)) for r in (short, long)]
    assert together.counts.item() == 3 + 6  # every token of each record, its closing <eos> too; padding never
    assert together.sums.item() == pytest.approx(sum(a.sums.item() for a in alone), rel=1e-5)


def test_next_token_loss_matches_a_plain_cross_entropy():
    model = tiny_model(V).eval()
    inputs, targets = torch.randint(3, V, (2, 9)), torch.randint(3, V, (2, 9))
    total, count, _ = next_token_loss(model, inputs, targets)
    logits, _ = model(inputs)
    assert count.item() == 18
    assert total.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
                                                         reduction="sum").item(), rel=1e-5)


def test_next_token_training_refuses_a_bidirectional_model():
    model = tiny_model(V, direction="bi")
    with pytest.raises(NonCausalModelError, match="bidirectional"):
        next_token_loss(model, torch.randint(3, V, (2, 5)), torch.randint(3, V, (2, 5)))


def test_bidirectional_objective_reports_both_directions():
    model = tiny_model(V, direction="bi").eval()
    batch = record_batch([np.array([5, 6, 7, 2]), np.array([8, 2])], 10)
    loss = batch_loss(model, batch)
    assert loss.sums.shape == (2,)
    assert loss.counts.tolist() == [4 + 2, 4 + 2]  # forward: each record; backward: <eos> start + all but its last
    means = loss.sums / loss.counts
    assert loss.objective.item() == pytest.approx(means.mean().item(), rel=1e-6)


@pytest.mark.parametrize("direction", ["uni", "bi"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_whole_split_evaluation_counts_every_token(direction, batch_size):
    ids = _ids(333)
    figures = evaluate_split(tiny_model(V, direction=direction), ids, batch_size=batch_size, bptt=25)
    assert figures["tokens"] == len(ids)
    assert figures["perplexity"] == pytest.approx(math.exp(figures["loss"]))
    assert figures["bits_per_token"] == pytest.approx(figures["loss"] / math.log(2))
    if direction == "bi":
        assert {"forward_loss", "backward_perplexity"} <= set(figures)


def test_stream_evaluation_carries_state_so_window_length_does_not_matter():
    model, ids = tiny_model(V), _ids(300)
    whole = evaluate_split(model, ids, batch_size=1, bptt=len(ids) + 1)["loss"]
    windows = evaluate_split(model, ids, batch_size=1, bptt=7)["loss"]
    assert windows == pytest.approx(whole, rel=1e-5)  # no truncation artefacts


def test_evaluation_leaves_training_mode_alone():
    model = tiny_model(V).train()
    evaluate_split(model, _ids(50), bptt=10)
    assert model.training


def test_summarize_averages_directions():
    out = summarize([10.0, 20.0], [5, 5], ("forward", "backward"))
    assert out["loss"] == pytest.approx(3.0) and out["forward_loss"] == 2.0 and out["backward_loss"] == 4.0


# ----------------------------------------------------------------------------- clipping


def _with_grads(scale: float):
    model = tiny_model(V)
    loss = batch_loss(model, record_batch([np.array([5, 6, 7, 2])], 10)).objective * scale
    loss.backward()
    return model, [p for p in model.parameters()]


def test_clip_by_norm_reports_the_norm_before_and_after():
    model, params = _with_grads(100.0)
    reference = torch.nn.utils.get_total_norm([p.grad.clone() for p in params])
    stats = clip_gradients(params, "norm", 1.0)
    assert stats.before.item() == pytest.approx(reference.item(), rel=1e-5)
    after, fired = derived_after(stats.before.item(), "norm", 1.0)  # the host's figures, no kernel per step
    actual = torch.nn.utils.get_total_norm([p.grad for p in params]).item()
    assert fired == 1.0 and after == pytest.approx(1.0, rel=1e-4) and actual == pytest.approx(after, rel=1e-4)


def test_clip_by_norm_below_the_threshold_changes_nothing():
    model, params = _with_grads(1e-3)
    before = [p.grad.clone() for p in params]
    stats = clip_gradients(params, "norm", 1.0)
    after, fired = derived_after(stats.before.item(), "norm", 1.0)
    assert fired == 0.0 and after == pytest.approx(stats.before.item(), rel=1e-5)
    assert all(torch.allclose(a, p.grad) for a, p in zip(before, params, strict=True))


def test_clip_by_value_clamps_every_entry():
    model, params = _with_grads(100.0)
    stats = clip_gradients(params, "value", 0.01)
    assert stats.fired.item() == 1.0
    assert max(p.grad.abs().max().item() for p in params) <= 0.01 + 1e-9
    assert stats.after.item() == pytest.approx(torch.nn.utils.get_total_norm([p.grad for p in params]).item())
    assert stats.after.item() < stats.before.item()


def test_no_clipping_still_measures():
    model, params = _with_grads(100.0)
    before = [p.grad.clone() for p in params]
    stats = clip_gradients(params, "none", 1.0)
    assert stats.before.item() > 1.0 and derived_after(stats.before.item(), "none", 1.0) == (stats.before.item(), 0.0)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params, strict=True))


def test_layer_norms_name_every_parameter():
    model, params = _with_grads(1.0)
    names, norms = layer_grad_norms(model)
    assert names == [n for n, _ in model.named_parameters()]
    assert torch.allclose(norms, torch.stack([p.grad.norm() for p in params]))


# ----------------------------------------------------------------------------- thread choice


def test_thread_plan_uses_every_core_for_large_recurrent_steps_and_one_for_tiny_ones():
    from pipeline.config import ModelConfig
    from pipeline.models import build_model

    def plan(batch: int, cpus: int = 2, **model) -> int:
        config = ModelConfig(**{"cell": "lstm", "embedding_size": 64, **model})
        return devices.thread_plan(build_model(config, 65), batch, cpus=cpus)

    # The default pipeline's text runs (1x384 LSTM and 1x256 at batch 32) take both cores.
    assert plan(32, hidden_size=384) == 2
    assert plan(32, hidden_size=256) == 2
    assert plan(32, hidden_size=256, direction="bi") == 2
    # A GRU of the same size too (the pipeline's names GRU: 1.38x on two); a basic RNN shares less of a step.
    assert plan(32, hidden_size=256, cell="gru") == 2
    assert plan(64, hidden_size=256, cell="gru") == 2
    assert plan(32, hidden_size=128, cell="gru") == 1
    # Its music runs (1x256 at batch 8 of 32-step windows, 4-5 MFLOP a step), a basic RNN of the same size,
    # tiny steps and hand-written cells (a Python loop per step) keep one thread; one CPU is one thread.
    assert plan(8, hidden_size=256) == 1
    assert plan(8, hidden_size=256, cell="gru") == 1
    assert plan(32, hidden_size=256, cell="rnn") == 1
    assert plan(8, hidden_size=64) == 1
    assert plan(32, hidden_size=256, cell="lstm_peephole") == 1
    assert plan(32, hidden_size=512, cpus=1) == 1
    # More cores: one more thread per 12 MFLOP of LSTM work, up to the cores there are.
    assert plan(64, hidden_size=512, cpus=16) == 13  # 2 * 64 * 4 * 512 * (64 + 512) = 151 MFLOP
    assert plan(64, hidden_size=512, cpus=4) == 4
    # The work counts every layer and direction.
    one = devices.recurrent_step_flops(build_model(ModelConfig(cell="lstm", hidden_size=100), 10), 4)
    assert one == 2 * 4 * 4 * 100 * (64 + 100)
    two = devices.recurrent_step_flops(build_model(ModelConfig(cell="lstm", hidden_size=100, num_layers=2), 10), 4)
    assert two == one + 2 * 4 * 4 * 100 * (100 + 100)


def test_the_thread_count_is_requested_or_planned_and_never_timed():
    original = torch.get_num_threads()
    try:
        assert devices.choose_threads(1, torch.device("cpu"), 2) == 1  # an explicit count wins over the plan
        assert devices.choose_threads(0, torch.device("cpu"), 2) == 2
        assert devices.choose_threads(0, torch.device("cpu"), 1) == 1
    finally:
        torch.set_num_threads(original)


def test_windows_scoring_restarts_the_state_in_every_window():
    torch.manual_seed(0)
    model = tiny_model(30).eval()
    ids = np.random.default_rng(0).integers(3, 30, 200)
    windows = evaluate_split(model, ids, mode="windows", batch_size=1, bptt=20)
    stream = evaluate_split(model, ids, mode="stream", batch_size=1, bptt=20)
    flat = np.concatenate([[2], ids])
    total = 0.0
    for start in range(0, len(ids), 20):  # each window scored alone from a zero state
        piece = flat[start : start + 21]
        inputs, targets = torch.as_tensor(piece[:-1])[None], torch.as_tensor(piece[1:])[None]
        with torch.no_grad():
            logits, _ = model(inputs)
        total += F.cross_entropy(logits[0], targets[0], reduction="sum").item()
    assert windows["tokens"] == stream["tokens"] == len(ids)
    assert windows["loss"] == pytest.approx(total / len(ids), rel=1e-5)
    assert windows["loss"] != pytest.approx(stream["loss"], rel=1e-6)
