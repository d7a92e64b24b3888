"""DVC stage ``report``: every variant against its n-gram baseline -> ``reports/summary.{md,csv}``, plots and
``reports/metrics.json`` (the DVC metrics: test perplexity, bpc and music distances per dataset and variant).

Reads ``models/`` and ``metrics/`` (what train, evaluate and baseline wrote), writes the table (and, for MIDI
datasets, a music table: samples against real pieces) and four pictures (test perplexity per variant, validation
curves, gradient norms over training, music distances), logs them to an
MLflow run ``report`` in the experiment ``seqlab-report``, and registers each dataset's best causal variant
as ``seqlab-<dataset>`` with alias ``champion`` when it beats the current champion on validation perplexity.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.evaluation.report_files import register_champions, write_report
from pipeline.tracking.factory import open_tracker
from pipeline.tracking.lifecycle import tracked_run
from stages._common import option, print_summary, stage_main


def run(params: Params, models: str, metrics: str, out: str) -> int:
    report = write_report(params.train.runs, params.evaluate.baselines, Path(models), Path(metrics), Path(out))
    if params.train.defaults.tracking == "mlflow":
        with tracked_run(open_tracker("mlflow", "seqlab-report", "report")) as tracker:
            for path in report.files:
                tracker.log_artifact(path)
        if params.evaluate.register_champion:
            print_summary("report", register_champions(report.champions))
    print(f"report: {report.summary_line}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "report", run, option("--models", default="models"),
                      option("--metrics", default="metrics"), option("--out", default="reports"),
                      requires=("train", "evaluate"))


if __name__ == "__main__":
    sys.exit(main())
