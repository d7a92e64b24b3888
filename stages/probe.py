"""DVC stage ``probe``: vanishing and exploding gradients, measured on real sequences.

Reads the trained variants ``models/<dataset>/<variant>/model.pt`` (params ``curriculum.probe``), a split of
``data/tokens/<dataset>/`` and the ``grad_norms.csv`` of a clipped and an unclipped training run; writes to
``--out``: ``gradient_distance.{csv,png}`` (gradient norm against distance, trained and fresh),
``grad_norm_clipping.{csv,png}`` (gradient-norm distributions with and without clipping) and ``metrics.json``,
all logged to one MLflow run (experiment ``probe``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.curriculum.outputs import ExperimentRuns, numbers, prepare
from pipeline.curriculum.probe import clip_threshold, clipping_series, run_gradient_probe, summary, write_probe
from pipeline.files import read_tokens
from stages._common import option, print_summary, stage_main


def run(params: Params, data: str, models: str, out: str) -> int:
    cur, cfg = params.curriculum, params.curriculum.probe
    prepare("cpu", cur.threads)  # a few backward passes: no device worth moving to
    split = Path(data) / f"{cfg.split}.npy"
    with ExperimentRuns(cur.tracking, "probe", data_files=[split]) as runs:
        tracker = runs.open(cfg.dataset, {"probe": cfg})
        probe = run_gradient_probe(cfg, read_tokens(split), Path(models))
        clipping = clipping_series(Path(models), cfg.clipped, cfg.unclipped)
        files = write_probe(Path(out), probe, clipping, clip_threshold(params.train, cfg.dataset, cfg.clipped))
        tracker.log_metrics(numbers(summary(probe, clipping)), step=0)
        runs.log_artifacts(files)
    print_summary("probe", {name: f"gradient norm {m['grad_norm_d0']:.3g} at distance 0, {m['grad_norm_far']:.3g} at "
                                  f"{cfg.window - 1} ({m['log10_decay_per_step']:+.3f} decades per step)"
                            for name, m in probe.metrics.items()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "probe", run, option("--data", help="data/tokens/<dataset>"),
                      option("--models", help="models/<dataset> (holds every probed variant)"),
                      option("--out", help="output folder, curriculum/probe"), requires=("curriculum", "train"))


if __name__ == "__main__":
    sys.exit(main())
