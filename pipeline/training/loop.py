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
weights and metrics as an uninterrupted one.  On a GPU, the dropout between the layers of a fused cuDNN stack
draws from a generator inside cuDNN's own state, which a checkpoint cannot hold; the loop reseeds it from
torch's CUDA generator before every step (:func:`~pipeline.training.devices.reseed_cudnn_dropout`), so that
those masks follow the checkpointed generator too.

Under ``torchrun`` (several processes, see :mod:`.distributed`) each rank trains on its share of every batch
through a DDP wrapper (``self.train_model``) that averages gradients; only rank 0 writes files and tracks.

``fraction_done`` (0..1) is how far the run is, ``epochs_done`` the epochs.  The clock is injected
(:class:`~.state.TrainingTimer`); the :class:`~.reporting.Reporter` receives rows and sampled text, never the loop.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.config import TrainSettings, to_plain
from pipeline.errors import SeqlabWarning
from pipeline.models import count_parameters
from pipeline.models.objective import directions
from pipeline.models.sampling import sample
from pipeline.models.scoring import evaluate_split
from pipeline.run_folder import RunFolder, WorkFolder
from pipeline.runtime import resolve_device
from pipeline.tracking import NullTracker, Tracker
from pipeline.tracking.lifecycle import end_run
from pipeline.training import checkpoints as ckpt
from pipeline.training import devices, distributed
from pipeline.training.batching import DataTooSmallError, TrainBatches
from pipeline.training.meter import StepMeter
from pipeline.training.optim import build_optimizer, build_scheduler, current_lr
from pipeline.training.outputs import write_outputs
from pipeline.training.reporting import ProgressBar, Reporter, SampleDecoder, progress_bar_enabled
from pipeline.training.state import Clock, FitResult, LoopState, TrainingDivergedError, TrainingTimer, stop_rule_met
from pipeline.training.step import train_step


def fit(model: nn.Module, train_ids: np.ndarray, val_ids: np.ndarray, settings: TrainSettings, out_dir: str | Path,
        *, tracker: Tracker | None = None, resume: bool = False, decode_samples: SampleDecoder | None = None,
        char_level: bool = False, clock: Clock = time.perf_counter) -> FitResult:
    """Train ``model`` on ``train_ids``, validate on ``val_ids``; outputs go to ``out_dir`` (a
    :class:`~pipeline.run_folder.RunFolder`), and so do the checkpoint and the best model so far.

    ``decode_samples(sequences)`` turns the ids sampled at every validation into the text logged for them
    (None: no samples); ``char_level`` adds bits per character (``val_bpc``) to the validation figures;
    ``clock`` is the time source of ``train_seconds`` and the time budget.
    """
    trainer = Trainer(model, train_ids, val_ids, settings, Path(out_dir), decode_samples, char_level, clock=clock)
    if resume and not trainer.restore():
        warnings.warn(f"no checkpoint at {trainer.work.checkpoint}; starting from scratch",
                      SeqlabWarning, stacklevel=2)
    return trainer.run(tracker or NullTracker())


