"""Loss and gradient-norm plots of a training run (the only module of pipeline.training that imports matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.files import atomic_path


def _subplots(*grid: int, figsize: tuple[float, float], **options: Any):
    """A bare Figure and its axes: it draws to files with Agg, touching neither pyplot's state nor the backend.

    Margins are fixed for the two known layouts (wide enough for the log-scale tick labels) rather than
    computed by ``tight_layout``, which draws the figure once more just to measure it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.11, top=0.93, hspace=0.1)
    return fig, fig.subplots(*grid, **options)


def plot_losses(epochs: Sequence[dict[str, Any]], intervals: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Training loss per logging interval and train/validation loss per validation, against steps."""
    fig, ax = _subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in intervals], [r["train_loss"] for r in intervals], lw=1, alpha=0.6,
            label="train (per logging interval)")
    ax.plot([r["step"] for r in epochs], [r["val_loss"] for r in epochs], "o-", label="validation")
    for direction in ("forward", "backward"):
        key = f"val_{direction}_loss"
        if epochs and key in epochs[0]:
            ax.plot([r["step"] for r in epochs], [r[key] for r in epochs], ".--", label=f"validation, {direction}")
    ax.set(xlabel="step", ylabel="loss (nats per token)", title="Loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_grad_norms(intervals: Sequence[dict[str, Any]], path: str | Path, threshold: float | None = None) -> None:
    """Mean and max global gradient norm per logging interval (before clipping), the clip threshold, and clip rate."""
    _save(grad_norms_plot(intervals, threshold), path)


def grad_norms_plot(intervals: Sequence[dict[str, Any]], threshold: float | None = None):
    """The plot :func:`plot_grad_norms` saves, as a matplotlib Figure."""
    fig, (top, bottom) = _subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=[3, 1])
    steps = [r["step"] for r in intervals]
    top.plot(steps, [r["grad_norm_mean"] for r in intervals], label="mean before clipping")
    top.plot(steps, [r["grad_norm_max"] for r in intervals], lw=0.8, alpha=0.7, label="max before clipping")
    top.plot(steps, [r["grad_norm_clipped_mean"] for r in intervals], "--", label="mean after clipping")
    if threshold is not None:
        top.axhline(threshold, color="grey", lw=0.8, ls=":", label=f"threshold {threshold:g}")
    top.set(ylabel="global L2 norm", title="Gradient norm", yscale="log")
    _plain_log_labels(top.yaxis)
    top.grid(alpha=0.3)
    top.legend(fontsize="small")
    bottom.plot(steps, [r["clip_rate"] for r in intervals], color="C3")
    bottom.set(xlabel="step", ylabel="clip rate", ylim=(-0.05, 1.05))
    bottom.grid(alpha=0.3)
    return fig


def _plain_log_labels(axis) -> None:
    """Label a log axis with plain numbers (0.1, 1, 10; and 2, 3, 5 between them when the view spans at most
    one decade) instead of matplotlib's default powers of ten (``3 x 10^0``): those go through its TeX-like
    text parser, whose first use in a process took more than half the time this plot takes to draw
    (BENCHMARKS.md, "Stage start-up")."""
    from matplotlib.ticker import FuncFormatter

    def between(value: float, _position) -> str:
        low, high = sorted(axis.get_view_interval())
        if low <= 0 or high / low > 10 or value <= 0:
            return ""
        return f"{value:g}" if f"{value:.0e}"[0] in "235" else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}" if value > 0 else ""))
    axis.set_minor_formatter(FuncFormatter(between))


def _save(fig, path: str | Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:  # zlib level 1: a little larger, quicker to write
        fig.savefig(tmp, format="png", dpi=100, pil_kwargs={"compress_level": 1})
