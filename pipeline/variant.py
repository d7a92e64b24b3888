"""Training one run of params.yaml's ``train.runs``: ``data/tokens/<dataset>/`` -> ``models/<dataset>/<variant>/``.

:func:`train_variant` is the train stage's one call.  It reads the vocabulary and the token files, builds the model
and trains it (:class:`pipeline.training.loop.Trainer`) in the variant's tracking run: one MLflow experiment per
dataset, one run per variant, the run's params and vocabulary logged once.  The text of the sequences sampled at
each validation is logged; music is rendered by the evaluate stage.

A start that fails changes nothing.  Everything that can fail is checked before anything is removed or replaced:
the params, the device, no other training writing the same model folder, the data (every token id against the
vocabulary), the output and work folders, the checkpoint, and the tracking store (its run is opened first).
Checkpoints and the best model so far live in the run's work folder (:func:`pipeline.run_folder.work_folder`),
found again by the fingerprint of what shapes the weights, so ``--resume auto`` continues a killed training under
``dvc repro`` and ``dvc exp run`` alike (:func:`pipeline.training.checkpoints.plan_resume`).  The run folder gets
its files only when the run finishes, ``mlflow_run.json`` (the run the evaluate stage adds its figures to) and
``vocab.json`` last; the work folder is removed once the tracking run has ended FINISHED.

Under ``torchrun --nproc_per_node N`` the run trains data-parallel across N processes
(:mod:`pipeline.training.distributed`): rank 0 alone opens the MLflow run and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.config import ModelConfig, Params, TrainSettings, flatten, to_plain
from pipeline.models import build_model
from pipeline.run_folder import RunFolder, WorkFolder, work_folder
from pipeline.runtime import resolve_device, set_seed
from pipeline.tokenization import samples_text
from pipeline.tracking import Tracker, run_tags
from pipeline.tracking.factory import open_tracker, run_status
from pipeline.tracking.lifecycle import tracked_run
from pipeline.training import distributed
from pipeline.training.checkpoints import ResumePlan, plan_resume, training_fingerprint
from pipeline.training.loop import Trainer
from pipeline.training.state import FitResult
from pipeline.vocab import Vocabulary


def train_variant(params: Params, name: str, data_dir: str | Path, out_dir: str | Path,
                  resume: str = "never") -> FitResult | None:
    """Train run ``name`` of ``params.train.runs`` from ``data_dir`` into ``out_dir`` (see the module docstring).
    ``resume``: never, auto or required (see :func:`~pipeline.training.checkpoints.plan_resume`).  Returns the
    result on rank 0, None on the other ranks of a distributed job."""
    settings = params.train.settings_for(name)
    device = resolve_device(settings.device)
    ctx = distributed.init_from_env(settings.device)  # a no-op unless started by torchrun
    folder = RunFolder(out_dir)
    with folder.exclusive() if ctx.is_main else contextlib.nullcontext():
        start = _prepare(params, name, settings, Path(data_dir), folder, resume, ctx.is_main)
        result = _train(params, name, settings, start, device, ctx.is_main)
        if ctx.is_main:
            start.work.prune()  # the run ended FINISHED: nothing left to resume
    distributed.barrier()  # every rank leaves once rank 0 has written the outputs
    distributed.shutdown()
    return result if ctx.is_main else None


@dataclasses.dataclass
class _Start:
    """A training that passed every check but the tracking store's, and what it resumes from."""

    trainer: Trainer
    work: WorkFolder
    plan: ResumePlan
    inputs: list[Path]  # vocab.json, train.npy, val.npy


def _prepare(params: Params, name: str, settings: TrainSettings, data_dir: Path, folder: RunFolder, resume: str,
             main: bool) -> _Start:
    """Read and check the data, build the model and its trainer, plan the resume: nothing is written yet."""
    cfg = params.train.runs[name]
    inputs = [data_dir / f for f in ("vocab.json", "train.npy", "val.npy")]
    vocab = Vocabulary.load(inputs[0])
    train_ids, val_ids = (files.read_tokens(path, len(vocab)) for path in inputs[1:])
    set_seed(settings.seed)
    model = build_model(cfg.model, len(vocab))
    fingerprint = training_fingerprint(settings, cfg.model, inputs)
    work = work_folder(folder.path, fingerprint)
    if main:
        files.ensure_writable_dir(folder.path, "--out")
        work.prepare()
    trainer = Trainer(model, train_ids, val_ids, settings, folder.path,
                      decode_samples=lambda sequences: samples_text(vocab, sequences),
                      char_level=vocab.meta.get("level") == "char", fingerprint=fingerprint, work_dir=work.path)
    tracking = settings.tracking if main else "none"
    plan = plan_resume(work, fingerprint, settings, resume,
                       completed=lambda run_id: run_status(tracking, run_id) in (None, "FINISHED"))
    if plan.resume:
        trainer.restore()
    return _Start(trainer, work, plan, inputs)


def _train(params: Params, name: str, settings: TrainSettings, start: _Start, device: str, main: bool) -> FitResult:
    """Open the tracking run (the last check), then clear, train and hand the finished run's files over."""
    cfg = params.train.runs[name]
    plan, inputs = start.plan, start.inputs
    tags = run_tags(Path.cwd(), inputs, device,
                    {"seqlab_run": name, "dataset": cfg.dataset, "variant": cfg.variant, "cell": cfg.model.cell})
    continued = plan.run_id if plan.resume else None
    tracking = settings.tracking if main else "none"  # one MLflow run per job, kept by rank 0
    with tracked_run(open_tracker(tracking, cfg.dataset, cfg.variant, run_id=continued, tags=tags,
                                  mode="continue")) as tracker:
        if main:  # every check has passed: an earlier run's state may go, and the outputs be replaced
            if plan.note:
                print(plan.note, flush=True)
            if not plan.resume:
                start.work.clear()
            if not continued:
                tracker.log_params(_run_params(params, name, settings, cfg.model))
                tracker.log_artifact(inputs[0])
        result = start.trainer.run(tracker)
        if main:
            _hand_over(start.trainer.folder, tracker, cfg.dataset, cfg.variant, inputs[0])
    return result


def _run_params(params: Params, name: str, settings: TrainSettings, model: ModelConfig) -> dict[str, Any]:
    """The tracking run's params: the run's keys, its train settings and model, and its dataset's section."""
    cfg = params.train.runs[name]
    data = {**params.sections.get("tokenize", {}), **params.sections.get("encode_midi", {})}
    return {"run": name, "dataset": cfg.dataset, "variant": cfg.variant, **flatten(
        {"train": to_plain(settings), "model": to_plain(model), "data": to_plain(data.get(cfg.dataset))})}


def _hand_over(folder: RunFolder, tracker: Tracker, experiment: str, run_name: str, vocab: Path) -> None:
    """The last files of a finished run: its tracking run for the evaluate stage, and its vocabulary, byte for
    byte, so the folder stands alone for sampling (``seqlab sample``)."""
    folder.write_run({"run_id": tracker.run_id, "experiment": experiment, "run_name": run_name,
                      "experiment_id": getattr(tracker, "experiment_id", None),
                      "tracking_uri": getattr(tracker, "uri", None)})
    files.write_bytes(folder.vocab, vocab.read_bytes())
