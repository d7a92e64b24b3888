"""What a finished (or stopped) run leaves behind: metrics JSON, CSV series for ``dvc plots``, PNG plots and the
best model in its :class:`~pipeline.run_folder.RunFolder`, and the same figures, plots and model in the tracker.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline import files
from pipeline.run_folder import RunFolder


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


def write_outputs(folder: RunFolder, metrics: dict[str, Any], epochs: list[dict], intervals: list[dict],
                  clip_threshold: float | None, best_model: Path) -> list[Path]:
    """Write the best model (a copy of ``best_model``, unless it is the folder's own), metrics, series and plots,
    each replacing its earlier version whole; return the files worth logging as artifacts."""
    from pipeline.training.plots import plot_grad_norms, plot_losses

    install_model(best_model, folder.model)
    files.write_json(folder.metrics, metrics)
    write_csv(folder.epochs, epochs)
    write_csv(folder.grad_norms, intervals)
    plot_losses(epochs, intervals, folder.loss_plot)
    plot_grad_norms(intervals, folder.grad_plot, clip_threshold)
    return folder.finished_files


def install_model(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``, byte for byte (written beside it, then moved into place); removed
    when there is no ``source`` (no validation loss was ever finite), so it never describes another run."""
    if not source.exists():
        target.unlink(missing_ok=True)
    elif source.resolve() != target.resolve():
        with files.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


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
