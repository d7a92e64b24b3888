"""The report's pictures (the only matplotlib user in pipeline.evaluation): one panel per dataset.

Every function writes a PNG atomically and returns its path (:func:`pipeline.evaluation.report_files.write_report`
draws them; dvc.yaml lists them as DVC plots and the report's MLflow run keeps them).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # a bare Figure draws to files with Agg: no pyplot state, no backend choice

from pipeline import files
from pipeline.evaluation.music_report import DISTANCES, FLOOR, HEADERS, REFERENCE


def _panels(n: int, width: float = 5.0, height: float = 3.6):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)


def plot_perplexity(table: pd.DataFrame, path: Path) -> Path:
    """Test perplexity per variant (lower is better); the n-gram baseline as a dashed line."""
    datasets = sorted(table["dataset"].unique())
    fig, axes = _panels(max(len(datasets), 1))
    for ax, dataset in zip(axes, datasets, strict=False):
        rows = table[(table["dataset"] == dataset) & table["test_perplexity"].notna()]
        models = rows[rows["variant"] != "ngram"]
        ax.barh(models["variant"], models["test_perplexity"].astype(float), color="tab:blue")
        for _, r in rows[rows["variant"] == "ngram"].iterrows():
            ax.axvline(float(r["test_perplexity"]), color="tab:red", linestyle="--", label=f"{r['cell']}")
        ax.set_title(dataset)
        ax.set_xlabel("test perplexity (lower is better)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_series(series: dict[str, list[tuple[str, Path]]], path: Path, *, x: str, y: str, ylabel: str,
                logy: bool = False) -> Path:
    """One line per variant of its CSV's ``y`` against ``x`` (e.g. validation loss per epoch), one panel per
    dataset; ``series``: per dataset, (variant, CSV file) in legend order; a missing file or column draws nothing."""
    fig, axes = _panels(max(len(series), 1))
    for ax, (dataset, curves) in zip(axes, sorted(series.items()), strict=False):
        for variant, csv in curves:
            if csv.exists():
                frame = pd.read_csv(csv)
                if x in frame and y in frame:
                    ax.plot(frame[x], frame[y], marker="." if len(frame) < 40 else None, label=variant)
        ax.set_title(dataset)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_music(music: pd.DataFrame, path: Path) -> Path:
    """Per MIDI dataset, each sample set's distance to the test split on the four histograms (lower is closer);
    the val split's own distance, real music against real music, in grey: the floor."""
    datasets = sorted(music["dataset"].unique()) if not music.empty else []
    fig, axes = _panels(max(len(datasets), 1), width=6.0)
    if not datasets:
        axes[0].text(0.5, 0.5, "no music datasets", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, dataset in zip(axes, datasets, strict=False):
        rows = music[(music["dataset"] == dataset) & (music["variant"] != REFERENCE)]
        width = 0.8 / max(len(rows), 1)
        for i, (_, row) in enumerate(rows.iterrows()):
            values = [float(row[c]) if row[c] is not None and not pd.isna(row[c]) else 0.0 for c in DISTANCES]
            floor = row["variant"] == FLOOR
            ax.bar([x + i * width for x in range(len(DISTANCES))], values, width, label=row["variant"],
                   color="0.6" if floor else None, hatch="//" if floor else None)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(DISTANCES))], [HEADERS[c] for c in DISTANCES])
        ax.set_ylabel("Jensen-Shannon divergence to the test split (bits)")
        ax.set_title(dataset)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)
