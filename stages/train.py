"""DVC stage ``train``: one run of params.yaml's ``train.runs`` -> ``models/<dataset>/<variant>/``.

Reads ``data/tokens/<dataset>/{vocab.json,train.npy,val.npy}`` and trains the run's model in its tracking run
(:func:`pipeline.variant.train_variant`).  Checkpoints go to ``.seqlab/runs/`` (where no DVC command deletes
them); the model folder gets ``model.pt``, the figures, ``vocab.json`` and ``mlflow_run.json`` when the run
finishes, and a start that fails leaves it as it was.  ``--resume`` continues the checkpoint of the same settings
and data in the same tracking run (exit 2 if there is only one of other settings); ``--resume auto`` (dvc.yaml's
command) continues an unfinished run of the same settings and data, else starts fresh.

Started by ``torchrun --nproc_per_node N -m stages.train ...`` it trains the run data-parallel across N
processes (see :mod:`pipeline.training.distributed`): rank 0 alone opens the MLflow run and writes files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.config import Params
from pipeline.variant import train_variant
from stages._common import option, stage_main


def run(params: Params, name: str, data: str, out: str, resume: bool | str = False) -> int:
    mode = "auto" if resume == "auto" else "required" if resume else "never"
    result = train_variant(params, name, data, out, mode)
    if result is None:  # another rank of a distributed job: rank 0 reports
        return 0
    m = result.metrics
    print(f"train: {name}: {result.stop_reason} after {m['steps']} steps ({m['epochs']:g} epochs), best val loss "
          f"{m['val_loss']:.4f} (ppl {m['val_perplexity']:.2f}), {m['tokens_per_s']:,.0f} tokens/s, "
          f"{m['train_seconds']:.0f} s")
    return 0


def _auto(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError(f"{value!r}: the one value is auto (plain --resume needs the checkpoint)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    # --train-run: the same option under a name torchrun's own parser leaves alone (it rejects --run as an
    # ambiguous abbreviation of its --run-path, even after the script name).
    return stage_main(
        argv, __doc__, "train", run,
        option("--run", "--train-run", dest="name",
               help="a key of train.runs, e.g. austen-char-lstm (spell it --train-run after torchrun)"),
        option("--data", help="the dataset folder, data/tokens/<dataset>"),
        option("--out", help="output folder, models/<dataset>/<variant>"),
        option("--resume", nargs="?", const=True, default=False, type=_auto, metavar="auto",
               help="continue from the checkpoint of the same settings and data in the same run; stop (exit 2) "
               "if there is only one trained with other settings or data. --resume auto (what dvc.yaml runs): "
               "continue an unfinished run of the same settings and data, else start fresh"),
        requires=("train",),
        stop_note="the last checkpoint is kept for --resume; the tracking run is marked KILLED if the store answers")


if __name__ == "__main__":
    sys.exit(main())
