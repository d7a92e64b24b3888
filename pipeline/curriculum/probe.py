"""Vanishing and exploding gradients, measured on real sequences.

**Gradient against distance.**  For a window x<1..T> of a corpus and the loss at the last step,
L<T> = -log p(x<T+1> | x<1..T>), backprop through time gives dL<T>/de<t> for the input embedding e<t> of
every step t.  Its norm as a function of the distance T - t says how much the last prediction can still
learn from (be corrected by) a token that far back: in a basic RNN it shrinks roughly geometrically
(each step multiplies by Waa^T diag(1 - a<t>^2)); the gates of a GRU/LSTM keep an additive path open.
We average the norm over ``windows`` windows of the split's id stream (records run together), for each
model trained and for a freshly initialised copy (same config and seed as the training run).  The input
embedding is used rather than the hidden state because torch's fused kernels do not expose a<t> as a node
of the graph; the two differ by one matrix (Wax) per step, not by a trend.

**Clipping.**  The training runs log, per logging interval, the global gradient norm before and after
clipping (``models/<dataset>/<variant>/grad_norms.csv``); :func:`clipping_series` reads a clipped and an
unclipped run into one long table for the distribution plot.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.config import ProbeConfig
from pipeline.curriculum import plots
from pipeline.curriculum.outputs import write_csv, write_metrics
from pipeline.errors import UserError
from pipeline.models import SequenceModel, build_model
from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.run_folder import RunFolder
from pipeline.runtime import set_seed


class ProbeInputError(UserError, FileNotFoundError):
    """A trained model or a gradient-norm series the probe needs is missing."""


def probe_windows(ids: np.ndarray, window: int, count: int, seed: int) -> Tensor:
    """``count`` windows of ``window + 1`` ids (inputs and the last target) at seeded random offsets: (N, T + 1)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < window + 1:
        raise UserError(f"the probe split has {len(ids)} tokens, fewer than probe.window + 1 = {window + 1}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - window, size=count)
    return torch.from_numpy(np.stack([ids[s : s + window + 1] for s in starts]))


def gradient_by_distance(model: SequenceModel, windows: Tensor) -> np.ndarray:
    """Mean over windows of ||dL<T>/de<t>||, indexed by distance T - t = 0 .. T-1: shape (T,)."""
    was_training = model.training
    model.eval()  # no dropout: the same function the model computes at test time
    try:
        with torch.enable_grad():
            inputs, target = windows[:, :-1], windows[:, -1]
            embedded = model.embedding(inputs).detach().requires_grad_(True)  # (N, T, E)
            hidden, _ = model.rnn(embedded)  # (N, T, H)
            loss = F.cross_entropy(model.output(hidden[:, -1]), target, reduction="sum")  # one loss per window
            (grad,) = torch.autograd.grad(loss, embedded)  # (N, T, E)
    finally:
        model.train(was_training)
    norms = grad.norm(dim=-1).mean(dim=0)  # (T,), indexed by t
    return norms.flip(0).numpy()  # indexed by distance T - t


def trained_and_fresh(model_path: Path, seed: int) -> dict[str, SequenceModel]:
    """The trained model at ``model_path`` and a freshly initialised one of the same config (seeded)."""
    if not model_path.exists():
        raise ProbeInputError(f"{model_path}: trained model not found; run its train stage first (dvc repro)")
    trained = model_from_checkpoint(load_checkpoint(model_path), "cpu")
    set_seed(seed)
    fresh = build_model(trained.config, trained.vocab_size)
    return {"fresh": fresh, "trained": trained}


@dataclasses.dataclass
class ProbeResult:
    rows: list[dict[str, Any]]  # distance, cell, state, grad_norm
    metrics: dict[str, dict[str, float]]


def run_gradient_probe(cfg: ProbeConfig, ids: np.ndarray, models_dir: Path) -> ProbeResult:
    """Gradient norm against distance for every variant, trained and fresh."""
    windows = probe_windows(ids, cfg.window, cfg.windows, cfg.seed)
    rows, metrics = [], {}
    for variant in cfg.variants:
        for state, model in trained_and_fresh(RunFolder(models_dir / variant).model, cfg.seed).items():
            norms = gradient_by_distance(model, windows)
            cell = model.config.cell
            rows += [{"distance": d, "cell": cell, "variant": variant, "state": state, "grad_norm": float(n)}
                     for d, n in enumerate(norms)]
            metrics[f"{variant}_{state}"] = _decay(norms)
    return ProbeResult(rows, metrics)


def _decay(norms: np.ndarray) -> dict[str, float]:
    """Norm at distance 0 and at the window's far end, and the mean decay per step in between (log10 units)."""
    first, last = float(norms[0]), float(norms[-1])
    per_step = (math.log10(max(last, 1e-30)) - math.log10(max(first, 1e-30))) / max(len(norms) - 1, 1)
    return {"grad_norm_d0": first, "grad_norm_far": last, "log10_decay_per_step": per_step}


SERIES = (("before clipping", "grad_norm_mean"), ("max before clipping", "grad_norm_max"),
          ("after clipping", "grad_norm_clipped_mean"))


def clipping_series(models_dir: Path, clipped: str, unclipped: str) -> list[dict[str, Any]]:
    """Long rows (run, clip, series, step, grad_norm, clip_rate, interval_steps) from both runs' ``grad_norms.csv``.

    ``grad_norm`` is the interval's mean (``before``/``after clipping``) or max (``max before clipping``) of the
    per-step global norm; ``clip_rate`` the share of the interval's steps where clipping fired."""
    rows = []
    for variant, clip in ((clipped, "clipped"), (unclipped, "unclipped")):
        previous = 0
        for row in _read_csv(models_dir / variant / "grad_norms.csv"):
            step = int(row["step"])
            for series, column in SERIES:
                if clip == "unclipped" and series == "after clipping":
                    continue  # identical to "before": nothing was clipped
                rows.append({"run": variant, "clip": clip, "series": series, "step": step,
                             "grad_norm": float(row[column]), "clip_rate": float(row["clip_rate"]),
                             "interval_steps": step - previous})
            previous = step
    return rows


def clip_share(rows: list[dict[str, Any]]) -> float:
    """Share of training steps where clipping fired (intervals weighted by their number of steps)."""
    steps = sum(r["interval_steps"] for r in rows)
    return sum(r["clip_rate"] * r["interval_steps"] for r in rows) / steps if steps else 0.0


def clipping_metrics(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in sorted({(r["run"], r["series"]) for r in rows}):
        values = np.array([r["grad_norm"] for r in rows if (r["run"], r["series"]) == key])
        selected = [r for r in rows if (r["run"], r["series"]) == key]
        out[f"{key[0]} {key[1]}"] = {"median": float(np.median(values)), "max": float(values.max()),
                                     "intervals": int(len(values)), "clip_rate": clip_share(selected)}
    return out


def clip_threshold(train: Any, dataset: str, variant: str) -> float:
    """The clip threshold the training run of ``dataset``/``variant`` used (``train`` is the parsed section)."""
    for name, run in train.runs.items():
        if (run.dataset, run.variant) == (dataset, variant):
            return train.settings_for(name).clip_threshold
    raise ProbeInputError(f"curriculum.probe.clipped: no train.runs entry has dataset {dataset!r} and variant "
                          f"{variant!r}")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise ProbeInputError(f"{path}: gradient-norm series not found; run that variant's train stage first")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_probe(out: Path, probe: ProbeResult, clipping: list[dict[str, Any]], threshold: float) -> list[Path]:
    """``gradient_distance.{csv,png}``, ``grad_norm_clipping.{csv,png}`` and ``metrics.json`` in ``out``."""
    write_csv(out / "gradient_distance.csv", probe.rows)
    write_csv(out / "grad_norm_clipping.csv", clipping)
    return [out / "gradient_distance.csv", out / "grad_norm_clipping.csv",
            plots.plot_gradient_distance(probe.rows, out / "gradient_distance.png"),
            plots.plot_clipping(clipping, threshold, out / "grad_norm_clipping.png"),
            write_metrics(out / "metrics.json", summary(probe, clipping))]


def summary(probe: ProbeResult, clipping: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe's metrics: ``gradient`` (per variant and state) and ``clipping`` (per run and series)."""
    return {"gradient": probe.metrics, "clipping": clipping_metrics(clipping)}
