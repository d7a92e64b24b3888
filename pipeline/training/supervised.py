"""One small supervised loop for the curriculum's experiments: tagging, classification, conditioned generation.

:func:`pipeline.training.loop.fit` is the language-model loop (streams or records of one id array, validation-driven
schedule, checkpoints, exact resume).  The experiments need less: a fixed number of optimizer steps over batches
the experiment draws, a loss it defines, and an evaluation every ``eval_every_steps`` and after the last step.
The optimizer and the clipping are :mod:`.optim`'s, so a gradient norm logged here means what it means in fit().

Tracked metrics (``step=`` the optimizer step): every step the gradient metrics of :func:`.optim.grad_metrics`;
every ``log_every_steps`` ``train_loss`` (mean over the interval); every evaluation ``val_<name>`` for each
figure the experiment's ``evaluate`` returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.config import CurriculumTraining
from pipeline.models import count_parameters
from pipeline.tracking import NullTracker, Tracker
from pipeline.training.optim import build_optimizer, derived_after, grad_metrics
from pipeline.training.state import TrainingDivergedError
from pipeline.training.step import backward_and_update

LossFn = Callable[[nn.Module, Any], Tensor]
Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass
class SupervisedResult:
    """``history``: one row per evaluation (step, train_loss since the previous one, grad norms, the figures)."""

    metrics: dict[str, float]  # the last evaluation's figures, plus steps, seconds and parameters
    history: list[dict[str, float]] = field(default_factory=list)


def train_supervised(model: nn.Module, draw_batch: Callable[[int], Sequence[Any]], loss_fn: LossFn,
                     settings: CurriculumTraining, *, evaluate: Evaluate | None = None, tracker: Tracker | None = None,
                     device: str | torch.device = "cpu") -> SupervisedResult:
    """Train ``model`` for ``settings.steps`` steps; ``draw_batch(step)`` gives a tuple of tensors (moved to
    ``device`` here) and ``loss_fn(model, batch)`` the mean loss to minimise.  ``evaluate(model)`` runs in eval
    mode under ``torch.no_grad`` and returns figures (higher or lower is the experiment's business).
    Raises :class:`TrainingDivergedError` on a NaN/Inf loss or gradient, before the update."""
    tracker = tracker or NullTracker()
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, settings)
    history: list[dict[str, float]] = []
    losses: list[float] = []
    norms: list[tuple[float, float]] = []
    started, seconds = time.perf_counter(), 0.0
    for step in range(1, settings.steps + 1):
        batch = tuple(t.to(device) if isinstance(t, Tensor) else t for t in draw_batch(step))
        loss = loss_fn(model, batch)
        update = backward_and_update(optimizer, loss, params, clip=settings.clip, clip_threshold=settings.clip_threshold,
                                     check_finite=True)
        if not update.updated:
            raise TrainingDivergedError(f"training diverged at step {step}: the loss or the gradient norm is NaN/Inf "
                                        "(lower the experiment's train.lr or set train.clip: norm)")
        clip, before, value = update.clip, float(update.clip.before), float(loss.detach())
        after, fired = (float(clip.after), float(clip.fired)) if clip.after is not None else \
            derived_after(before, settings.clip, settings.clip_threshold)
        losses.append(value)
        norms.append((before, after))
        tracker.log_metrics(grad_metrics(before, after, fired), step=step)
        if step % settings.log_every_steps == 0:
            tracker.log_metrics({"train_loss": _mean(losses[-settings.log_every_steps:])}, step=step)
        if step % settings.eval_every_steps == 0 or step == settings.steps:
            seconds += time.perf_counter() - started
            history.append(_evaluation_row(model, step, losses, norms, evaluate, tracker))
            losses, norms, started = [], [], time.perf_counter()
    tracker.flush()
    metrics = {k: v for k, v in history[-1].items() if k not in ("step", "train_loss", "grad_norm_mean")}
    metrics.update(steps=settings.steps, train_seconds=round(seconds, 3), parameters=count_parameters(model),
                   train_loss=history[-1]["train_loss"])
    return SupervisedResult(metrics, history)


def _evaluation_row(model: nn.Module, step: int, losses: list[float], norms: list[tuple[float, float]],
                    evaluate: Evaluate | None, tracker: Tracker) -> dict[str, float]:
    row = {"step": step, "train_loss": _mean(losses), "grad_norm_mean": _mean([b for b, _ in norms])}
    if evaluate is not None:
        model.eval()
        try:
            with torch.no_grad():
                figures = evaluate(model)
        finally:
            model.train()
        row.update(figures)
        tracker.log_metrics({f"val_{k}": v for k, v in figures.items()}, step=step)
    return row


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
