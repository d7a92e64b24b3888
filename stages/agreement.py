"""DVC stage ``agreement``: long-range dependencies, accuracy against distance for rnn, gru, lstm.

Synthetic data only (params ``curriculum.agreement``): "the cat(s) <d fillers and attractor nouns> -> was/were".
Writes ``accuracy.{csv,png}``, ``metrics.json`` and ``examples.txt`` to ``--out``; one MLflow run per
(cell, distance) in experiment ``agreement``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.tracking.companion import stage_companion
from stages._common import option, print_summary, stage_main


def run(params_path: str, out: str) -> int:
    from pipeline.config import load_params
    from pipeline.tasks.agreement import run_agreement, write_agreement
    from pipeline.tasks.outputs import TaskRuns, prepare

    params = load_params(params_path, required=("curriculum",))
    cur = params.curriculum
    device = prepare(cur.device, cur.threads)
    with TaskRuns(cur.tracking, "agreement", device=device) as runs:
        result = run_agreement(cur.agreement, runs, device, workers=cur.workers)
        runs.log_artifacts(write_agreement(Path(out), result))
    print_summary("agreement", {cell: f"longest distance learnt {m['longest_learnt']}, mean accuracy "
                                      f"{m['accuracy_mean']:.1%} ({m['train_seconds']:.0f} s)"
                                for cell, m in result.metrics.items()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "agreement", run, option("--out", help="output folder, curriculum/agreement"),
                      tracking=lambda a: stage_companion(a["params_path"], section="curriculum"))


if __name__ == "__main__":
    sys.exit(main())
