"""DVC stage ``train``: one run of params.yaml's ``train.runs`` -> ``models/<dataset>/<variant>/``.

Reads ``data/tokens/<dataset>/{vocab.json,train.npy,val.npy}``, builds the model, opens the tracking run
(one MLflow experiment per dataset, one run per variant) and calls :func:`pipeline.training.fit`.  The
run id goes to ``<out>/mlflow_run.json`` so the evaluate stage logs into the same run; ``--resume``
continues from ``<out>/checkpoint.pt`` in that same run, and ``--resume auto`` (dvc.yaml's command) does so
when the checkpoint is an unfinished run of the same settings and data (:mod:`pipeline.training.resume`).

Started by ``torchrun --nproc_per_node N -m stages.train ...`` it trains the run data-parallel across N
processes (see :mod:`pipeline.training.distributed`): rank 0 alone opens the MLflow run and writes files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.tracking.companion import stage_companion
from stages._common import option, stage_main

RUN_FILE = "mlflow_run.json"


def run(params_path: str, name: str, data: str, out: str, resume: bool | str = False) -> int:
    from pipeline import files
    from pipeline.config import flatten, load_params, to_plain
    from pipeline.evaluation.render import sample_renderer
    from pipeline.models import build_model
    from pipeline.runtime import resolve_device, set_seed
    from pipeline.tracking import run_tags
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.lifecycle import tracked_run
    from pipeline.training import Trainer, distributed
    from pipeline.training.resume import plan_resume, training_fingerprint
    from pipeline.vocab import Vocabulary

    # Everything a user can get wrong is checked before the tracking run opens: a typo leaves no FAILED run.
    params = load_params(params_path, required=("train",))
    settings = params.train.settings_for(name)
    device = resolve_device(settings.device)
    ctx = distributed.init_from_env(settings.device)  # a no-op unless started by torchrun
    cfg = params.train.runs[name]
    data_dir, out_dir = Path(data), Path(out)
    if ctx.is_main:
        files.ensure_writable_dir(out_dir, "--out")
    vocab = Vocabulary.load(data_dir / "vocab.json")
    train_ids, val_ids = (files.read_tokens(data_dir / f"{split}.npy") for split in ("train", "val"))
    set_seed(settings.seed)
    model = build_model(cfg.model, len(vocab))
    inputs = [data_dir / f for f in ("vocab.json", "train.npy", "val.npy")]
    render = sample_renderer(vocab, settings.sample.max_note_quarters)  # music: notes held too long are closed
    trainer = Trainer(model, train_ids, val_ids, settings, out_dir, render_samples=render,
                      char_level=vocab.meta.get("level") == "char",
                      fingerprint=training_fingerprint(settings, cfg.model, inputs))
    mode = "auto" if resume == "auto" else "required" if resume else "never"
    plan = plan_resume(out_dir, trainer.fingerprint, settings, mode, owner=ctx.is_main)
    if plan.note:
        print(plan.note, flush=True)
    if plan.resume:
        trainer.restore()
    previous = {"run_id": plan.run_id} if plan.resume else {}
    tags = run_tags(Path.cwd(), [data_dir / f for f in ("vocab.json", "train.npy", "val.npy")], device,
                    {"seqlab_run": name, "dataset": cfg.dataset, "variant": cfg.variant, "cell": cfg.model.cell})
    tracking = settings.tracking if ctx.is_main else "none"  # one MLflow run per job, kept by rank 0
    with tracked_run(open_tracker(tracking, cfg.dataset, cfg.variant, run_id=previous.get("run_id"), tags=tags,
                                  mode="continue")) as tracker:
        if not previous.get("run_id") and ctx.is_main:
            data_section = {**params.sections.get("tokenize", {}), **params.sections.get("encode_midi", {})}
            tracker.log_params({"run": name, "dataset": cfg.dataset, "variant": cfg.variant, **flatten(
                {"train": to_plain(settings), "model": to_plain(cfg.model),
                 "data": to_plain(data_section.get(cfg.dataset))})})
            tracker.log_artifact(data_dir / "vocab.json")
        if ctx.is_main:
            files.write_json(out_dir / RUN_FILE, _run_info(tracker, cfg.dataset, cfg.variant))
            # The model folder stands alone for sampling (seqlab sample): its vocabulary goes with it, byte for byte.
            files.write_bytes(out_dir / "vocab.json", (data_dir / "vocab.json").read_bytes())
        result = trainer.run(tracker)
    distributed.barrier()  # every rank leaves once rank 0 has written the outputs
    distributed.shutdown()
    if not ctx.is_main:
        return 0
    m = result.metrics
    print(f"train: {name}: {result.stop_reason} after {m['steps']} steps ({m['epochs']:g} epochs), best val loss "
          f"{m['val_loss']:.4f} (ppl {m['val_perplexity']:.2f}), {m['tokens_per_s']:,.0f} tokens/s, "
          f"{m['train_seconds']:.0f} s")
    return 0


def _run_info(tracker, experiment: str, run_name: str) -> dict:
    return {"run_id": tracker.run_id, "experiment": experiment, "run_name": run_name,
            "experiment_id": getattr(tracker, "experiment_id", None), "tracking_uri": getattr(tracker, "uri", None)}


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
               help="continue from <out>/checkpoint.pt in the same run; stop (exit 2) if it was trained with "
               "other settings or data. --resume auto (what dvc.yaml runs): continue an unfinished run of "
               "the same settings and data, else start fresh"),
        tracking=lambda a: stage_companion(a["params_path"], run=a["name"], models=True))


if __name__ == "__main__":
    sys.exit(main())
