"""`seqlab retrain`: dvc pull, repro, push, then compare metrics with the base revision and the champion."""

from __future__ import annotations

import argparse
import os

from pipeline.config import RetrainConfig, load_params
from pipeline.retrain import retrain


def _retrain(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    cfg = params.sections.get("retrain", RetrainConfig())
    runs = params.sections["train"].runs if "train" in params.sections else {}
    summary = args.summary or os.environ.get("GITHUB_STEP_SUMMARY") or None
    result = retrain(cfg, base=args.base, pull=not args.no_pull, push=not args.no_push, summary=summary,
                     datasets=sorted({run.dataset for run in runs.values()}))
    print(result.table, end="")
    return result.exit_code


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain", help="what CI runs: dvc pull, dvc repro, dvc push, then fail on a metric regression",
        description="Run `dvc pull --allow-missing`, `dvc repro` and `dvc push`, then compare params.yaml's "
        "retrain.metric (val.perplexity: the evaluate stage's figure) in every file of metrics/ with the same "
        "figure at the base revision (`dvc metrics diff`) and with the seqlab-<dataset>@champion registered before "
        "the retraining (registered with that same figure; skipped without a tracking store). Prints a Markdown "
        "table (appended to $GITHUB_STEP_SUMMARY when set) and exits 1 when a value is more than "
        "retrain.max_regression worse. .github/workflows/retrain.yml runs this.")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--base", help="git revision to compare with (default: retrain.base, e.g. HEAD or origin/main)")
    p.add_argument("--no-pull", action="store_true", help="skip `dvc pull` (the data is already here)")
    p.add_argument("--no-push", action="store_true", help="skip `dvc push` (nothing is shared)")
    p.add_argument("--summary", help="append the table to this file (default: $GITHUB_STEP_SUMMARY if set)")
    p.set_defaults(func=_retrain)
