"""fit(): real torch training on tiny data: outputs, tracking points, NaN stop, early stopping, exact resume."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from pipeline.errors import SeqlabWarning
from pipeline.files import read_json
from pipeline.models.checkpoint import load_checkpoint
from pipeline.run_folder import RunFolder, WorkFolder
from pipeline.tokenization import samples_text
from pipeline.tracking import NullTracker
from pipeline.tracking.mlflow_tracker import MlflowTracker
from pipeline.training.loop import fit
from pipeline.training.state import TrainingDivergedError
from pipeline.vocab import Vocabulary
from tests.train_helpers import char_dataset, tiny_model, tiny_settings

VOCAB, TRAIN, VAL = char_dataset()


def _decode(sequences):
    return "\n".join(" ".join(map(str, s)) for s in sequences)


@pytest.mark.parametrize(("batching", "direction"), [("stream", "uni"), ("records", "uni"), ("stream", "bi"),
                                                     ("records", "bi")])
def test_fit_learns_and_writes_every_output(tmp_path, batching, direction):
    model = tiny_model(len(VOCAB), direction=direction)
    tracker = NullTracker()
    result = fit(model, TRAIN, VAL, tiny_settings(batching=batching, epochs=3), tmp_path, tracker=tracker,
                 decode_samples=_decode, char_level=True)
    m = result.metrics
    rows = read_json(RunFolder(tmp_path).metrics)
    assert rows == m and result.stop_reason == "completed"
    folder = RunFolder(tmp_path)
    for path in (WorkFolder(tmp_path).checkpoint, folder.model, *folder.finished_files):
        assert path.stat().st_size > 0
    epochs = RunFolder(tmp_path).epochs.read_text().splitlines()
    assert epochs[0].startswith("epoch,step,train_loss") and len(epochs) == 1 + 3
    assert m["val_loss"] < math.log(len(VOCAB))  # better than uniform guessing
    assert m["val_bpc"] == pytest.approx(m["val_loss"] / math.log(2))
    assert ("val_forward_loss" in m) == (direction == "bi")
    assert tracker.status == "FINISHED" and ("model", None) in tracker.artifacts
    sampled = [a for a in tracker.artifacts if a[1] and a[1].startswith("samples/")]
    assert len(sampled) == (3 if direction == "uni" else 0)  # one per validation; a bi model cannot sample
    assert all(Path(path).name == "samples.txt" for path, _ in sampled)  # text only: no MIDI, no piano roll


def test_every_step_is_tracked_with_its_step_and_writes_are_batched(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    tracker = MlflowTracker.start("points", "lstm", tracking_uri=mlflow_uri, flush_seconds=3600)
    result = fit(tiny_model(len(VOCAB)), TRAIN, VAL, tiny_settings(epochs=2), tmp_path, tracker=tracker)
    client, steps = MlflowClient(mlflow_uri), result.metrics["steps"]
    for key in ("grad_norm", "grad_norm_clipped", "clipped"):
        assert sorted(p.step for p in client.get_metric_history(tracker.run_id, key)) == list(range(1, steps + 1))
    for key in ("train_loss", "train_perplexity", "clip_rate", "lr", "tokens_per_s", "val_loss", "val_perplexity",
                "val_bits_per_token", "epoch", "grad_norm/output.weight"):
        assert client.get_metric_history(tracker.run_id, key), key
    run = client.get_run(tracker.run_id)
    written = sum(len(client.get_metric_history(tracker.run_id, k)) for k in run.data.metrics)
    assert written == tracker.points_written > 3 * steps
    assert tracker.batches_written <= 2 + 2  # one flush per validation and one at the end: not one per point
    assert run.info.status == "FINISHED" and run.data.tags["stop_reason"] == "completed"


def test_samples_are_logged_as_text_one_file_per_validation(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    tracker = MlflowTracker.start("samples", "lstm", tracking_uri=mlflow_uri)
    result = fit(tiny_model(len(VOCAB)), TRAIN, VAL, tiny_settings(epochs=2), tmp_path / "run", tracker=tracker,
                 decode_samples=lambda sequences: samples_text(VOCAB, sequences))
    client = MlflowClient(mlflow_uri)
    folders = [a.path for a in client.list_artifacts(tracker.run_id, "samples")]
    assert len(folders) == 2 and result.metrics["steps"] > 0  # one per validation (one per epoch here)
    for folder in folders:
        assert [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(tracker.run_id, folder)] == ["samples.txt"]
    text = Path(client.download_artifacts(tracker.run_id, f"{folders[-1]}/samples.txt", str(tmp_path))).read_text()
    samples = text.rstrip("\n").split("\n\n")
    assert len(samples) == 2 and all(set(s) <= set("".join(VOCAB.tokens)) | {"\n"} for s in samples)  # decoded characters


def test_sampled_music_reads_as_its_tokens():
    music = Vocabulary.build({"on60": 3, "wait4": 2, "off60": 1}, meta={"kind": "midi"})
    ids = [music.tokens.index(t) for t in ("on60", "wait4", "off60")]
    assert samples_text(music, [ids, ids[:1]]) == "on60 wait4 off60\n\non60\n"


def test_nan_loss_stops_at_that_step_marks_the_run_failed_and_keeps_the_checkpoint(tmp_path, mlflow_uri):
    from mlflow import MlflowClient

    model = tiny_model(len(VOCAB))
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 10th training forward pass (step 10) produces NaN logits
        calls["n"] += 1
        if module.training and calls["n"] == 10:
            return output * float("nan")
        return None

    model.output.register_forward_hook(poison)
    tracker = MlflowTracker.start("nan", "lstm", tracking_uri=mlflow_uri)
    settings = tiny_settings(checkpoint_every_steps=7, log_every_steps=100)
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 10\b.*checkpoint .*checkpoint\.pt is kept"):
        fit(model, TRAIN, VAL, settings, tmp_path, tracker=tracker)
    run = MlflowClient(mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and "step 10" in run.data.tags["failure_reason"]
    payload = load_checkpoint(WorkFolder(tmp_path).checkpoint)
    assert payload["loop"]["step"] == 7
    assert all(torch.isfinite(t).all() for t in payload["model_state"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the optimizer step


def test_early_stopping_stops_after_patience_validations_without_improvement(tmp_path):
    settings = tiny_settings(epochs=50, lr=0.3, clip="none", val_every_steps=3, early_stopping_patience=2)
    result = fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, tmp_path)
    m = result.metrics
    assert result.stop_reason == "early_stopping" and m["early_stopped"] == 1
    rows = RunFolder(tmp_path).epochs.read_text().splitlines()[1:]
    steps = [int(r.split(",")[1]) for r in rows]
    assert steps[-1] == m["steps"] and len([s for s in steps if s > m["best_step"]]) == 2
    best = load_checkpoint(RunFolder(tmp_path).model)
    assert best["step"] == m["best_step"] and best["val_loss"] == pytest.approx(m["val_loss"])


def test_cosine_schedule_ends_at_min_lr(tmp_path):
    fit(tiny_model(len(VOCAB)), TRAIN, VAL, tiny_settings(schedule="cosine", min_lr=1e-4), tmp_path)
    last_lr = float(RunFolder(tmp_path).grad_norms.read_text().splitlines()[-1].split(",")[7])
    assert last_lr == pytest.approx(1e-4, rel=1e-3)


class _Interrupt(NullTracker):
    """Raises KeyboardInterrupt when asked to log step ``at`` (between two checkpoints)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def log_metrics(self, metrics, step):
        if step == self.at:
            raise KeyboardInterrupt
        super().log_metrics(metrics, step)


