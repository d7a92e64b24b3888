"""The training loop: :func:`fit` trains one model on one token split and validates on another.

One loop serves characters, words and notes: it sees only ids.  Per step it runs the model over a batch
(truncated BPTT over streams with the state carried and detached, or a padded record batch), backpropagates,
measures and clips the gradient, and steps the optimizer.  Everything per step stays on the device
(:mod:`.meter`); the host reads it back once per ``log_every_steps`` and hands it to the tracker, which
batches the writes.  Validation (every epoch, or every ``val_every_steps``) scores the whole validation split
with the state carried, drives the plateau schedule and early stopping, keeps the best model, and samples.

A NaN/Inf loss or gradient stops the run with :class:`TrainingDivergedError` naming the step; the tracker
run is marked FAILED with that reason and the last good checkpoint is left as it was.  On a CPU the check
happens before the optimizer step, every step (reading a CPU tensor costs nothing); on a GPU it happens at
each logging interval and checkpoint, so a checkpoint never holds non-finite weights either way.

``resume=True`` continues from ``checkpoint.pt`` exactly: weights, optimizer, schedule, RNG states, data
position and carried state are restored, so on a CPU an interrupted-then-resumed run ends with the same
weights and metrics as an uninterrupted one.

Under ``torchrun`` (several processes, see :mod:`.distributed`) each rank trains on its share of every batch
through a DDP wrapper (``self.train_model``) that averages gradients; only rank 0 writes files and tracks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.config import TrainSettings, to_plain
from pipeline.evaluation.loss import batch_loss, directions, evaluate_split
from pipeline.runtime import resolve_device
from pipeline.tracking import NullTracker, Tracker
from pipeline.tracking.lifecycle import end_run
from pipeline.training import checkpoints as ckpt
from pipeline.training import distributed
from pipeline.training.batching import DataTooSmallError, TrainBatches
from pipeline.training.devices import autocast, autocast_dtype, choose_threads, step_timer
from pipeline.training.meter import StepMeter
from pipeline.training.optim import build_optimizer, build_scheduler, clip_gradients, layer_grad_norms
from pipeline.training.outputs import output_path
from pipeline.training.progress import Progress, progress_enabled
from pipeline.training.reporting import Reporter
from pipeline.training.state import FitResult, LoopState, TrainingDivergedError, stop_rule_met

SampleRenderer = Callable[[list[list[int]], Path], list[Path]]


def fit(model: nn.Module, train_ids: np.ndarray, val_ids: np.ndarray, settings: TrainSettings,
        out_dir: str | Path, *, tracker: Tracker | None = None, resume: bool = False,
        render_samples: SampleRenderer | None = None, char_level: bool = False) -> FitResult:
    """Train ``model`` on ``train_ids``, validate on ``val_ids``; outputs go to ``out_dir`` (see :mod:`.outputs`).

    ``render_samples(sequences, folder)`` turns sampled ids into files (text, MIDI, PNG) to log at every
    validation; ``char_level`` adds bits per character (``val_bpc``) to the validation figures.
    """
    trainer = Trainer(model, train_ids, val_ids, settings, Path(out_dir), render_samples, char_level)
    if resume:
        trainer.restore()
    return trainer.run(tracker or NullTracker())


class Trainer:
    """One training run.  Building it checks the data and settings and :meth:`restore` checks the checkpoint,
    both before :meth:`run` is given a tracker: a stage opens its tracking run only once the inputs are good.
    """

    def __init__(self, model: nn.Module, train_ids: np.ndarray, val_ids: np.ndarray, s: TrainSettings,
                 out_dir: Path, render_samples: SampleRenderer | None = None, char_level: bool = False,
                 fingerprint: Mapping[str, str] | None = None) -> None:
        self.s, self.out_dir = s, out_dir
        self.fingerprint = dict(fingerprint or {})  # what shaped this run (see .resume); in every checkpoint
        self.dist = distributed.context()  # rank 0 of 1 unless started by torchrun
        self.device = torch.device(distributed.device_for(self.dist, resolve_device(s.device)))
        self.model = model.to(self.device).train()
        if len(val_ids) < 2:
            raise DataTooSmallError("the validation split is empty: give the dataset a val share (split.val > 0)")
        self.val_ids = val_ids
        distributed.local_batch_size(s.batch_size, self.dist)  # the global batch must split evenly
        self.batches = TrainBatches(train_ids, s.batching, s.batch_size, s.bptt, s.seed,
                                    pin_memory=self.device.type == "cuda", rank=self.dist.rank,
                                    world_size=self.dist.world_size)
        self.train_model = distributed.wrap(self.model, self.dist, self.device)  # the model itself on one process
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, s)
        epochs_steps = s.epochs * len(self.batches)
        self.total_steps = min(epochs_steps, s.max_steps) if s.max_steps else epochs_steps
        self.scheduler = build_scheduler(self.optimizer, s)
        self.amp = autocast_dtype(self.device, s.precision)
        self.directions = directions(self.model)
        self.meter = StepMeter(s.log_every_steps, len(self.directions), s.clip, s.clip_threshold)
        self.loop = LoopState(sums=[0.0] * len(self.directions), counts=[0] * len(self.directions))
        self.reporter = Reporter(self, NullTracker(), render_samples, char_level)
        self.carried: Any = None
        self._rng: dict[str, Any] | None = None  # RNG states of a restored checkpoint, restored when the run starts

    # ------------------------------------------------------------------ the run

    def restore(self) -> bool:
        """Load ``checkpoint.pt`` if there is one (call before :meth:`run`); False when there is none."""
        self._rng = self._restore()
        return self._rng is not None

    def run(self, tracker: Tracker | None = None) -> FitResult:
        """Train until a stop rule; the tracker's run ends with the training, however it ends."""
        if tracker is not None:
            self.reporter.tracker = tracker
        rng = self._rng
        if not rng:
            self.loop.threads = choose_threads(self.s.threads, self.device, self._probe)
        else:
            choose_threads(self.loop.threads, self.device)
        self.loop.run_id = self.reporter.tracker.run_id
        if rng:  # last, so that nothing above draws from the restored generators
            ckpt.restore_rng(rng)
        distributed.seed_per_rank(self.s.seed, self.loop.step, self.dist)
        self.progress = Progress(self.total_steps, self.loop.step,
                                 progress_enabled(self.s.progress) and self.dist.is_main,
                                 description=self.out_dir.name)
        try:
            stop = self._epochs()
            return self.reporter.finish(stop)
        except BaseException as e:  # FAILED, or KILLED for Ctrl-C/SIGTERM; the last checkpoint stays as it was
            end_run(self.reporter.tracker, e)
            raise
        finally:
            self.progress.close()

    def _epochs(self) -> str:
        stop = stop_rule_met(vars(self.loop), self.s)  # a resumed run that already stopped takes no further step
        if stop in ("max_steps", "time_budget") and self.loop.last_val_step != self.loop.step:
            stop = self._validate() or stop  # its checkpoint was written just before the final validation
        while not stop and self.loop.epoch < self.s.epochs:
            stop = self._epoch()
        return stop or "completed"

    def _epoch(self) -> str | None:
        state = self.carried if self.loop.position else None  # a stream restarts at every epoch
        self.reporter.start_timer()
        for batch in self.batches.epoch(self.loop.epoch, start=self.loop.position):
            state = self._step(batch, state)
            self.loop.position += 1
            stop = self._after_step(state)
            if stop:
                return stop
        self._log_interval()
        stop = self._validate() if self.s.val_every_steps == 0 else None
        self.loop.epoch, self.loop.position = self.loop.epoch + 1, 0
        self._save_checkpoint(None)
        return stop

    def _step(self, batch, state):
        """One optimizer step; returns the detached state to carry (None for records)."""
        batch = batch.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            loss = batch_loss(self.train_model, batch, state)
        self.optimizer.zero_grad(set_to_none=True)
        loss.objective.backward()
        step = self.loop.step + 1
        if step % self.s.layer_norms_every_steps == 0:
            self.meter.record_layer_norms(step, *layer_grad_norms(self.model))
        clip = clip_gradients(self.params, self.s.clip, self.s.clip_threshold)
        self.meter.record(step, loss, clip)
        if self.device.type == "cpu" and not self.meter.last_is_finite():
            self._diverged(step)  # before the update: the weights in memory stay good too
        self.optimizer.step()
        self.loop.step = step
        if self.s.schedule != "plateau":
            self.scheduler.step(step, self._progress())
        return self.model.detach_state(loss.state) if self.batches.carries_state else None

    def _after_step(self, state) -> str | None:
        step, stop = self.loop.step, None
        if self.meter.full:
            self._log_interval()
        if self.s.val_every_steps and step % self.s.val_every_steps == 0:
            stop = self._validate()
        if step % self.s.checkpoint_every_steps == 0:
            self._save_checkpoint(state)
        if self.s.max_steps and step >= self.s.max_steps:
            stop = stop or "max_steps"
        if self.s.time_budget_s and self.reporter.elapsed() >= self.s.time_budget_s:
            stop = stop or "time_budget"
        if stop and self.loop.last_val_step != step:
            stop = self._validate() or stop
        return stop

    # ------------------------------------------------------------------ periodic work

    def _diverged(self, bad: int) -> None:
        raise TrainingDivergedError.at_step(bad, output_path(self.out_dir, "checkpoint"))

    def _log_interval(self) -> None:
        if len(self.meter):
            interval = self.meter.drain()  # on a GPU, this is where a NaN/Inf step is found
            if interval.first_bad is not None:
                self._diverged(interval.first_bad)
            self.reporter.log_interval(interval)

    def _validate(self) -> str | None:
        self._log_interval()
        with autocast(self.device, self.amp):
            figures = evaluate_split(self.model, self.val_ids, mode=self.s.batching, batch_size=self.s.eval_batch_size,
                                     bptt=self.s.eval_bptt, device=self.device)
        val_loss = figures["loss"]
        if self.s.schedule == "plateau":
            self.scheduler.step(val_loss)
        improved = val_loss < self.loop.best_val_loss
        if improved:
            self.loop.best_val_loss, self.loop.best_step, self.loop.bad_validations = val_loss, self.loop.step, 0
            if self.dist.is_main:
                ckpt.save_best_model(output_path(self.out_dir, "model"), self.model, step=self.loop.step,
                                     epoch=self.epoch_progress, val_loss=val_loss)
        else:
            self.loop.bad_validations += 1
        self.loop.last_val_step = self.loop.step
        self.reporter.log_validation(figures, improved)
        patience = self.s.early_stopping_patience
        return "early_stopping" if patience and self.loop.bad_validations >= patience else None

    def _save_checkpoint(self, state) -> None:
        self._log_interval()  # drains and checks the meter; a resumed run starts a fresh interval here too
        if not self.dist.is_main:
            self.reporter.start_timer()
            return
        if self.dist.enabled:
            state = None  # rank 0 holds only its own streams' state: a resumed DDP run restarts the state
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "carried_state": ckpt.to_cpu(state),
            "loop": dataclasses.asdict(self.loop),
            "settings": to_plain(self.s),
            "fingerprint": self.fingerprint,
        }
        ckpt.save_training_checkpoint(output_path(self.out_dir, "checkpoint"), self.model, training)
        self.reporter.start_timer()

    def _restore(self) -> dict[str, Any] | None:
        """Load ``checkpoint.pt`` if there is one; return its RNG states (restored last, by :meth:`run`)."""
        path = output_path(self.out_dir, "checkpoint")
        if not path.exists():
            print(f"seqlab: no checkpoint at {path}; starting from scratch", flush=True)
            return None
        payload = ckpt.load_training_checkpoint(path)
        try:
            self.model.load_state_dict(payload["model_state"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload["scheduler"] is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            self.loop = LoopState(**payload["loop"])
            self.carried = ckpt.to_device(payload["carried_state"], self.device)
            return payload["rng"]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # another shape, optimizer or seqlab version
            reason = (str(e).replace("\n", " ").replace("\t", "") or type(e).__name__)[:200]
            raise ckpt.ResumeMismatchError(
                f"{path}: the checkpoint does not fit the current model and train settings ({reason}); "
                f"restore the settings it was trained with, or delete it to start from scratch") from e

    def _probe(self):
        """Seconds per training step on a throwaway copy of the model, for the thread-count choice."""
        batch = next(self.batches.epoch(0))

        def one_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
            loss = batch_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.objective.backward()
            optimizer.step()

        return step_timer(self.model, lambda m: build_optimizer(m, self.s), one_step)

    def _progress(self) -> float:
        """How far the run is, 0..1: steps over the planned total, or the time budget spent if further along."""
        progress = self.loop.step / max(self.total_steps, 1)
        if self.s.time_budget_s:
            progress = max(progress, self.reporter.elapsed() / self.s.time_budget_s)
        return progress

    @property
    def epoch_progress(self) -> float:
        """Epochs done, fractional mid-epoch (the x axis of the per-validation series)."""
        return round(self.loop.epoch + self.loop.position / max(len(self.batches), 1), 4)
