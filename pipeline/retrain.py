"""Retraining as CI does it: ``dvc pull`` -> ``dvc repro`` -> ``dvc push``, then a regression check.

``seqlab retrain`` (and ``make retrain``) runs :func:`retrain`; ``.github/workflows/retrain.yml`` is a thin
wrapper around that command.  The check compares, for every figures file in ``metrics/``, ``retrain.metric``
(lower is better; by default ``val.perplexity``, the evaluate stage's validation perplexity) with

* the same key of the same file at the ``base`` revision, through ``dvc metrics diff --all --json <base>``
  (CI passes the base branch), and
* the registered champion ``seqlab-<dataset>@champion`` (with ``compare_champion``), looked up before the
  retraining: the report registers it with the evaluate stage's ``val.perplexity`` of
  ``metrics/<dataset>/<variant>.json``, so it is compared with that very figure of the same variant, new.

Without a tracking store (``MLFLOW_TRACKING_URI`` unset and no ``mlflow.db``, as on a CI runner without the
secret) there is no champion to look up and the check rests on ``dvc metrics diff`` alone.

A value more than ``max_regression`` (a fraction) above its reference is a regression: the table marks it and
:func:`retrain`'s exit code is 1.  A metric with no reference (a new model, no champion yet) is listed, never
failed.  The table is Markdown, returned for the command to print and appended to ``summary``
(``$GITHUB_STEP_SUMMARY`` in CI).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from pipeline.config import RetrainConfig
from pipeline.errors import SeqlabWarning, UserError

Runner = Callable[[Sequence[str], bool], str]  # (cmd, capture) -> captured stdout; raises RetrainError on failure
# The files compared: the evaluate and baseline stages' figures.  dvc.yaml declares them as plain outputs (its one
# metrics file is the report's summary), so they are named here: `dvc metrics diff` reads any JSON it is given.
FIGURE_FILES = ("metrics",)


class RetrainError(UserError, RuntimeError):
    """A step of the retraining (dvc pull/repro/push/metrics diff) failed; the message names it."""


class RetrainResult(NamedTuple):
    exit_code: int  # 1 on a regression, else 0
    table: str  # the Markdown comparison, for the command to print


@dataclasses.dataclass(frozen=True)
class Row:
    """One metrics file's value of the compared metric: before (base), now, and the champion's."""

    path: str
    new: float | None
    old: float | None = None
    champion: float | None = None

    @property
    def dataset(self) -> str | None:
        """``models/<dataset>/<variant>/metrics.json`` or ``metrics/<dataset>/<variant>.json`` -> dataset."""
        parts = Path(self.path).parts
        return parts[1] if len(parts) >= 3 and parts[0] in ("models", "metrics") else None


def relative_change(new: float | None, reference: float | None) -> float | None:
    """``(new - reference) / reference``; None when either is missing or not a positive finite number."""
    if new is None or reference is None or not (math.isfinite(reference) and reference > 0) or not math.isfinite(new):
        return None
    return (new - reference) / reference


def rows_from_diff(diff: Mapping[str, Mapping[str, Mapping[str, float | None]]], metric: str) -> list[Row]:
    """Rows for ``metric`` from ``dvc metrics diff --all --json`` (``{path: {metric: {old, new, diff}}}``)."""
    rows = []
    for path, metrics in sorted(diff.items()):
        values = metrics.get(metric)
        if isinstance(values, Mapping):
            rows.append(Row(path, _number(values.get("new")), _number(values.get("old"))))
    return rows


def with_champions(rows: Sequence[Row], champions: Mapping[str, tuple[str, float]]) -> list[Row]:
    """Attach each dataset's champion value (``{dataset: (variant, value)}``) to the row of the figure it was
    registered with: that variant's evaluation, ``metrics/<dataset>/<variant>.json``."""
    out = []
    for row in rows:
        held = champions.get(row.dataset or "")
        if held and row.path == f"metrics/{row.dataset}/{held[0]}.json":
            row = dataclasses.replace(row, champion=held[1])
        out.append(row)
    return out


