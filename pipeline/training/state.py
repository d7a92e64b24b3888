"""Where a training run is and what it has recorded (:class:`LoopState`, saved in every checkpoint), what it
ends with (:class:`FitResult` or :class:`TrainingDivergedError`), which stop rule a run in a given state has
already met (:func:`stop_rule_met`), and the clock that measures its training time (:class:`TrainingTimer`).

The run's records live in its :class:`LoopState`, so a resumed run continues them: one row per logging
interval (``grad_norms.csv``), one per validation (``epochs.csv``), and the final metrics (``metrics.json``).
The loop calls :meth:`LoopState.record_interval` and :meth:`LoopState.record_validation`; the reporter only
receives the rows they return.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import TrainSettings
from pipeline.errors import UserError
from pipeline.figures import perplexity, summarize

if TYPE_CHECKING:  # the supervised loop imports this module without the language-model loop's meter
    from pipeline.training.meter import Interval

Clock = Callable[[], float]  # seconds from an arbitrary origin, never decreasing


@dataclasses.dataclass
class LoopState:
    """Where the loop is and what it has recorded; saved in every checkpoint (plain values only)."""

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

    def record_interval(self, interval: Interval, seconds: float, epochs_done: float, lr: float) -> dict[str, Any]:
        """Add a logging interval of ``seconds`` of training; return its ``grad_norms.csv`` row."""
        self.train_seconds += seconds
        self.tokens += interval.counts[0]
        self.sums = [a + b for a, b in zip(self.sums, interval.loss_sums, strict=True)]
        self.counts = [a + b for a, b in zip(self.counts, interval.counts, strict=True)]
        row = {"step": interval.steps[-1], "epoch": epochs_done, "train_loss": interval.loss,
               "grad_norm_mean": finite_mean(interval.grad_norm), "grad_norm_max": max(interval.grad_norm),
               "grad_norm_clipped_mean": finite_mean(interval.grad_norm_clipped),
               "clip_rate": sum(interval.clipped) / len(interval.clipped), "lr": lr,
               "tokens_per_s": interval.counts[0] / seconds}
        self.intervals.append(row)
        return row

    def record_validation(self, figures: dict[str, float], directions: tuple[str, ...], epochs_done: float,
                          lr: float, char_level: bool) -> tuple[dict[str, Any], bool]:
        """Add a validation's ``figures`` (the best loss so far, the validations since it) and start the next
        train-loss average.  Returns its ``epochs.csv`` row (``val_*``: the figures, plus ``val_bpc`` for
        character-level data) and whether it improved on the best."""
        improved = figures["loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step, self.bad_validations = figures["loss"], self.step, 0
        else:
            self.bad_validations += 1
        self.last_val_step = self.step
        val = {f"val_{k}": v for k, v in figures.items() if k != "tokens"}
        if char_level:
            val["val_bpc"] = figures["bits_per_token"]
        train = summarize(self.sums, self.counts, directions) if self.counts[0] else {"loss": math.nan}
        row = {"epoch": epochs_done, "step": self.step, "train_loss": train["loss"],
               "train_perplexity": perplexity(train["loss"]), **val, "lr": lr,
               "train_seconds": round(self.train_seconds, 3)}
        self.epochs.append(row)
        self.sums, self.counts = [0.0] * len(self.sums), [0] * len(self.counts)
        return row, improved

    def final_metrics(self, stop: str, epochs_done: float, parameters: int) -> dict[str, Any]:
        """``metrics.json``: the best validation's figures and the run's totals."""
        best = next((r for r in self.epochs if r["step"] == self.best_step), self.epochs[-1] if self.epochs else {})
        metrics = {k: v for k, v in best.items() if k.startswith("val_")}
        last = self.intervals[-1] if self.intervals else {}
        seconds = self.train_seconds
        metrics.update(
            best_step=self.best_step, best_epoch=best.get("epoch", 0.0), steps=self.step,
            epochs=epochs_done, early_stopped=int(stop == "early_stopping"),
            train_loss=self.epochs[-1]["train_loss"] if self.epochs else math.nan,
            grad_norm_final=last.get("grad_norm_mean", math.nan),
            clip_rate=clip_share(self.intervals),
            parameters=parameters, threads=self.threads,
            train_seconds=round(seconds, 3),
            tokens_per_s=round(self.tokens / seconds, 1) if seconds else 0.0,
            tracking_seconds=round(self.tracking_seconds, 3),
            tracking_share=round(self.tracking_seconds / seconds, 5) if seconds else 0.0,
        )
        return metrics


def finite_mean(values: list[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def clip_share(intervals: list[dict[str, Any]]) -> float:
    """Share of the optimizer steps where clipping fired: each interval's rate weighted by its number of steps
    (an epoch's last interval is shorter than ``log_every_steps``; an unweighted mean over-counts it).  The
    steps of an interval run from the previous interval's last step; NaN when there is no interval."""
    steps = clipped = 0.0
    previous = 0
    for row in intervals:
        n, previous = row["step"] - previous, row["step"]
        if n > 0 and math.isfinite(row["clip_rate"]):
            steps, clipped = steps + n, clipped + n * row["clip_rate"]
    return clipped / steps if steps else math.nan


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
                   f"(lower lr or clip gradients with clip: norm, in train.defaults or the run's overrides)")


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


class TrainingTimer:
    """Seconds of training since the last :meth:`restart` or :meth:`lap`: the clock behind ``train_seconds``,
    the time budget and tokens/s.

    Only training counts: the loop restarts the timer after each validation and checkpoint, and takes a lap at
    each logging interval.  The time source is injected (``time.perf_counter`` by default), so a test can drive
    a run's time budget with a clock of its own and know the exact step it stops at.
    """

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self._since = clock()

    def restart(self) -> None:
        """Start timing training work again (after work that is not training: validation, checkpoints)."""
        self._since = self.clock()

    def running(self) -> float:
        """Seconds since the last restart or lap."""
        return self.clock() - self._since

    def lap(self) -> float:
        """Seconds since the last restart or lap (at least 1 ns: a rate divides by it); starts the next lap."""
        now = self.clock()
        seconds, self._since = max(now - self._since, 1e-9), now
        return seconds
