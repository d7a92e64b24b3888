"""fit() on a CUDA GPU: bf16 autocast, pinned non-blocking copies, deferred NaN detection, resume, CPU loading.

Skipped where there is no GPU (as in CI); run on a GPU machine with ``pytest tests/test_training_cuda.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.run_folder import RunFolder, WorkFolder
from pipeline.training.devices import autocast_dtype
from pipeline.training.loop import fit
from pipeline.training.state import TrainingDivergedError
from tests.train_helpers import char_dataset, tiny_model, tiny_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

VOCAB, TRAIN_BIG, VAL = char_dataset(n_train=600)


def test_auto_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    assert autocast_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    assert autocast_dtype(torch.device("cuda"), "fp32") is None


@pytest.mark.parametrize(("batching", "direction", "cell"), [("stream", "uni", "lstm"), ("records", "bi", "gru"),
                                                              ("stream", "uni", "lstm_peephole")])
def test_bf16_training_on_cuda_learns_like_fp32(tmp_path, batching, direction, cell):
    results = {}
    for precision in ("fp32", "auto"):
        settings = tiny_settings(device="cuda", precision=precision, batching=batching, epochs=3, batch_size=8)
        model = tiny_model(len(VOCAB), cell=cell, direction=direction, hidden_size=64)
        results[precision] = fit(model, TRAIN_BIG, VAL, settings, tmp_path / precision).metrics
    fp32, bf16 = results["fp32"]["val_loss"], results["auto"]["val_loss"]
    assert math.isfinite(bf16) and bf16 < math.log(len(VOCAB))
    assert bf16 == pytest.approx(fp32, rel=0.05)
    # a GPU-trained checkpoint loads and runs on a CPU
    model = model_from_checkpoint(load_checkpoint(RunFolder(tmp_path / "auto").model), "cpu")
    logits, _ = model(torch.randint(3, len(VOCAB), (2, 7)))
    assert torch.isfinite(logits[0] if direction == "bi" else logits).all()


def test_nan_on_cuda_is_found_at_the_next_sync_and_named_by_its_step(tmp_path):
    model = tiny_model(len(VOCAB))
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if module.training and calls["n"] == 10 else None

    model.output.register_forward_hook(poison)
    settings = tiny_settings(device="cuda", checkpoint_every_steps=7, log_every_steps=100)
    with pytest.raises(TrainingDivergedError, match=r"step 10\b"):
        fit(model, TRAIN_BIG, VAL, settings, tmp_path)
    payload = load_checkpoint(WorkFolder(tmp_path).checkpoint)
    assert payload["loop"]["step"] == 7  # the step-14 checkpoint found the NaN and was never written
    assert all(torch.isfinite(t).all() for t in payload["model_state"].values())


def test_resume_on_cuda_continues_to_the_same_end(tmp_path):
    settings = tiny_settings(device="cuda", epochs=2, checkpoint_every_steps=6)
    whole = fit(tiny_model(len(VOCAB)), TRAIN_BIG, VAL, settings, tmp_path / "whole").metrics
    first = tiny_settings(device="cuda", epochs=2, checkpoint_every_steps=6, max_steps=13)
    fit(tiny_model(len(VOCAB)), TRAIN_BIG, VAL, first, tmp_path / "parts")
    resumed = fit(tiny_model(len(VOCAB), seed=5), TRAIN_BIG, VAL, settings, tmp_path / "parts", resume=True).metrics
    assert resumed["steps"] == whole["steps"]
    # exact on a GPU as on a CPU (docs/training.md, "Checkpoints and exact resume"): the same figures and weights
    assert resumed["val_loss"] == whole["val_loss"]
    weights = [load_checkpoint(WorkFolder(tmp_path / run).checkpoint)["model_state"] for run in ("whole", "parts")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_resume_on_cuda_is_bit_exact_with_dropout_between_cudnn_layers(tmp_path):
    """cuDNN draws a fused stack's between-layer dropout from its own state; reseeded from the checkpointed CUDA
    generator every step, a resumed run ends on the uninterrupted run's weights, bit for bit."""
    fields = {"num_layers": 2, "dropout": 0.3, "hidden_size": 64}
    settings = tiny_settings(device="cuda", epochs=2, checkpoint_every_steps=6)
    fit(tiny_model(len(VOCAB), **fields), TRAIN_BIG, VAL, settings, tmp_path / "whole")
    first = tiny_settings(device="cuda", epochs=2, checkpoint_every_steps=6, max_steps=13)
    fit(tiny_model(len(VOCAB), **fields), TRAIN_BIG, VAL, first, tmp_path / "parts")
    fit(tiny_model(len(VOCAB), seed=5, **fields), TRAIN_BIG, VAL, settings, tmp_path / "parts", resume=True)
    whole = load_checkpoint(WorkFolder(tmp_path / "whole").checkpoint)["model_state"]
    resumed = load_checkpoint(WorkFolder(tmp_path / "parts").checkpoint)["model_state"]
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "resumed weights differ from the uninterrupted run"