def regressions(rows: Sequence[Row], max_regression: float) -> list[str]:
    """One message per value more than ``max_regression`` worse than its base or champion reference."""
    found = []
    for row in rows:
        for label, reference in (("base", row.old), ("champion", row.champion)):
            change = relative_change(row.new, reference)
            if change is not None and change > max_regression:
                found.append(f"{row.path}: {row.new:.4g} vs {label} {reference:.4g} (+{change:.1%} > "
                             f"{max_regression:.1%})")
    return found


def markdown(rows: Sequence[Row], cfg: RetrainConfig, base: str, failures: Sequence[str]) -> str:
    """The job-summary table: one row per metrics file, changes against base and champion."""
    lines = [f"### Retraining: `{cfg.metric}` (lower is better; fail above +{cfg.max_regression:.1%})", "",
             f"| metrics file | {base} | new | change | champion | vs champion |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| `{row.path}` | {_fmt(row.old)} | {_fmt(row.new)} | {_pct(row.new, row.old)} | "
                     f"{_fmt(row.champion)} | {_pct(row.new, row.champion)} |")
    if not rows:
        lines.append(f"| (no metrics file has `{cfg.metric}`) | | | | | |")
    lines += ["", f"**{len(failures)} regression(s)**: " + "; ".join(failures) if failures else "No regression."]
    return "\n".join(lines) + "\n"


def retrain(cfg: RetrainConfig, *, base: str | None = None, pull: bool = True, push: bool = True,
            summary: str | Path | None = None, datasets: Sequence[str] = (),
            champions: Callable[[Sequence[str]], dict] | None = None, run: Runner | None = None) -> RetrainResult:
    """Pull, reproduce, push, compare; the table (also appended to ``summary``) and exit code 1 on a regression.

    ``champions(datasets)`` returns ``{dataset: (variant, value)}``: by default read from the MLflow registry
    when ``cfg.compare_champion``, before ``dvc repro`` (whose report may crown a new champion).
    """
    run = run or run_command
    base = base or cfg.base
    dvc = [sys.executable, "-m", "dvc"]
    if pull:  # --allow-missing: a first run, or a stage output never pushed, is not an error
        run([*dvc, "pull", "--allow-missing"], False)
    held = (champions or registered_champions)(sorted(datasets)) if cfg.compare_champion else {}
    if cfg.compare_champion and not held:
        warnings.warn(f"retrain: no champion registered for {', '.join(datasets) or 'any dataset'} "
                      f"(or no tracking store): comparing with {base} only", SeqlabWarning, stacklevel=2)
    run([*dvc, "repro"], False)
    if push:
        run([*dvc, "push"], False)
    diff = run([*dvc, "metrics", "diff", "--all", "--json", base, "--targets", *FIGURE_FILES], True)
    rows = with_champions(rows_from_diff(json.loads(diff or "{}"), cfg.metric), held)
    failures = regressions(rows, cfg.max_regression)
    table = markdown(rows, cfg, base, failures)
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(table)
    return RetrainResult(1 if failures else 0, table)


def registered_champions(datasets: Sequence[str]) -> dict[str, tuple[str, float]]:
    """``{dataset: (variant, val_perplexity)}`` of each ``seqlab-<dataset>@champion`` in the MLflow registry;
    empty without a store to ask (no ``MLFLOW_TRACKING_URI`` and no ``mlflow.db``: none is created)."""
    from pipeline.tracking import default_tracking_uri

    uri = default_tracking_uri()
    if not datasets or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()):
        return {}
    from pipeline.tracking.registry import champion_record

    found = {}
    for dataset in datasets:
        record = champion_record(f"seqlab-{dataset}")
        if record is not None:
            found[dataset] = record
    return found


def run_command(cmd: Sequence[str], capture: bool = False) -> str:
    """Run ``cmd`` with its output shown (stdout returned instead when ``capture``); a failure is one line."""
    name = "dvc " + " ".join(cmd[3:]) if list(cmd[1:3]) == ["-m", "dvc"] else " ".join(cmd)
    print(f"retrain: $ {name}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    done = subprocess.run(list(cmd), stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        raise RetrainError(f"`{name}` failed with exit status {done.returncode} (its output is above)")
    return done.stdout or ""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _pct(new: float | None, reference: float | None) -> str:
    change = relative_change(new, reference)
    return "-" if change is None else f"{change:+.1%}"
