"""DVC stage ``tagging``: many-to-many with Tx = Ty, restoring removed spaces, uni vs bi.

Reads a character dataset ``data/tokens/<dataset>/{vocab.json,train.npy,val.npy,test.npy}`` (params
``curriculum.tagging``); writes ``history.csv``, ``tagging.png``, ``metrics.json`` (test F1 and tag perplexity
per direction) and ``examples.txt`` to ``--out``; one MLflow run per direction in experiment ``tagging``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.curriculum.outputs import ExperimentRuns, prepare
from pipeline.curriculum.tagging import run_tagging, write_tagging
from pipeline.files import read_tokens
from pipeline.vocab import Vocabulary
from stages._common import option, print_summary, stage_main


def run(params: Params, data: str, out: str) -> int:
    cur = params.curriculum
    device = prepare(cur.device, cur.threads)
    data_dir = Path(data)
    vocab = Vocabulary.load(data_dir / "vocab.json")
    files = {split: data_dir / f"{split}.npy" for split in ("train", "val", "test")}
    with ExperimentRuns(cur.tracking, "tagging", data_files=[data_dir / "vocab.json", *files.values()], device=device) as runs:
        result = run_tagging(cur.tagging, vocab, {s: read_tokens(p, len(vocab)) for s, p in files.items()}, runs, device,
                             workers=cur.workers)
        runs.log_artifacts(write_tagging(Path(out), result))
    print_summary("tagging", {direction: f"test F1 {m['test_f1']:.3f}, tag perplexity {m['test_tag_perplexity']:.3f} "
                                         f"({m['parameters']:,} parameters, {m['train_seconds']:.0f} s)"
                              for direction, m in result.metrics.items()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "tagging", run,
                      option("--data", help="data/tokens/<dataset> (character level)"),
                      option("--out", help="output folder, curriculum/tagging"), requires=("curriculum",))


if __name__ == "__main__":
    sys.exit(main())
