"""Where a training run is (:class:`LoopState`, saved in every checkpoint), what it ends with (:class:`FitResult`
or :class:`TrainingDivergedError`), and which stop rule a run in a given state has already met
(:func:`stop_rule_met`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config import TrainSettings
from pipeline.errors import UserError


@dataclasses.dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint (plain values only)."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches already taken in ``epoch``
    best_val_loss: float = math.inf
    best_step: int = -1
    bad_validations: int = 0
    last_val_step: int = -1
    threads: int = 0
    run_id: str | None = None
    train_seconds: float = 0.0
    tracking_seconds: float = 0.0  # time inside tracker calls during the loop (metrics, sample artifacts)
    tokens: int = 0  # predicted tokens trained on
    sums: list[float] = dataclasses.field(default_factory=list)  # train loss since the last validation
    counts: list[int] = dataclasses.field(default_factory=list)
    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    intervals: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FitResult:
    metrics: dict[str, Any]
    stop_reason: str  # completed | early_stopping | max_steps | time_budget
    out_dir: Path
    run_id: str | None


class TrainingDivergedError(UserError, FloatingPointError):
    """The loss or a gradient became NaN/Inf; the message names the step and the checkpoint kept."""

    @classmethod
    def at_step(cls, step: int, checkpoint: Path) -> TrainingDivergedError:
        """The error of a run that diverged at ``step``, whose last good checkpoint (if any) is ``checkpoint``."""
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.exists() else "no checkpoint was written yet"
        return cls(f"training diverged at step {step}: the loss or the gradient norm is NaN/Inf; {kept} "
                   f"(lower train.lr or clip gradients: train.clip: norm)")


def stop_rule_met(loop: Mapping[str, Any], s: TrainSettings) -> str | None:
    """The stop rule a run in state ``loop`` (``vars(LoopState)``, or a checkpoint's ``loop``) has met, if any,
    named as the loop names it, in the loop's order of precedence."""
    if s.early_stopping_patience and loop["bad_validations"] >= s.early_stopping_patience:
        return "early_stopping"
    if s.max_steps and loop["step"] >= s.max_steps:
        return "max_steps"
    if s.time_budget_s and loop["train_seconds"] >= s.time_budget_s:
        return "time_budget"
    return "completed" if loop["epoch"] >= s.epochs else None
