"""DVC stage ``agreement``: long-range dependencies, accuracy against distance for rnn, gru, lstm.

Synthetic data only (params ``curriculum.agreement``): "the cat(s) <d fillers and attractor nouns> -> was/were".
Writes ``accuracy.{csv,png}``, ``metrics.json`` and ``examples.txt`` to ``--out``; one MLflow run per
(cell, distance) in experiment ``agreement``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.curriculum.agreement import run_agreement, write_agreement
from pipeline.curriculum.outputs import ExperimentRuns, prepare
from stages._common import option, print_summary, stage_main


def run(params: Params, out: str) -> int:
    cur = params.curriculum
    device = prepare(cur.device, cur.threads)
    with ExperimentRuns(cur.tracking, "agreement", device=device) as runs:
        result = run_agreement(cur.agreement, runs, device, workers=cur.workers)
        runs.log_artifacts(write_agreement(Path(out), result))
    print_summary("agreement", {cell: f"longest distance learnt {m['longest_learnt']}, mean accuracy "
                                      f"{m['accuracy_mean']:.1%} ({m['train_seconds']:.0f} s)"
                                for cell, m in result.metrics.items()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "agreement", run, option("--out", help="output folder, curriculum/agreement"),
                      requires=("curriculum",))


if __name__ == "__main__":
    sys.exit(main())
