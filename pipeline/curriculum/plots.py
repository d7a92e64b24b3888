"""The curriculum's plots (the only module of pipeline.curriculum that imports matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.files import atomic_path

CELL_COLORS = {"rnn": "C3", "gru": "C2", "lstm": "C0", "lstm_peephole": "C9", "gru_minimal": "C8"}


def _subplots(*grid: int, figsize: tuple[float, float], **options: Any):
    """A bare Figure and its axes: it draws to files with Agg, touching neither pyplot's state nor the backend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **options)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def plot_gradient_distance(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """||dL<T>/dx<t>|| against T - t (log scale): one colour per cell, solid trained, dashed fresh."""
    fig, ax = _subplots(figsize=(7.5, 4.5))
    for (variant, state) in dict.fromkeys((r["variant"], r["state"]) for r in rows):
        series = [r for r in rows if r["variant"] == variant and r["state"] == state]
        ax.plot([r["distance"] for r in series], [max(r["grad_norm"], 1e-30) for r in series],
                color=CELL_COLORS.get(series[0]["cell"], "k"), ls="-" if state == "trained" else "--",
                label=f"{variant} ({state})")
    ax.set(yscale="log", xlabel="distance T - t (steps back from the predicted token)",
           ylabel="mean ||dL<T> / de<t>||", title="How far back the last step's gradient reaches")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def plot_clipping(rows: Sequence[dict[str, Any]], threshold: float, path: str | Path) -> Path:
    """Left: cumulative distributions of the per-interval gradient norm of each run and series; right: the same
    norms against training steps.  The legend gives each run's share of steps where clipping fired."""
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4.2))
    keys = list(dict.fromkeys((r["run"], r["clip"], r["series"]) for r in rows))
    for i, key in enumerate(keys):
        selected = [r for r in rows if (r["run"], r["clip"], r["series"]) == key]
        values = np.sort([r["grad_norm"] for r in selected])
        fired = sum(r["clip_rate"] * r["interval_steps"] for r in selected) / sum(r["interval_steps"] for r in selected)
        style = dict(color=f"C{i}", ls="--" if key[2].startswith("max") else "-", lw=1.5)
        label = f"{key[0]}: {key[2]}" + (f" (clipped {fired:.0%} of steps)" if key[1] == "clipped" else " (never clipped)")
        left.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label, **style)
        right.plot([r["step"] for r in selected], [r["grad_norm"] for r in selected], **style)
    left.axvline(threshold, color="grey", ls=":", lw=1)
    right.axhline(threshold, color="grey", ls=":", lw=1)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.set(xlabel="global gradient norm (mean or max over a logging interval)",
             ylabel="share of intervals <= x", title=f"Distribution (clip threshold {threshold:g} dotted)")
    right.set(xlabel="step", ylabel="global gradient norm", title="During training")
    left.legend(fontsize="x-small", loc="lower right")
    return _save(fig, path)


def plot_agreement(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Test accuracy at distance d of a model trained on distances in [1, d], per cell."""
    fig, ax = _subplots(figsize=(7, 4.2))
    for cell in dict.fromkeys(r["cell"] for r in rows):
        series = [r for r in rows if r["cell"] == cell]
        ax.plot([r["distance"] for r in series], [r["accuracy"] for r in series], "o-", label=cell,
                color=CELL_COLORS.get(cell))
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
    ax.set(xscale="log", xlabel="distance d between the subject and the verb", ylabel="test accuracy at d",
           ylim=(0.4, 1.03), title="Number agreement: trained on [1, d], tested at d")
    from matplotlib.ticker import NullFormatter

    distances = sorted({r["distance"] for r in rows})
    ax.set_xticks(distances, [str(d) for d in distances])
    ax.xaxis.set_minor_formatter(NullFormatter())  # no "6 x 10^0" labels between the distances
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_tagging(history: Sequence[dict[str, Any]], metrics: dict[str, dict[str, float]], path: str | Path) -> Path:
    """Validation F1 against steps for each direction, and the test F1 / tag perplexity."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 4), width_ratios=[3, 2])
    for i, direction in enumerate(metrics):
        series = [r for r in history if r["direction"] == direction]
        left.plot([r["step"] for r in series], [r["f1"] for r in series], "o-", color=f"C{i}", label=direction)
    left.set(xlabel="step", ylabel="validation F1 (word starts)", title="Restoring spaces: same steps and batches")
    left.grid(alpha=0.3)
    left.legend()
    names = list(metrics)
    f1 = [metrics[d]["test_f1"] for d in names]
    ppl = [metrics[d]["test_tag_perplexity"] for d in names]
    x = np.arange(len(names))
    right.bar(x - 0.2, f1, 0.4, label="test F1", color="C0")
    right.bar(x + 0.2, ppl, 0.4, label="tag perplexity", color="C1")
    for xi, (a, b) in enumerate(zip(f1, ppl, strict=True)):
        right.text(xi - 0.2, a, f"{a:.3f}", ha="center", va="bottom", fontsize="small")
        right.text(xi + 0.2, b, f"{b:.3f}", ha="center", va="bottom", fontsize="small")
    right.set_xticks(x, names)
    right.set(ylim=(0, 2.1), title="Test split")
    right.legend(fontsize="small", loc="upper left")
    return _save(fig, path)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: true class) with the counts written in."""
    fig, ax = _subplots(figsize=(5.5, 4.8))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="small",
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_piano_rolls(rolls: dict[str, list[tuple[int, int, int]]], path: str | Path, title: str) -> Path:
    """One panel per style: notes (start, end, pitch) in grid steps as horizontal bars."""
    from matplotlib.collections import PolyCollection

    fig, axes = _subplots(len(rolls), 1, figsize=(10, 2.4 * len(rolls)), squeeze=False)
    for ax, (name, notes) in zip(axes[:, 0], rolls.items(), strict=True):
        if notes:  # the rectangles ax.broken_barh draws, in the same order, as one collection (not one per note)
            boxes = [[(start, pitch - 0.4), (start, pitch - 0.4 + 0.8), (end, pitch - 0.4 + 0.8), (end, pitch - 0.4)]
                     for start, end, pitch in notes]
            ax.add_collection(PolyCollection(np.array(boxes, dtype=float), color="C0"))
        ax.set(ylabel="MIDI pitch", title=f"{title}: {name}")
        ax.grid(alpha=0.3)
        if notes:
            ax.set_ylim(min(n[2] for n in notes) - 2, max(n[2] for n in notes) + 2)
            ax.set_xlim(0, max(n[1] for n in notes))
    axes[-1, 0].set_xlabel("time (grid steps, 4 per quarter note)")
    return _save(fig, path)


def plot_depth(curves: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Validation loss against optimizer steps (the shared budget) and against (estimated) training seconds."""
    fig, (left, right) = _subplots(1, 2, figsize=(10, 4), sharey=True)
    for layers in dict.fromkeys(r["layers"] for r in curves):
        series = [r for r in curves if r["layers"] == layers]
        label = f"{layers} layer{'s' if layers > 1 else ''}"
        left.plot([r["step"] for r in series], [r["val_loss"] for r in series], "o-", label=label)
        right.plot([r["seconds"] for r in series], [r["val_loss"] for r in series], "o-", label=label)
    left.set(xlabel="optimizer step", ylabel="validation loss (nats per token)", title="Same steps")
    right.set(xlabel="training seconds (per-step mean x steps)", title="Against wall-clock")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)