class Trainer:
    """One training run.  Building it checks the data and settings and :meth:`restore` checks the checkpoint,
    both before :meth:`run` is given a tracker: a stage opens its tracking run only once the inputs are good.
    Checkpoints and the best model so far go to ``work_dir`` (default ``out_dir``), the outputs as the run ends."""

    def __init__(self, model: nn.Module, train_ids: np.ndarray, val_ids: np.ndarray, settings: TrainSettings,
                 out_dir: Path, decode_samples: SampleDecoder | None = None, char_level: bool = False,
                 fingerprint: Mapping[str, str] | None = None, clock: Clock = time.perf_counter,
                 work_dir: Path | None = None) -> None:
        self.settings = settings
        self.folder, self.work = RunFolder(out_dir), WorkFolder(work_dir or out_dir)
        self.decode_samples, self.char_level = decode_samples, char_level
        self.fingerprint = dict(fingerprint or {})  # what shaped this run (see .checkpoints); in every checkpoint
        self.dist = distributed.context()  # rank 0 of 1 unless started by torchrun
        self.device = torch.device(distributed.device_for(self.dist, resolve_device(settings.device)))
        self.model = model.to(self.device).train()
        if len(val_ids) < 2:
            raise DataTooSmallError("the validation split is empty: give the dataset a val share (split.val > 0)")
        self.val_ids = val_ids
        distributed.local_batch_size(settings.batch_size, self.dist)  # the global batch must split evenly
        self.batches = TrainBatches(train_ids, settings.batching, settings.batch_size, settings.bptt, settings.seed,
                                    pin_memory=self.device.type == "cuda", rank=self.dist.rank,
                                    world_size=self.dist.world_size)
        self.train_model = distributed.wrap(self.model, self.dist, self.device)  # the model itself on one process
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, settings)
        epochs_steps = settings.epochs * len(self.batches)
        self.total_steps = min(epochs_steps, settings.max_steps) if settings.max_steps else epochs_steps
        self.scheduler = build_scheduler(self.optimizer, settings)
        self.amp = devices.autocast_dtype(self.device, settings.precision)
        self.directions = directions(self.model)
        self.reseed_dropout = devices.draws_dropout_in_cudnn(self.model, self.device)
        self.meter = StepMeter(settings.log_every_steps, len(self.directions), settings.clip, settings.clip_threshold)
        self.loop = LoopState(sums=[0.0] * len(self.directions), counts=[0] * len(self.directions))
        self.timer = TrainingTimer(clock)  # training time only: restarted after validations and checkpoints
        self.carried: Any = None
        self._rng: dict[str, Any] | None = None  # RNG states of a restored checkpoint, restored when the run starts

    # ------------------------------------------------------------------ the run

    def restore(self) -> bool:
        """Load ``checkpoint.pt`` if there is one (call before :meth:`run`); False when there is none.
        Its RNG states are restored when the run starts."""
        path = self.work.checkpoint
        if not path.exists():
            return False
        self.loop, self.carried, self._rng = ckpt.restore_training_checkpoint(path, self.model, self.optimizer,
                                                                              self.scheduler, self.device)
        return True

    def run(self, tracker: Tracker | None = None) -> FitResult:
        """Train until a stop rule; the tracker's run ends with the training, however it ends."""
        tracker = tracker if tracker is not None else NullTracker()
        rng = self._rng
        if not rng:
            self.loop.threads = devices.choose_threads(self.settings.threads, self.device,
                                                       devices.thread_plan(self.model, self.settings.batch_size))
        else:
            devices.choose_threads(self.loop.threads, self.device)
        self.loop.run_id = tracker.run_id
        if rng:  # last, so that nothing above draws from the restored generators
            ckpt.restore_rng(rng)
        distributed.seed_per_rank(self.settings.seed, self.loop.step, self.dist)
        progress_bar = ProgressBar(self.total_steps, self.loop.step,
                                   progress_bar_enabled(self.settings.progress) and self.dist.is_main,
                                   description=self.folder.path.name)
        self.reporter = Reporter(tracker, progress_bar, self.directions, self.timer.clock,
                                 decode_samples=self.decode_samples, run_name=self.folder.path.name)
        try:
            return self._finish(self._epochs())
        except BaseException as e:  # FAILED, or KILLED for Ctrl-C/SIGTERM; the last checkpoint stays as it was
            end_run(tracker, e)
            raise
        finally:
            self.reporter.close()

    def _epochs(self) -> str:
        stop = stop_rule_met(vars(self.loop), self.settings)  # a resumed run that already stopped takes no step
        if stop in ("max_steps", "time_budget") and self.loop.last_val_step != self.loop.step:
            stop = self._validate() or stop  # its checkpoint was written just before the final validation
        while not stop and self.loop.epoch < self.settings.epochs:
            stop = self._epoch()
        return stop or "completed"

    def _epoch(self) -> str | None:
        carried = self.carried if self.loop.position else None  # a stream restarts at every epoch
        self.timer.restart()
        for batch in self.batches.epoch(self.loop.epoch, start=self.loop.position):
            carried = self._step(batch, carried)
            self.loop.position += 1
            stop = self._after_step(carried)
            if stop:
                return stop
        self._log_interval()
        stop = self._validate() if self.settings.val_every_steps == 0 else None
        self.loop.epoch, self.loop.position = self.loop.epoch + 1, 0
        self._save_checkpoint(None)
        return stop

    def _step(self, batch, carried):
        """One optimizer step; returns the detached state to carry (None for records)."""
        settings, step = self.settings, self.loop.step + 1
        measure_layers = step % settings.layer_norms_every_steps == 0
        if self.reseed_dropout:  # cuDNN's own dropout generator: reseeded per step, so that resume is exact
            devices.reseed_cudnn_dropout(self.device)
        result = train_step(self.train_model, self.optimizer, batch.to(self.device, non_blocking=True), carried,
                            params=self.params, clip=settings.clip, clip_threshold=settings.clip_threshold,
                            amp=self.amp, check_finite=self.device.type == "cpu",  # a GPU: at each interval
                            layer_norms_of=self.model if measure_layers else None)
        if result.layer_norms is not None:
            self.meter.record_layer_norms(step, *result.layer_norms)
        self.meter.record(step, result.loss, result.clip)
        if not result.updated:
            self._diverged(step)
        self.loop.step = step
        if settings.schedule != "plateau":
            self.scheduler.step(step, self._fraction_done())
        return self.model.detach_state(result.loss.state) if self.batches.carries_state else None

    def _after_step(self, carried) -> str | None:
        step, stop, settings = self.loop.step, None, self.settings
        if self.meter.full:
            self._log_interval()
        if settings.val_every_steps and step % settings.val_every_steps == 0:
            stop = self._validate()
        if step % settings.checkpoint_every_steps == 0:
            self._save_checkpoint(carried)
        if settings.max_steps and step >= settings.max_steps:
            stop = stop or "max_steps"
        if settings.time_budget_s and self._train_seconds() >= settings.time_budget_s:
            stop = stop or "time_budget"
        if stop and self.loop.last_val_step != step:
            stop = self._validate() or stop
        return stop

    def _finish(self, stop: str) -> FitResult:
        """Write the outputs from the best model and end the tracker run (both on rank 0 only)."""
        self.reporter.close()
        if self.dist.is_main:  # the run's result is the best model by validation loss, not the last step
            ckpt.restore_best_model(self.model, self.work.best_model, self.device)
        metrics = self.loop.final_metrics(stop, self.epochs_done, count_parameters(self.model))
        if not self.dist.is_main:  # DDP: rank 0 writes and tracks the result (see pipeline.training.distributed)
            return FitResult(metrics, stop, self.folder.path, None)
        clip = self.settings.clip_threshold if self.settings.clip == "norm" else None
        self.reporter.log_model(self.model)
        files = write_outputs(self.folder, metrics, self.loop.epochs, self.loop.intervals, clip, self.work.best_model)
        self.reporter.log_result(files, stop)
        return FitResult(metrics, stop, self.folder.path, self.reporter.run_id)

    # ------------------------------------------------------------------ periodic work

    def _diverged(self, bad: int) -> None:
        raise TrainingDivergedError.at_step(bad, self.work.checkpoint)

    def _log_interval(self) -> None:
        if len(self.meter):
            interval = self.meter.drain()  # on a GPU, this is where a NaN/Inf step is found
            if interval.first_bad is not None:
                self._diverged(interval.first_bad)
            seconds = self.timer.lap()  # the tracker calls below count in the next interval
            row = self.loop.record_interval(interval, seconds, self.epochs_done, current_lr(self.optimizer))
            self.loop.tracking_seconds += self.reporter.log_interval(interval, row)

    def _validate(self) -> str | None:
        self._log_interval()
        settings = self.settings
        with devices.autocast(self.device, self.amp):
            figures = evaluate_split(self.model, self.val_ids, mode=settings.batching, batch_size=settings.eval_batch_size,
                                     bptt=settings.eval_bptt, device=self.device, sample_tokens=settings.val_tokens, seed=settings.seed)
        if settings.schedule == "plateau":
            self.scheduler.step(figures["loss"])
        row, improved = self.loop.record_validation(figures, self.directions, self.epochs_done,
                                                    current_lr(self.optimizer), self.char_level)
        if improved and self.dist.is_main:
            ckpt.save_best_model(self.work.best_model, self.model, step=self.loop.step,
                                 epoch=self.epochs_done, val_loss=figures["loss"])
        self.loop.tracking_seconds += self.reporter.log_validation(row, improved, self._samples())
        self.timer.restart()
        patience = settings.early_stopping_patience
        return "early_stopping" if patience and self.loop.bad_validations >= patience else None

    def _samples(self) -> list[list[int]]:
        """Sequences to log at a validation: none without a decoder, or from a model that sees the future."""
        cfg = self.settings.sample
        if self.decode_samples is None or cfg.n == 0 or not getattr(self.model, "causal", True):
            return []
        return sample(self.model, n=cfg.n, max_length=cfg.max_length, temperature=cfg.temperature, top_k=cfg.top_k,
                      top_p=cfg.top_p, seed=self.settings.seed + self.loop.step, device=self.device)

    def _save_checkpoint(self, carried) -> None:
        self._log_interval()  # drains and checks the meter; a resumed run starts a fresh interval here too
        if not self.dist.is_main:
            self.timer.restart()
            return
        if self.dist.enabled:
            carried = None  # rank 0 holds only its own streams' state: a resumed DDP run restarts the state
        training = {"optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                    "carried_state": ckpt.to_cpu(carried), "loop": dataclasses.asdict(self.loop),
                    "settings": to_plain(self.settings), "fingerprint": self.fingerprint}
        ckpt.save_training_checkpoint(self.work.checkpoint, self.model, training)
        self.timer.restart()

    # ------------------------------------------------------------------ where the run is

    def _train_seconds(self) -> float:
        """Seconds of training so far (validation, checkpoints and sampling excluded), up to now."""
        return self.loop.train_seconds + self.timer.running()

    def _fraction_done(self) -> float:
        """How far the run is, 0..1: steps over the planned total, or the time budget spent if further along."""
        done = self.loop.step / max(self.total_steps, 1)
        if self.settings.time_budget_s:
            done = max(done, self._train_seconds() / self.settings.time_budget_s)
        return done

    @property
    def epochs_done(self) -> float:
        """Epochs done, fractional mid-epoch (the x axis of the per-validation series)."""
        return round(self.loop.epoch + self.loop.position / max(len(self.batches), 1), 4)