def _final(out):
    metrics = read_json(RunFolder(out).metrics)
    timing = {"train_seconds", "tokens_per_s", "tracking_seconds", "tracking_share", "threads"}
    epochs = [{k: v for k, v in row.items() if k not in timing}  # train_seconds: wall time, differs run to run
              for row in csv.DictReader(RunFolder(out).epochs.open())]
    last = WorkFolder(out).checkpoint  # fit() keeps it in its output folder; a finished stage run, nowhere
    return ({k: v for k, v in metrics.items() if k not in timing}, load_checkpoint(RunFolder(out).model),
            load_checkpoint(last) if last.exists() else None, epochs)


def assert_same_run(a, b):
    metrics_a, best_a, last_a, epochs_a = _final(a)
    metrics_b, best_b, last_b, epochs_b = _final(b)
    assert metrics_a == metrics_b
    assert epochs_a == epochs_b
    assert (last_a is None) == (last_b is None)
    for key in best_a["model_state"]:
        assert torch.equal(best_a["model_state"][key], best_b["model_state"][key]), key
        if last_a is not None:
            assert torch.equal(last_a["model_state"][key], last_b["model_state"][key]), key


@pytest.mark.parametrize(("batching", "dropout"), [("stream", 0.0), ("records", 0.3)])
def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, batching, dropout):
    settings = tiny_settings(batching=batching, epochs=3, checkpoint_every_steps=6, log_every_steps=4,
                             schedule="plateau")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    fit(tiny_model(len(VOCAB), num_layers=2, dropout=dropout), TRAIN, VAL, settings, whole)
    tracker = _Interrupt(at=16)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(len(VOCAB), num_layers=2, dropout=dropout), TRAIN, VAL, settings, parts, tracker=tracker)
    assert tracker.status == "KILLED"
    assert load_checkpoint(WorkFolder(parts).checkpoint)["loop"]["step"] == 12
    resumed = fit(tiny_model(len(VOCAB), num_layers=2, dropout=dropout, seed=99), TRAIN, VAL, settings, parts,
                  resume=True)
    assert resumed.stop_reason == "completed"
    assert_same_run(whole, parts)


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    settings = dataclasses.replace(tiny_settings(), epochs=1)
    with pytest.warns(SeqlabWarning, match="no checkpoint at .*; starting from scratch"):
        fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, tmp_path, resume=True)


