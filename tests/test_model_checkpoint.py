"""Checkpoints: exact round trips for every model, weights_only payloads, wrapper prefixes, clear errors."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.models.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_payload,
    clean_state_dict,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from tests.model_helpers import GRID, GRID_IDS, logit_tensors, random_ids, tiny_model


@pytest.mark.parametrize(("cell", "direction", "layers"), GRID, ids=GRID_IDS)
def test_save_load_round_trip_gives_identical_logits(tmp_path, cell, direction, layers):
    model = tiny_model(cell[0], direction, layers, nonlinearity=cell[1], dropout=0.2, seed=3).eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, checkpoint_payload(model))
    payload = load_checkpoint(path)
    loaded = model_from_checkpoint(payload)
    assert not loaded.training
    assert loaded.config == model.config and loaded.vocab_size == model.vocab_size
    assert type(loaded) is type(model)
    ids = random_ids()
    for a, b in zip(logit_tensors(model(ids)[0]), logit_tensors(loaded(ids)[0]), strict=True):
        assert torch.equal(a, b)


def test_payload_holds_plain_values():
    payload = checkpoint_payload(tiny_model("gru", "bi", 2))
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["vocab_size"] == 13 and type(payload["vocab_size"]) is int
    assert payload["model_config"]["cell"] == "gru" and payload["model_config"]["direction"] == "bi"
    values = payload["model_config"].values()
    assert all(isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(isinstance(i, int) for i in v))
               for v in values)  # plain values only (cutoffs is a list of ints)
    assert any(key.startswith("backward_rnn.") for key in payload["model_state"])


def test_trainer_state_round_trips_under_weights_only(tmp_path):
    model = tiny_model("lstm", "uni", 2, embedding_size=8, hidden_size=8, tie_weights=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits, _ = model(random_ids())
    logits.sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    scheduler.step(1.0)
    extra = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        "step": 17, "best_val_loss": math.inf, "position": [3, 4], "note": "ok", "flag": True, "none": None,
    }
    save_checkpoint(tmp_path / "c.pt", {**checkpoint_payload(model), **extra})
    payload = load_checkpoint(tmp_path / "c.pt")
    assert payload["step"] == 17 and payload["best_val_loss"] == math.inf and payload["position"] == [3, 4]
    assert payload["note"] == "ok" and payload["flag"] is True and payload["none"] is None
    assert payload["rng"]["python"] == random.getstate()
    assert torch.equal(payload["rng"]["torch"], torch.get_rng_state())
    restored = model_from_checkpoint(payload)
    assert restored.output.weight is restored.embedding.weight  # tying survives a reload
    fresh = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    fresh.load_state_dict(payload["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


class _DataParallelLike(nn.Module):
    """Holds its model as ``module`` like nn.DataParallel/DDP (which would move it to a GPU where there is one)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # importing torch._dynamo warns about torch.jit
def test_wrapper_prefixes_are_stripped(tmp_path):
    model = tiny_model("gru", "uni", 1)
    compiled = torch.compile(model)  # compilation is lazy: wrapping costs nothing until called
    assert any(key.startswith("_orig_mod.") for key in compiled.state_dict())
    assert unwrap_model(compiled) is model
    assert unwrap_model(_DataParallelLike(compiled)) is model
    payload = checkpoint_payload(compiled)
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in payload["model_state"])
    # A state dict saved by someone else from a wrapped model still loads.
    payload["model_state"] = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    assert clean_state_dict(payload["model_state"]).keys() == model.state_dict().keys()
    save_checkpoint(tmp_path / "w.pt", payload)
    loaded = model_from_checkpoint(load_checkpoint(tmp_path / "w.pt"))
    assert torch.equal(loaded(random_ids())[0], model.eval()(random_ids())[0])


def _one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_truncated_corrupt_and_foreign_files_are_one_line_user_errors(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "absent.pt")
    good = tmp_path / "good.pt"
    save_checkpoint(good, checkpoint_payload(tiny_model()))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "not a readable checkpoint" in _one_line_error(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    assert "not a readable checkpoint" in _one_line_error(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "not a seqlab checkpoint" in _one_line_error(foreign)
    pickled_module = tmp_path / "module.pt"
    torch.save(tiny_model(), pickled_module)  # a whole pickled module: refused by weights_only
    assert "not a readable checkpoint" in _one_line_error(pickled_module)
    future = tmp_path / "future.pt"
    torch.save({**checkpoint_payload(tiny_model()), "format_version": 99}, future)
    assert "format 99" in _one_line_error(future)


def test_weights_that_do_not_fit_the_config_are_a_user_error():
    payload = checkpoint_payload(tiny_model("lstm"))
    payload["model_config"]["hidden_size"] = 16
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(payload)
    payload = checkpoint_payload(tiny_model("lstm"))
    payload["model_config"]["cell"] = "transformer"
    with pytest.raises(CheckpointError, match="transformer"):
        model_from_checkpoint(payload)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, checkpoint_payload(tiny_model(seed=1)))
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises for a lambda
        save_checkpoint(path, {**checkpoint_payload(tiny_model(seed=2)), "callback": lambda: None})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    save_checkpoint(path, checkpoint_payload(tiny_model(seed=2)))  # and a good save replaces it
    assert path.read_bytes() != before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_checkpoint_loads_on_the_cpu(tmp_path):
    model = tiny_model("lstm", "bi", 2).cuda().eval()
    save_checkpoint(tmp_path / "gpu.pt", checkpoint_payload(model))
    payload = load_checkpoint(tmp_path / "gpu.pt")  # map_location="cpu" by default
    assert all(t.device.type == "cpu" for t in payload["model_state"].values())
    loaded = model_from_checkpoint(payload)
    ids = random_ids()
    for a, b in zip(logit_tensors(model(ids.cuda())[0]), logit_tensors(loaded(ids)[0]), strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)
