"""build_optimizer: torch's Adam, AdamW and SGD without the ``torch.compile`` marks on their methods.

What must hold: the same updates bit for bit as torch's own class, the same ``state_dict`` both ways, step hooks
and learning-rate schedulers still see every step, and a training process never imports ``torch._dynamo``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import pytest
import torch

from pipeline.training.optim import _MARKED, _unmarked, build_optimizer, clip_gradients
from tests.conftest import REPO_ROOT
from tests.train_helpers import tiny_settings

SETTINGS = tiny_settings(lr=0.01, weight_decay=0.01, momentum=0.9)
TORCH_CLASSES = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.LSTM(4, 8)


def _torchs_own(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    extra = {"momentum": SETTINGS.momentum} if kind == "sgd" else {}
    return TORCH_CLASSES[kind](model.parameters(), lr=SETTINGS.lr, weight_decay=SETTINGS.weight_decay,
                               foreach=True, **extra)


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
    inputs = torch.Generator().manual_seed(1)
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        model(torch.randn(5, 2, 4, generator=inputs))[0].square().sum().backward()
        clip_gradients(list(model.parameters()), "norm", 1.0)
        optimizer.step()


def _same_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for key, state in a["state"].items():
        assert state.keys() == b["state"][key].keys()
        for name, value in state.items():
            assert torch.equal(value, b["state"][key][name]), (key, name)


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_the_updates_and_the_state_dict_are_torchs_bit_for_bit(kind):
    ours_model, torch_model = _model(), _model()
    ours = build_optimizer(ours_model, dataclasses.replace(SETTINGS, optimizer=kind))
    theirs = _torchs_own(kind, torch_model)
    assert isinstance(ours, TORCH_CLASSES[kind]) and type(ours).__name__ == TORCH_CLASSES[kind].__name__
    _steps(ours_model, ours, 4)
    _steps(torch_model, theirs, 4)
    for mine, reference in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(mine, reference)
    _same_state(ours.state_dict(), theirs.state_dict())

    # A checkpoint written by either loads into the other and continues the same way.
    resumed_model, torch_resumed_model = _model(), _model()
    resumed_model.load_state_dict(ours_model.state_dict())
    torch_resumed_model.load_state_dict(torch_model.state_dict())
    resumed = build_optimizer(resumed_model, dataclasses.replace(SETTINGS, optimizer=kind))
    resumed.load_state_dict(theirs.state_dict())
    torch_resumed = _torchs_own(kind, torch_resumed_model)
    torch_resumed.load_state_dict(ours.state_dict())
    _steps(resumed_model, resumed, 2)
    _steps(torch_resumed_model, torch_resumed, 2)
    for mine, reference in zip(resumed_model.parameters(), torch_resumed_model.parameters(), strict=True):
        assert torch.equal(mine, reference)


def test_step_hooks_and_schedulers_still_see_every_step():
    model = _model()
    optimizer = build_optimizer(model, dataclasses.replace(SETTINGS, optimizer="adam"))
    seen = []
    optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append(opt))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" if the step went unseen
        for _ in range(3):
            _steps(model, optimizer, 1)
            scheduler.step()
    assert seen == [optimizer] * 3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(SETTINGS.lr / 8)


def test_the_step_runs_without_grad_whatever_the_callers_grad_mode():
    model = _model()
    optimizer = build_optimizer(model, dataclasses.replace(SETTINGS, optimizer="sgd"))
    with torch.enable_grad():
        model(torch.zeros(1, 1, 4))[0].sum().backward()
        optimizer.step()  # an in-place update of a leaf under grad mode would raise
        assert torch.is_grad_enabled()  # restored afterwards
    assert all(p.grad_fn is None for p in model.parameters())


def test_a_class_whose_methods_torch_did_not_mark_is_used_as_it_is():
    # As under a torch release without the marks: plain methods, nothing to take off.
    plain = {name: lambda self, *args, **kwargs: None
             for name in (*_MARKED, "step")}
    unmarked_release = type("SGD", (torch.optim.SGD,), plain)
    assert _unmarked(unmarked_release) is unmarked_release
    assert _unmarked(torch.optim.SGD) is not torch.optim.SGD


def test_a_training_process_never_imports_torch_dynamo():
    script = """
import sys, torch
from pipeline.config import TrainSettings
from pipeline.training.optim import build_optimizer, build_scheduler
model = torch.nn.GRU(3, 5)
for kind in ("adam", "adamw", "sgd"):
    settings = TrainSettings(optimizer=kind, lr=0.1, momentum=0.9, schedule="plateau")
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.ones(2, 1, 3))[0].sum().backward()
        optimizer.step()
        scheduler.step(1.0)
    optimizer.load_state_dict(optimizer.state_dict())
print("torch._dynamo" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
