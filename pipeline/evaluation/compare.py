"""The figures users compare across experiments: what ``reports/metrics.json`` holds and how it is laid out.

The report stage writes :func:`summary_metrics` as the pipeline's only DVC metrics file, so ``dvc exp show``,
``dvc metrics diff`` and ``dvc plots`` lead with these figures: per dataset and variant (the ``ngram`` baseline
included) the test perplexity, bits per character (char-level data), the backward direction of a bidirectional
model, the perplexity mixed with an n-gram (``evaluate.interpolate``) and, for music, the Jensen-Shannon distances
of the samples to the test split (with ``val vs test``, real music against real music, as the floor).

:func:`comparison_table` turns ``dvc exp show --json`` into one text table, variants as rows and one column per
experiment, wrapped into blocks of experiments so that no line is wider than the terminal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from pipeline.errors import UserError
from pipeline.evaluation.music_report import DISTANCES, FLOOR, REFERENCE
from pipeline.evaluation.report import BASELINE_VARIANT

SUMMARY_FILE = "metrics.json"  # in the report's output folder: reports/metrics.json
TEST_FIGURES = ["test_perplexity", "test_perplexity_backward", "test_bpc", "test_perplexity_with_ngram"]
MUSIC_FIGURES = dict(zip(DISTANCES, ["music_pitch_class", "music_note_length", "music_onset_interval",
                                     "music_polyphony"], strict=True))  # Jensen-Shannon distances to the test split
FIGURES = [*TEST_FIGURES, *MUSIC_FIGURES.values()]  # the order of a variant's rows in the table
WIDTH = 200  # the widest line comparison_table prints, by default


class ComparisonError(UserError):
    """There is nothing to compare; the message says what to run."""


def summary_metrics(table: pd.DataFrame, music: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{dataset: {variant: {figure: value}}}`` from the report's table and music table; gaps left out."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.to_dict("records"):
        _put(out, row["dataset"], row["variant"], {f: row[f] for f in TEST_FIGURES})
    for row in music.to_dict("records"):
        if row["variant"] != REFERENCE:  # the reference's own distances are 0 by definition
            _put(out, row["dataset"], row["variant"], {MUSIC_FIGURES[d]: row[d] for d in DISTANCES})
    return out


def _put(out: dict, dataset: str, variant: str, figures: Mapping[str, Any]) -> None:
    kept = {k: float(v) for k, v in figures.items() if v is not None and not pd.isna(v)}
    if kept:
        out.setdefault(dataset, {}).setdefault(variant, {}).update(kept)


def experiments(shown: list[dict[str, Any]], metrics_path: str) -> dict[str, dict]:
    """``{column name: summary}`` from ``dvc exp show --json``: the workspace, each baseline commit and its
    experiments, in that order; revisions without the summary file (queued, failed, older code) are left out."""
    columns: dict[str, dict] = {}
    for entry in shown:
        for rev in [entry, *(r for exp in entry.get("experiments") or [] for r in exp.get("revs") or [])]:
            data = ((rev.get("data") or {}).get("metrics") or {}).get(metrics_path) or {}
            if data.get("data"):
                rev_id = str(rev.get("rev", ""))
                short = rev_id[:7] if len(rev_id) == 40 else rev_id  # a commit's sha, or "workspace"
                name = rev.get("name") or short
                columns[name if name not in columns else short] = data["data"]
    return columns


def comparison_table(columns: Mapping[str, Mapping], width: int = WIDTH) -> str:
    """Rows (dataset, variant, figure) against one column per experiment; blocks of experiments <= ``width``."""
    if not columns:
        raise ComparisonError(f"compare: no experiment has reports/{SUMMARY_FILE}, not even the workspace; "
                              "run `dvc repro` (make repro) first")
    labels = _rows(columns.values())
    label_widths = [max(len(h), *(len(r[i]) for r in labels)) for i, h in enumerate(("dataset", "variant", "figure"))]
    cells = {name: [_number(summary.get(d, {}).get(v, {}).get(f)) for d, v, f in labels]
             for name, summary in columns.items()}
    blocks: list[list[tuple[str, int]]] = [[]]
    room = width - sum(w + 2 for w in label_widths)
    for name in columns:
        column_width = max(len(name), *(len(c) for c in cells[name])) + 2
        if blocks[-1] and sum(w for _, w in blocks[-1]) + column_width > room:
            blocks.append([])
        blocks[-1].append((name, column_width))
    return "\n\n".join(_block(labels, label_widths, block, cells) for block in blocks) + "\n"


def _rows(summaries: Iterable[Mapping]) -> list[tuple[str, str, str]]:
    """Every (dataset, variant, figure) of any experiment: datasets by name, the baseline and the floor last."""
    found: dict[str, dict[str, set[str]]] = {}
    for summary in summaries:
        for dataset, variants in summary.items():
            for variant, figures in variants.items():
                found.setdefault(dataset, {}).setdefault(variant, set()).update(figures)
    last = {BASELINE_VARIANT: 1, FLOOR: 2}
    rows = []
    for dataset in sorted(found):
        for variant in sorted(found[dataset], key=lambda v: (last.get(v, 0), v)):
            known = [f for f in FIGURES if f in found[dataset][variant]]
            rows += [(dataset, variant, f) for f in known + sorted(found[dataset][variant] - set(known))]
    return rows


def _block(labels: list[tuple[str, str, str]], label_widths: list[int], block: list[tuple[str, int]],
           cells: Mapping[str, list[str]]) -> str:
    """One block: the label columns, then the block's experiments; a dataset or variant named once."""
    lines = [_labels(("dataset", "variant", "figure"), label_widths) + "".join(n.rjust(w) for n, w in block)]
    for i, (dataset, variant, figure) in enumerate(labels):
        before = labels[i - 1] if i else ("", "", "")
        shown = (dataset if dataset != before[0] else "", variant if (dataset, variant) != before[:2] else "", figure)
        lines.append(_labels(shown, label_widths) + "".join(cells[name][i].rjust(w) for name, w in block))
    return "\n".join(line.rstrip() for line in lines)


def _labels(texts: Iterable[str], widths: list[int]) -> str:
    return "".join(t.ljust(w + 2) for t, w in zip(texts, widths, strict=True))


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.3f}"
