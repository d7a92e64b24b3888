"""train_supervised: real torch training on tiny supervised problems, tracking, clipping and the NaN stop."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import CurriculumTraining, ModelConfig
from pipeline.curriculum.agreement import TOKENS, make_examples
from pipeline.curriculum.batches import RandomBatches, pad_rows
from pipeline.models import build_head_model
from pipeline.tracking import NullTracker
from pipeline.training.state import TrainingDivergedError
from pipeline.training.supervised import train_supervised

SETTINGS = CurriculumTraining(steps=40, batch_size=16, lr=0.01, eval_every_steps=20, log_every_steps=10, seed=0)


def _agreement(distance: int = 3, n: int = 256, seed: int = 0):
    rows, labels = make_examples(np.full(n, distance), 0.25, np.random.default_rng(seed))
    return (*pad_rows(rows), torch.from_numpy(labels))


def _loss(model, batch):
    ids, lengths, labels = batch
    return F.cross_entropy(model(ids, lengths), labels)


def _accuracy(data):
    def evaluate(model):
        ids, lengths, labels = data
        return {"accuracy": float((model(ids, lengths).argmax(-1) == labels).float().mean())}

    return evaluate


def _classifier(seed: int = 0):
    torch.manual_seed(seed)
    return build_head_model("classifier", ModelConfig(cell="gru", embedding_size=8, hidden_size=16), len(TOKENS), 2)


def test_it_learns_evaluates_on_schedule_and_reports():
    train, held_out = _agreement(seed=0), _agreement(seed=1)
    tracker = NullTracker()
    model = _classifier()
    result = train_supervised(model, RandomBatches(train, 16, seed=0, lengths=1), _loss, SETTINGS,
                              evaluate=_accuracy(held_out), tracker=tracker)
    assert [row["step"] for row in result.history] == [20, 40]
    assert result.metrics["accuracy"] > 0.9  # distance 3 is easy: the subject is 3 tokens back
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["steps"] == 40 and result.metrics["parameters"] > 0 and result.metrics["train_seconds"] > 0
    # per step: grad_norm, grad_norm_clipped, clipped; per 10 steps: train_loss; per evaluation: val_accuracy
    assert tracker.points == 40 * 3 + 4 + 2
    assert model.training  # left in training mode after evaluating


def test_the_same_seed_gives_the_same_run():
    data = _agreement()
    runs = [train_supervised(_classifier(3), RandomBatches(data, 16, seed=5, lengths=1), _loss,
                             dataclasses.replace(SETTINGS, steps=10, eval_every_steps=10)) for _ in range(2)]
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_clipping_bounds_what_the_optimizer_sees(clip, mlflow_uri):
    from mlflow import MlflowClient

    from pipeline.tracking.mlflow_tracker import MlflowTracker

    tracker = MlflowTracker.start("supervised", clip, tracking_uri=mlflow_uri)
    settings = dataclasses.replace(SETTINGS, steps=12, clip=clip, clip_threshold=1e-3, eval_every_steps=12)
    train_supervised(_classifier(), RandomBatches(_agreement(), 16, seed=0, lengths=1), _loss, settings,
                     tracker=tracker)
    tracker.finish()
    client = MlflowClient(mlflow_uri)
    before = {p.step: p.value for p in client.get_metric_history(tracker.run_id, "grad_norm")}
    after = {p.step: p.value for p in client.get_metric_history(tracker.run_id, "grad_norm_clipped")}
    fired = [p.value for p in client.get_metric_history(tracker.run_id, "clipped")]
    assert sorted(before) == list(range(1, 13)) and fired == [1.0] * 12
    for step in before:
        assert after[step] < before[step]
        if clip == "norm":
            assert after[step] == pytest.approx(1e-3, rel=1e-3)


def test_a_nan_loss_stops_before_the_update():
    model = _classifier()
    weights = [p.detach().clone() for p in model.parameters()]

    def poisoned(m, batch):
        return _loss(m, batch) * (math.nan if m.training else 1.0)

    with pytest.raises(TrainingDivergedError, match="diverged at step 1: the loss or the gradient norm is NaN"):
        train_supervised(model, RandomBatches(_agreement(), 16, seed=0, lengths=1), poisoned, SETTINGS)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