class _PerStep(NullTracker):
    """Keeps the per-step ``clipped`` points (1.0 where clipping fired)."""

    def __init__(self) -> None:
        super().__init__()
        self.clipped: dict[int, float] = {}

    def log_metrics(self, metrics, step):
        super().log_metrics(metrics, step)
        if "clipped" in metrics:
            self.clipped[step] = metrics["clipped"]


def test_the_clip_rate_is_the_share_of_steps_clipped_whatever_the_interval_lengths(tmp_path):
    """An epoch's last logging interval is shorter than the others: the run's clip_rate weights each interval's
    rate by its steps, so it is the share of steps where clipping fired (as the per-step points say)."""
    tracker = _PerStep()
    settings = tiny_settings(epochs=3, log_every_steps=4, clip="norm", clip_threshold=0.3)
    result = fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, tmp_path, tracker=tracker)
    with open(RunFolder(tmp_path).grad_norms, newline="") as f:
        rows = list(csv.DictReader(f))
    lengths = [int(b["step"]) - int(a["step"]) for a, b in zip([{"step": 0}, *rows], rows, strict=False)]
    truth = sum(tracker.clipped.values()) / len(tracker.clipped)
    assert len(tracker.clipped) == result.metrics["steps"] == sum(lengths) and len(set(lengths)) > 1
    assert 0 < truth < 1
    unweighted = sum(float(r["clip_rate"]) for r in rows) / len(rows)
    assert unweighted != pytest.approx(truth)  # the data tell the two definitions apart
    assert result.metrics["clip_rate"] == pytest.approx(truth)
