"""DVC stage ``langid``: many-to-one, which language is this line in?

Reads ``<raw>/<lang>.txt`` for every language of ``curriculum.langid`` (the ``languages`` corpus of the
download stage); writes ``history.csv``, ``confusion.png`` and ``metrics.json`` to ``--out``; one MLflow run
in experiment ``langid``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.curriculum.langid import run_langid, write_langid
from pipeline.curriculum.outputs import ExperimentRuns, prepare
from stages._common import option, stage_main


def run(params: Params, raw: str, out: str) -> int:
    cur, cfg = params.curriculum, params.curriculum.langid
    device = prepare(cur.device, cur.threads)
    files = [Path(raw) / f"{lang}.txt" for lang in cfg.languages]
    with ExperimentRuns(cur.tracking, "langid", data_files=[f for f in files if f.exists()], device=device) as runs:
        result = run_langid(cfg, Path(raw), runs, device)
        runs.log_artifacts(write_langid(Path(out), result, cfg.languages))
    m = result.metrics
    worst = min(m["test_accuracy_per_language"].items(), key=lambda item: item[1])
    print(f"langid: test accuracy {m['test_accuracy']:.1%} over {len(cfg.languages)} languages (hardest: "
          f"{worst[0]} {worst[1]:.1%}), label perplexity {m['test_label_perplexity']:.3f}, {m['train_seconds']:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "langid", run,
                      option("--raw", help="data/raw/<corpus> holding one <lang>.txt per language"),
                      option("--out", help="output folder, curriculum/langid"), requires=("curriculum",))


if __name__ == "__main__":
    sys.exit(main())
