"""Optimizer, learning-rate schedule and gradient clipping, built from the settings.

The optimizers are torch's own (:class:`torch.optim.Adam`, ``AdamW``, ``SGD``), built from
:class:`~pipeline.config.OptimizerSettings`, which the language-model runs and the curriculum's experiments share.

Clipping reports, for every step, the global gradient norm before and after clipping and whether it fired,
as 0-d tensors on the model's device: the loop stores them and reads them back only at its logging
interval, so no step waits for the device.  :func:`grad_metrics` names those three figures for the tracker,
for :func:`pipeline.training.loop.fit` and the supervised loop alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pipeline.config import OptimizerSettings, TrainSettings


class ClipStats(NamedTuple):
    """Device scalars; ``after``/``fired`` are None where the host derives them from ``before`` (norm, none)."""

    before: Tensor  # () global L2 norm of all gradients before clipping
    after: Tensor | None = None  # () the same after clipping
    fired: Tensor | None = None  # () 1.0 if clipping changed any gradient, else 0.0


def derived_after(before: float, mode: str, threshold: float) -> tuple[float, float]:
    """(norm after clipping, fired) for ``norm`` and ``none`` clipping, from the norm before (as clipping did)."""
    if mode == "norm":
        coef = min(threshold / (before + 1e-6), 1.0)
        return before * coef, float(before > threshold)
    return before, 0.0


def grad_metrics(before: float, after: float, fired: float) -> dict[str, float]:
    """One step's gradient metrics as tracked (``step=`` the optimizer step): ``grad_norm`` (global L2 norm
    before clipping), ``grad_norm_clipped`` (after) and ``clipped`` (1.0 if clipping fired, else 0.0)."""
    return {"grad_norm": before, "grad_norm_clipped": after, "clipped": fired}


_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def build_optimizer(model: nn.Module, s: OptimizerSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # foreach kernels: one launch per parameter group instead of one per tensor (what pytorch picks by
    # default on CUDA; on CPU it is as fast or faster and keeps CPU/GPU runs on the same code path).
    if s.optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer {s.optimizer!r} is not valid (choose adam, adamw or sgd)")
    cls = _OPTIMIZERS[s.optimizer]
    if s.optimizer == "sgd":
        return cls(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, foreach=True)
    return cls(params, lr=s.lr, weight_decay=s.weight_decay, foreach=True)


class StepSchedule:
    """Linear warm-up over ``warmup_steps``, then constant (``none``) or cosine decay to ``min_lr`` (``cosine``).

    The decay follows how far the run is, ``fraction_done`` in [0, 1], which the loop passes to :meth:`step`:
    optimizer steps over the planned total, or, under a time budget (``train.time_budget_s``), whichever of
    that and the training time spent over the budget is further along, so that the rate reaches ``min_lr``
    when the time runs out however fast the machine is.  It keeps no state of its own: the loop's step count and
    training seconds (both in every checkpoint) determine it, so a resumed run continues the same curve.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, lr: float, min_lr: float,
                 warmup_steps: int) -> None:
        self.optimizer, self.kind, self.lr, self.min_lr, self.warmup_steps = optimizer, kind, lr, min_lr, warmup_steps
        self.set(self.lr_at(0, 0.0))

    def lr_at(self, step: int, fraction_done: float) -> float:
        """The rate for optimizer step ``step + 1`` with ``fraction_done`` (0..1) of the run done."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind != "cosine":
            return self.lr * warm
        decay = 0.5 * (1.0 + math.cos(math.pi * min(max(fraction_done, 0.0), 1.0)))
        return (self.min_lr + (self.lr - self.min_lr) * decay) * warm

    def step(self, step: int, fraction_done: float) -> None:
        self.set(self.lr_at(step, fraction_done))

    def set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see the class docstring); accepts older checkpoints' scheduler states."""


def build_scheduler(optimizer: torch.optim.Optimizer, s: TrainSettings):
    """``plateau`` steps on the validation loss; ``none`` and ``cosine`` (with warm-up) on every optimizer step."""
    if s.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=s.plateau_factor, patience=s.plateau_patience, min_lr=s.min_lr)
    return StepSchedule(optimizer, s.schedule, s.lr, s.min_lr, s.warmup_steps)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _grads(params: Iterable[nn.Parameter]) -> list[Tensor]:
    return [p.grad for p in params if p.grad is not None]


def clip_gradients(params: list[nn.Parameter], mode: str, threshold: float) -> ClipStats:
    """Clip in place (``norm``: rescale to at most ``threshold``; ``value``: clamp each entry) and report."""
    grads = _grads(params)
    before = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)  # ()
    if mode == "norm":
        coef = (threshold / (before + 1e-6)).clamp(max=1.0)  # what clip_grad_norm_ computes
        torch._foreach_mul_(grads, coef)
        return ClipStats(before)  # after and fired follow from before: no extra kernels per step
    if mode == "value":
        peak = torch.stack(torch._foreach_norm(grads, float("inf"))).max()  # largest |g|
        torch._foreach_clamp_min_(grads, -threshold)
        torch._foreach_clamp_max_(grads, threshold)
        after = torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True)
        return ClipStats(before, after, (peak > threshold).float())
    if mode == "none":
        return ClipStats(before)
    raise ValueError(f"clip {mode!r} is not valid (choose norm, value or none)")


def layer_grad_norms(model: nn.Module) -> tuple[list[str], Tensor]:
    """Per-parameter gradient L2 norms: (names, (P,) tensor); read back by the caller at logging time."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return [], torch.zeros(0)
    norms = torch.stack(torch._foreach_norm([g for _, g in named]))  # (P,)
    return [name for name, _ in named], norms
