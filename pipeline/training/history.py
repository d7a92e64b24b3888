"""The run's records, kept in its :class:`~.state.LoopState` (so a resumed run continues them): one row per
logging interval (``grad_norms.csv``), one per validation (``epochs.csv``), and the final metrics
(``metrics.json``).  The loop calls these; the reporter only receives the rows they return."""

from __future__ import annotations

import math
from typing import Any

from pipeline.figures import summarize
from pipeline.training.meter import Interval, finite_mean, perplexity
from pipeline.training.state import LoopState


def record_interval(loop: LoopState, interval: Interval, seconds: float, epochs_done: float,
                    lr: float) -> dict[str, Any]:
    """Add a logging interval of ``seconds`` of training to ``loop``; return its ``grad_norms.csv`` row."""
    loop.train_seconds += seconds
    loop.tokens += interval.counts[0]
    loop.sums = [a + b for a, b in zip(loop.sums, interval.loss_sums, strict=True)]
    loop.counts = [a + b for a, b in zip(loop.counts, interval.counts, strict=True)]
    row = {"step": interval.steps[-1], "epoch": epochs_done, "train_loss": interval.loss,
           "grad_norm_mean": finite_mean(interval.grad_norm), "grad_norm_max": max(interval.grad_norm),
           "grad_norm_clipped_mean": finite_mean(interval.grad_norm_clipped),
           "clip_rate": sum(interval.clipped) / len(interval.clipped), "lr": lr,
           "tokens_per_s": interval.counts[0] / seconds}
    loop.intervals.append(row)
    return row


def record_validation(loop: LoopState, figures: dict[str, float], directions: tuple[str, ...], epochs_done: float,
                      lr: float, char_level: bool) -> tuple[dict[str, Any], bool]:
    """Add a validation's ``figures`` to ``loop`` (the best loss so far, the validations since it) and start the
    next train-loss average.  Returns its ``epochs.csv`` row (``val_*``: the figures, plus ``val_bpc`` for
    character-level data) and whether it improved on the best."""
    improved = figures["loss"] < loop.best_val_loss
    if improved:
        loop.best_val_loss, loop.best_step, loop.bad_validations = figures["loss"], loop.step, 0
    else:
        loop.bad_validations += 1
    loop.last_val_step = loop.step
    val = {f"val_{k}": v for k, v in figures.items() if k != "tokens"}
    if char_level:
        val["val_bpc"] = figures["bits_per_token"]
    train = summarize(loop.sums, loop.counts, directions) if loop.counts[0] else {"loss": math.nan}
    row = {"epoch": epochs_done, "step": loop.step, "train_loss": train["loss"],
           "train_perplexity": perplexity(train["loss"]), **val, "lr": lr,
           "train_seconds": round(loop.train_seconds, 3)}
    loop.epochs.append(row)
    loop.sums, loop.counts = [0.0] * len(loop.sums), [0] * len(loop.counts)
    return row, improved


def final_metrics(loop: LoopState, stop: str, epochs_done: float, parameters: int) -> dict[str, Any]:
    """``metrics.json``: the best validation's figures and the run's totals."""
    best = next((r for r in loop.epochs if r["step"] == loop.best_step), loop.epochs[-1] if loop.epochs else {})
    metrics = {k: v for k, v in best.items() if k.startswith("val_")}
    last = loop.intervals[-1] if loop.intervals else {}
    metrics.update(
        best_step=loop.best_step, best_epoch=best.get("epoch", 0.0), steps=loop.step,
        epochs=epochs_done, early_stopped=int(stop == "early_stopping"),
        train_loss=loop.epochs[-1]["train_loss"] if loop.epochs else math.nan,
        grad_norm_final=last.get("grad_norm_mean", math.nan),
        clip_rate=clip_share(loop.intervals),
        parameters=parameters, threads=loop.threads,
        train_seconds=round(loop.train_seconds, 3),
        tokens_per_s=round(loop.tokens / loop.train_seconds, 1) if loop.train_seconds else 0.0,
        tracking_seconds=round(loop.tracking_seconds, 3),
        tracking_share=round(loop.tracking_seconds / loop.train_seconds, 5) if loop.train_seconds else 0.0,
    )
    return metrics


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
