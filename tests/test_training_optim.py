"""build_optimizer: torch's own Adam, AdamW and SGD, built from the settings both training loops share.

What must hold: torch's classes themselves, given the settings' rate, weight decay and momentum (the same
updates bit for bit as a class built by hand, the same ``state_dict`` both ways), step hooks and learning-rate
schedulers see every step, and a curriculum experiment's settings build the same optimizer as a train run's.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from pipeline.config import CurriculumTraining
from pipeline.training.optim import build_optimizer, clip_gradients
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
    assert type(ours) is TORCH_CLASSES[kind]
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


def test_an_experiment_and_a_train_run_with_the_same_optimizer_settings_build_the_same_optimizer():
    experiment = CurriculumTraining(optimizer="sgd", lr=SETTINGS.lr, weight_decay=SETTINGS.weight_decay,
                                    momentum=SETTINGS.momentum)
    run = dataclasses.replace(SETTINGS, optimizer="sgd")
    built = [build_optimizer(_model(), settings) for settings in (experiment, run)]
    assert built[0].defaults == built[1].defaults
    assert built[0].defaults["momentum"] == 0.9 and built[0].defaults["foreach"] is True


def test_an_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="'rmsprop' is not valid"):
        build_optimizer(_model(), dataclasses.replace(SETTINGS, optimizer="rmsprop"))
