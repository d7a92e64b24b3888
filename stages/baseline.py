"""DVC stage ``baseline``: an interpolated Kneser-Ney n-gram model for one dataset, scored like the RNNs.

Fits on ``data/tokens/<dataset>/train.npy`` (its first ``max_train_tokens``, recorded as ``train_tokens``, when
the dataset's baseline sets a cap), scores val and test (every token, ``<eos>`` included) and
writes ``metrics/<dataset>/ngram.json``; with ``--samples``, samples the n-gram like the RNNs (``evaluate.samples``)
into ``samples/<dataset>/ngram/`` and, for music, judges the samples against the held-out pieces (``music``);
logs an MLflow run ``ngram`` in the dataset's experiment, so every comparison has the row a user would pick
instead of a neural model.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import files
from pipeline.config import Params
from pipeline.evaluation.baseline import baseline_config, evaluate_baseline
from pipeline.evaluation.results import figures_to_metrics, summary_line
from pipeline.tracking.factory import open_tracker
from pipeline.tracking.lifecycle import tracked_run
from stages._common import option, print_summary, stage_main


def run(params: Params, name: str, data: str, metrics: str, samples: str | None = None) -> int:
    ngram = baseline_config(params.evaluate, name, params.path)  # an unknown dataset stops before any work
    files.ensure_writable_dir(Path(metrics).parent, "--metrics")
    if samples:
        files.ensure_writable_dir(Path(samples).parent, "--samples")
    figures = evaluate_baseline(ngram, params.evaluate, Path(data), Path(samples) if samples else None)
    files.write_json(metrics, figures.values)
    tracking = params.sections["train"].defaults.tracking if "train" in params.sections else "none"
    with tracked_run(open_tracker(tracking, name, "ngram",
                                  tags={"dataset": name, "variant": "ngram", "cell": "kneser-ney"})) as tracker:
        tracker.log_params({"model": "interpolated-kneser-ney", "order": ngram.order, "dataset": name})
        tracker.log_metrics(figures_to_metrics(figures), step=0)
    print_summary("baseline", {name: summary_line(figures)})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(
        argv, __doc__, "baseline", run,
        option("--name", help="a dataset: a key of evaluate.baselines"),
        option("--data", help="data/tokens/<dataset>"),
        option("--metrics", help="metrics/<dataset>/ngram.json"),
        option("--samples", default=None, help="samples/<dataset>/ngram: also sample the n-gram (evaluate.samples)"),
        requires=("evaluate",))


if __name__ == "__main__":
    sys.exit(main())
