"""DVC stage ``evaluate``: one trained variant -> held-out perplexity, samples, and the same in its MLflow run.

Reads ``models/<dataset>/<variant>/model.pt`` (the best checkpoint) and ``data/tokens/<dataset>/``;
writes ``metrics/<dataset>/<variant>.json`` (val and test figures, per direction for a bidirectional model;
for music, the samples judged against the held-out pieces under ``music``; with ``evaluate.interpolate`` for
the dataset, the model mixed with an n-gram fitted on ``train.npy`` under ``interpolated``) and ``samples/<dataset>/<variant>/``
(text, or MIDI plus piano rolls), and logs both into the training run recorded in ``mlflow_run.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import files
from pipeline.config import Params
from pipeline.evaluation.evaluate import evaluate_variant
from pipeline.evaluation.results import figures_to_metrics, summary_line
from pipeline.run_folder import RunFolder
from pipeline.tracking.factory import open_tracker
from pipeline.tracking.lifecycle import tracked_run
from stages._common import option, print_summary, stage_main


def run(params: Params, name: str, data: str, model_dir: str, metrics: str, samples: str) -> int:
    settings, folder = params.train.settings_for(name), RunFolder(model_dir)
    for flag, path in (("--metrics", Path(metrics).parent), ("--samples", Path(samples).parent)):
        files.ensure_writable_dir(path, flag)
    # The training run the figures join (None: untracked), checked before any work like the folders above.
    info = folder.read_run() if settings.tracking != "none" else None
    step = int(folder.read_metrics()["steps"]) if info is not None else 0
    figures = evaluate_variant(folder, Path(data), params.evaluate, dataset=params.train.runs[name].dataset,
                               batching=settings.batching, samples=Path(samples), where=params.path)
    files.write_json(metrics, figures.values)
    if info is not None:  # the figures and samples join the training run; its status stays what training left
        with tracked_run(open_tracker("mlflow", info["experiment"], info["run_name"], run_id=info["run_id"],
                                      tracking_uri=info.get("tracking_uri"), mode="append")) as tracker:
            tracker.log_metrics(figures_to_metrics(figures), step=step)
            for path in figures.sample_files:
                tracker.log_artifact(path, "samples")
    print_summary("evaluate", {name: summary_line(figures)})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(
        argv, __doc__, "evaluate", run,
        option("--run", dest="name", help="a key of train.runs, e.g. austen-char-lstm"),
        option("--data", help="data/tokens/<dataset>"),
        option("--model", dest="model_dir", help="models/<dataset>/<variant>"),
        option("--metrics", help="metrics/<dataset>/<variant>.json"),
        option("--samples", help="samples/<dataset>/<variant>"), requires=("train", "evaluate"))


if __name__ == "__main__":
    sys.exit(main())
