"""DVC stage ``depth``: deep RNNs, the same LM with 1, 2, 3 layers and the same number of steps.

Reads ``data/tokens/<dataset>/{vocab.json,train.npy,val.npy}`` (params ``curriculum.depth`` and the shared
``train.defaults``); trains each depth with :func:`pipeline.training.loop.fit` into ``--out/runs/layers_<n>/``
(one MLflow run each, experiment ``depth-<dataset>``) and writes ``curves.csv``, ``depth.png`` and
``metrics.json`` to ``--out``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params, apply_overrides
from pipeline.curriculum.depth import run_depth, write_depth
from pipeline.curriculum.outputs import ExperimentRuns
from pipeline.files import read_tokens
from pipeline.runtime import resolve_device, set_threads
from pipeline.vocab import Vocabulary
from stages._common import option, print_summary, stage_main


def run(params: Params, data: str, out: str) -> int:
    cfg = params.curriculum.depth
    settings = apply_overrides(params.train.defaults, cfg.overrides, f"{params.path}: curriculum.depth.overrides")
    data_dir = Path(data)
    vocab = Vocabulary.load(data_dir / "vocab.json")
    splits = {s: read_tokens(data_dir / f"{s}.npy", len(vocab)) for s in ("train", "val")}
    set_threads(settings.threads or None)  # as fit will: with one thread the depths may train side by side
    device = resolve_device(settings.device)
    with ExperimentRuns(settings.tracking, f"depth-{cfg.dataset}", device=device,
                  data_files=[data_dir / f for f in ("vocab.json", "train.npy", "val.npy")]) as runs:
        result = run_depth(cfg, settings, len(vocab), splits["train"], splits["val"], Path(out) / "runs", runs.open,
                           char_level=vocab.meta.get("level") == "char", device=device,
                           workers=params.curriculum.workers)  # fit() ends each run; the block guards
    write_depth(Path(out), result)
    print_summary("depth", {name: f"val loss {m['val_loss']:.4f} after {m['steps']} steps, {m['parameters']:,} "
                                  f"parameters, {m['train_seconds']:.1f} s" for name, m in result.metrics.items()})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "depth", run, option("--data", help="data/tokens/<dataset>"),
                      option("--out", help="output folder, curriculum/depth"), requires=("curriculum", "train"))


if __name__ == "__main__":
    sys.exit(main())
