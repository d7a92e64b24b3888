"""The comparison report: every trained variant of every dataset next to its n-gram baseline.

:func:`collect` reads what the train, evaluate and baseline stages wrote (``models/<dataset>/<variant>/
metrics.json``, ``metrics/<dataset>/<variant>.json``, ``metrics/<dataset>/ngram.json``) into one pandas
table, one row per (dataset, variant), with stable column names so ``dvc metrics diff`` and the CSV diff
cleanly.  For a bidirectional LM, ``test_perplexity`` is its forward direction (next-token perplexity,
comparable with the other rows) and ``test_perplexity_backward`` the other direction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import files
from pipeline.config import NgramConfig, TrainRunConfig
from pipeline.errors import UserError
from pipeline.run_folder import RunFolder


class ReportError(UserError):
    """The report cannot be made from what is on disk; the message names the missing files."""


COLUMNS = [
    "dataset", "variant", "cell", "depth", "direction", "parameters", "val_perplexity", "test_perplexity",
    "test_perplexity_backward", "test_bpc", "test_perplexity_with_ngram", "train_seconds", "tokens_per_s",
    "final_grad_norm", "test_lanes",
]
BASELINE_VARIANT = "ngram"


def variant_folder(models: Path, run: TrainRunConfig) -> RunFolder:
    """The run folder a trained variant's figures, curves and tracking run are read from."""
    return RunFolder(Path(models) / run.dataset / run.variant)


def _read(path: Path) -> dict[str, Any]:
    return files.read_json(path) if path.exists() else {}


def _test_figures(evaluated: dict[str, Any]) -> dict[str, float]:
    test = evaluated.get("test") or evaluated.get("val") or {}
    forward = test.get("forward_perplexity", test.get("perplexity"))
    return {
        "test_perplexity": forward,
        "test_perplexity_backward": test.get("backward_perplexity"),
        "test_bpc": (math.log2(forward) if forward and "bpc" in test else None),
    }


def model_row(run: TrainRunConfig, models: Path, metrics: Path) -> dict[str, Any]:
    trained = _read(variant_folder(models, run).metrics)
    evaluated = _read(metrics / run.dataset / f"{run.variant}.json")
    val = evaluated.get("val", {})
    return {
        "dataset": run.dataset, "variant": run.variant, "cell": run.model.cell, "depth": run.model.num_layers,
        "direction": run.model.direction, "parameters": trained.get("parameters"),
        "val_perplexity": val.get("forward_perplexity", val.get("perplexity", trained.get("val_perplexity"))),
        **_test_figures(evaluated),
        "test_perplexity_with_ngram": (evaluated.get("interpolated", {}).get("test") or {}).get("perplexity"),
        "train_seconds": trained.get("train_seconds"),
        "tokens_per_s": trained.get("tokens_per_s"), "final_grad_norm": trained.get("grad_norm_final"),
        "test_lanes": (evaluated.get("test") or evaluated.get("val") or {}).get("lanes"),
    }


def baseline_row(dataset: str, cfg: NgramConfig, metrics: Path) -> dict[str, Any] | None:
    evaluated = _read(metrics / dataset / f"{BASELINE_VARIANT}.json")
    if not evaluated:
        return None
    return {
        "dataset": dataset, "variant": BASELINE_VARIANT, "cell": f"kneser-ney {cfg.order}-gram", "depth": None,
        "direction": "uni", "parameters": evaluated.get("ngrams"),
        "val_perplexity": evaluated.get("val", {}).get("perplexity"), **_test_figures(evaluated),
        "train_seconds": evaluated.get("fit_seconds"), "tokens_per_s": None, "final_grad_norm": None,
    }


def collect(runs: dict[str, TrainRunConfig], baselines: dict[str, NgramConfig], models: Path,
            metrics: Path) -> pd.DataFrame:
    """One row per run and per baseline; every input must exist (a report of empty rows would look like data)."""
    expected = [variant_folder(models, r).metrics for r in runs.values()]
    expected += [Path(metrics) / r.dataset / f"{r.variant}.json" for r in runs.values()]
    expected += [Path(metrics) / ds / f"{BASELINE_VARIANT}.json" for ds in baselines]
    missing = [str(p) for p in expected if not p.exists()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ReportError(f"report: missing {shown}; run the train, evaluate and baseline stages first (dvc repro)")
    rows = [model_row(run, Path(models), Path(metrics)) for run in runs.values()]
    rows += [r for ds, cfg in baselines.items() if (r := baseline_row(ds, cfg, Path(metrics))) is not None]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["dataset", "test_perplexity"], na_position="last", kind="stable").reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """One section per dataset; the best row by test perplexity is marked."""
    parts = ["# seqlab summary", "", "Perplexity = exp(mean NLL per predicted token) on the held-out split, "
             "`<eos>` counted; bpc = bits per character (char-level data). `ngram` is the interpolated "
             "Kneser-Ney baseline on the same tokens; `test_perplexity_with_ngram` (with `evaluate.interpolate`) is the "
             "model mixed with such an n-gram, weight fitted on val. Bidirectional rows: forward direction "
             "(backward beside it). The networks score each held-out split as one stream carrying its state from "
             "the first token to the last (`evaluate.batch_size: 1`) unless the dataset's section says otherwise.",
             ""]
    for dataset, group in table.groupby("dataset", sort=True):
        shown = group.drop(columns=["dataset", "test_lanes"]).copy()
        best = shown["test_perplexity"].astype(float).idxmin() if shown["test_perplexity"].notna().any() else None
        if best is not None:
            shown.loc[best, "variant"] = f"**{shown.loc[best, 'variant']}**"
        shown = _formatted(shown.dropna(axis=1, how="all"))
        parts += [f"## {dataset}", "", *_lanes_note(group),
                  shown.to_markdown(index=False, missingval="", disable_numparse=True), ""]
    return "\n".join(parts)


def _lanes_note(group: pd.DataFrame) -> list[str]:
    """A line naming the parallel lanes the test split was scored with, where that is not one stream."""
    lanes = sorted({int(n) for n in group["test_lanes"].dropna() if int(n) > 1})
    if not lanes:
        return []
    shown = " / ".join(str(n) for n in lanes)
    return [f"Test split scored as {shown} parallel streams, each carrying its state "
            f"(a split longer than `evaluate.lanes_above_tokens`).", ""]


_FORMATS = {"parameters": "{:,.0f}", "tokens_per_s": "{:,.0f}", "train_seconds": "{:.1f}", "depth": "{:.0f}"}


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as a person reads them: counts with separators, perplexities to 3 decimals, gaps left empty."""
    out = frame.astype(object)
    for col in out.columns:
        if col in ("variant", "cell", "direction"):
            continue
        fmt = _FORMATS.get(col, "{:.3f}")
        out[col] = [fmt.format(float(v)) if v is not None and not pd.isna(v) else "" for v in frame[col]]
    return out


def champion_candidates(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per dataset, the causal trained variant with the lowest validation perplexity."""
    models = table[(table["variant"] != BASELINE_VARIANT) & (table["direction"] == "uni")]
    models = models[models["val_perplexity"].notna()]
    out = {}
    for dataset, group in models.groupby("dataset"):
        row = group.loc[group["val_perplexity"].astype(float).idxmin()]
        out[dataset] = {"variant": row["variant"], "val_perplexity": float(row["val_perplexity"])}
    return out
