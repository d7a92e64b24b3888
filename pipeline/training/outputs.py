"""What a finished (or stopped) run leaves behind: metrics JSON, CSV series for ``dvc plots``, PNG plots, and
the same figures, plots and the model in the tracker.

Layout of a run folder (``models/<dataset>/<variant>/``; dvc.yaml lists the same names)::

    checkpoint.pt    latest training checkpoint (every checkpoint_every_steps and after each validation)
    model.pt         the best model by validation loss (what evaluation and sampling load)
    metrics.json     final figures, numeric only (``dvc metrics show``)
    epochs.csv       one row per validation: epoch, step, train/val loss and perplexity (``dvc plots``)
    grad_norms.csv   one row per logging interval: gradient norm mean/max before and after clipping, clip rate
    loss.png, grad_norms.png   the two plots, also logged to MLflow
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline import files

OUTPUTS = {
    "checkpoint": "checkpoint.pt",
    "model": "model.pt",
    "metrics": "metrics.json",
    "epochs": "epochs.csv",
    "grad_norms": "grad_norms.csv",
    "loss_plot": "loss.png",
    "grad_plot": "grad_norms.png",
}


def output_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / OUTPUTS[name]


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows with the union of their keys as columns (first-seen order); floats rounded to 6 significant digits."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or ["step"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _round(v) for k, v in row.items()})
    files.write_text(path, buffer.getvalue())


def _round(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value


def write_outputs(out_dir: Path, metrics: dict[str, Any], epochs: list[dict], intervals: list[dict],
                  clip_threshold: float | None) -> list[Path]:
    """Write metrics, series and plots; return the files worth logging as artifacts."""
    from pipeline.training.plots import plot_grad_norms, plot_losses

    files.write_json(output_path(out_dir, "metrics"), metrics)
    write_csv(output_path(out_dir, "epochs"), epochs)
    write_csv(output_path(out_dir, "grad_norms"), intervals)
    plot_losses(epochs, intervals, output_path(out_dir, "loss_plot"))
    plot_grad_norms(intervals, output_path(out_dir, "grad_plot"), clip_threshold)
    return [output_path(out_dir, n) for n in ("metrics", "epochs", "grad_norms", "loss_plot", "grad_plot")]


def model_requirements() -> list[str]:
    """Explicit pip requirements of a logged model (MLflow would otherwise infer them by importing things)."""
    import numpy
    import yaml

    torch_version = torch.__version__.split("+")[0]
    return [f"torch=={torch_version}", f"numpy=={numpy.__version__}", f"pyyaml=={yaml.__version__}"]


def model_code_paths() -> list[str]:
    """seqlab's ``pipeline`` package, shipped with a logged model so it unpickles without seqlab installed."""
    import pipeline

    return [str(Path(pipeline.__file__).parent)]
