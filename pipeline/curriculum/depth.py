"""Deep RNNs: the same LM with 1, 2, 3 stacked layers, trained by :func:`pipeline.training.loop.fit` with one budget.

Layer l reads layer l-1's activations a[l-1]<t> at the same step t; only the top layer feeds the softmax.
Every depth gets the shared ``train.defaults`` with ``curriculum.depth.overrides`` applied, so the
same number of optimizer steps (``max_steps``), batch size and window: the same data.  The wall-clock time
each depth took is reported next to its loss (a deeper stack costs more per step).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import DepthConfig, ModelConfig, TrainSettings
from pipeline.curriculum import plots
from pipeline.curriculum.outputs import write_csv, write_metrics
from pipeline.curriculum.parallel import Job, plan_workers, run_jobs
from pipeline.models import build_model
from pipeline.run_folder import RunFolder
from pipeline.runtime import set_seed
from pipeline.tracking import Tracker
from pipeline.training.loop import fit


@dataclasses.dataclass
class DepthResult:
    metrics: dict[str, dict[str, Any]]  # "layers_<n>" -> final figures
    curves: list[dict[str, Any]]  # layers, step, seconds (estimated), val_loss, train_loss


def run_depth(cfg: DepthConfig, settings: TrainSettings, vocab_size: int, train_ids: np.ndarray, val_ids: np.ndarray,
              out_dir: Path, open_tracker: Callable[[str, dict], Tracker], char_level: bool = False,
              device: str = "cpu", workers: int = 1) -> DepthResult:
    """Train one LM per depth into ``out_dir/layers_<n>/``; ``open_tracker(run_name, params)`` gives its run
    (``device``: ``settings.device`` resolved).
    Up to ``workers`` depths train at once (:func:`pipeline.curriculum.parallel.run_jobs`; 0: one per CPU), the
    deepest first, with the same figures; ``train_seconds`` is each depth's own training time either way."""
    layers_in_order = sorted(cfg.layers, reverse=True)  # the longest first: no core waits at the end
    side_by_side = plan_workers(workers, len(cfg.layers), device) > 1
    run_settings = dataclasses.replace(settings, progress=False) if side_by_side else settings  # one bar each
    jobs = []
    for layers in layers_in_order:
        model_cfg = dataclasses.replace(cfg.model, num_layers=layers)
        name = f"layers_{layers}"
        jobs.append(Job(name, functools.partial(open_tracker, name, {"model": model_cfg, "train": settings,
                                                                     "dataset": cfg.dataset}),
                        functools.partial(_fit_one, model_cfg, vocab_size, train_ids, val_ids, run_settings,
                                          out_dir / name, char_level=char_level)))
    done = dict(zip(layers_in_order, run_jobs(jobs, workers, device), strict=True))
    metrics, curves = {}, []
    for layers in cfg.layers:
        name, m = f"layers_{layers}", done[layers]
        metrics[name] = {k: m[k] for k in ("val_loss", "val_perplexity", "steps", "train_seconds", "parameters",
                                           "tokens_per_s") if k in m}
        if "val_bpc" in m:
            metrics[name]["val_bpc"] = m["val_bpc"]
        per_step = m["train_seconds"] / max(m["steps"], 1)
        for row in _read_rows(RunFolder(out_dir / name).epochs):
            curves.append({"layers": layers, "step": int(row["step"]), "seconds": round(int(row["step"]) * per_step, 3),
                           "train_loss": float(row["train_loss"]), "val_loss": float(row["val_loss"])})
    return DepthResult(metrics, curves)


def _fit_one(model_cfg: ModelConfig, vocab_size: int, train_ids: np.ndarray, val_ids: np.ndarray,
             settings: TrainSettings, out: Path, tracker: Tracker, char_level: bool) -> dict[str, Any]:
    set_seed(settings.seed)
    return dict(fit(build_model(model_cfg, vocab_size), train_ids, val_ids, settings, out, tracker=tracker,
                    char_level=char_level).metrics)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_depth(out: Path, result: DepthResult) -> list[Path]:
    """``curves.csv``, ``depth.png`` and ``metrics.json`` in ``out`` (each depth's fit outputs are in its folder)."""
    write_csv(out / "curves.csv", result.curves)
    return [out / "curves.csv", plots.plot_depth(result.curves, out / "depth.png"),
            write_metrics(out / "metrics.json", result.metrics)]
