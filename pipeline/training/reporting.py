"""Turning the loop's figures into tracker metrics, progress lines, samples and the final outputs.

Metric names (all logged with ``step=``, the optimizer step):

* every step: ``grad_norm`` (global L2 norm before clipping), ``grad_norm_clipped`` (after), ``clipped`` (0/1);
* every logging interval: ``train_loss`` (mean NLL per token over the interval), ``train_perplexity``,
  ``clip_rate``, ``lr``, ``tokens_per_s``; ``train_forward_loss`` / ``train_backward_loss`` for
  bidirectional models; every ``layer_norms_every_steps``: ``grad_norm/<parameter name>``;
* every validation: ``val_loss``, ``val_perplexity``, ``val_bits_per_token`` (``val_bpc`` too for
  character-level data), per direction for bidirectional models, ``epoch``, and ``train_seconds`` (training
  time so far, validation excluded: the x axis of a loss-against-time curve).
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.evaluation.loss import summarize
from pipeline.models import count_parameters
from pipeline.models.checkpoint import load_checkpoint
from pipeline.training.meter import Interval, finite_mean
from pipeline.training.optim import current_lr
from pipeline.training.outputs import model_code_paths, model_requirements, output_path, write_outputs

if TYPE_CHECKING:
    from pipeline.tracking import Tracker
    from pipeline.training.loop import FitResult, SampleRenderer, Trainer


class Reporter:
    def __init__(self, trainer: Trainer, tracker: Tracker, render_samples: SampleRenderer | None,
                 char_level: bool) -> None:
        self.t, self.tracker, self.render, self.char_level = trainer, tracker, render_samples, char_level
        self._since = time.perf_counter()

    def start_timer(self) -> None:
        """Start timing training work; time spent validating or checkpointing is not training time."""
        self._since = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far (validation, checkpoints and sampling excluded), up to now."""
        return self.t.loop.train_seconds + time.perf_counter() - self._since

    def _track(self, method: str, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        getattr(self.tracker, method)(*args, **kwargs)
        self.t.loop.tracking_seconds += time.perf_counter() - start

    # ------------------------------------------------------------------ during the run

    def log_interval(self, interval: Interval) -> None:
        now = time.perf_counter()
        seconds, self._since = max(now - self._since, 1e-9), now  # tracking below counts in the next interval
        loop = self.t.loop
        loop.train_seconds += seconds
        loop.tokens += interval.counts[0]
        loop.sums = [a + b for a, b in zip(loop.sums, interval.loss_sums, strict=True)]
        loop.counts = [a + b for a, b in zip(loop.counts, interval.counts, strict=True)]
        step, tokens_per_s = interval.steps[-1], interval.counts[0] / seconds
        row = {"step": step, "epoch": self.t.epoch_progress, "train_loss": interval.loss,
               "grad_norm_mean": finite_mean(interval.grad_norm), "grad_norm_max": max(interval.grad_norm),
               "grad_norm_clipped_mean": finite_mean(interval.grad_norm_clipped),
               "clip_rate": sum(interval.clipped) / len(interval.clipped), "lr": current_lr(self.t.optimizer),
               "tokens_per_s": tokens_per_s}
        loop.intervals.append(row)
        for i, s in enumerate(interval.steps):
            self._track("log_metrics", {"grad_norm": interval.grad_norm[i], "grad_norm_clipped":
                                        interval.grad_norm_clipped[i], "clipped": interval.clipped[i]}, step=s)
        summary = {"train_loss": interval.loss, "train_perplexity": _exp(interval.loss), "clip_rate": row["clip_rate"],
                   "lr": row["lr"], "tokens_per_s": tokens_per_s}
        if len(self.t.directions) > 1:
            for name, mean in zip(self.t.directions, interval.mean_losses, strict=True):
                summary[f"train_{name}_loss"] = mean
        self._track("log_metrics", summary, step=step)
        for s, norms in interval.layer_norms:
            self._track("log_metrics", {f"grad_norm/{name}": value for name, value in norms.items()}, step=s)
        self.t.progress.update(len(interval.steps), interval.loss, tokens_per_s)

    def log_validation(self, figures: dict[str, float], improved: bool) -> None:
        loop, step = self.t.loop, self.t.loop.step
        val = {f"val_{k}": v for k, v in figures.items() if k != "tokens"}
        if self.char_level:
            val["val_bpc"] = figures["bits_per_token"]
        train = summarize(loop.sums, loop.counts, self.t.directions) if loop.counts[0] else {"loss": math.nan}
        row = {"epoch": self.t.epoch_progress, "step": step, "train_loss": train["loss"],
               "train_perplexity": _exp(train["loss"]), **val, "lr": current_lr(self.t.optimizer),
               "train_seconds": round(loop.train_seconds, 3)}
        loop.epochs.append(row)
        loop.sums, loop.counts = [0.0] * len(loop.sums), [0] * len(loop.counts)
        self._track("log_metrics", {**val, "epoch": row["epoch"], "train_seconds": row["train_seconds"]}, step=step)
        self._track("flush")
        self._log_samples(step)
        mark = " (best)" if improved else ""
        self.t.progress.note(f"{self.t.out_dir.name}: epoch {row['epoch']:g} step {step}: train loss "
                             f"{row['train_loss']:.4f}, val loss {figures['loss']:.4f}, "
                             f"val ppl {figures['perplexity']:.2f}{mark}")
        self.start_timer()

    def _log_samples(self, step: int) -> None:
        cfg, model = self.t.s.sample, self.t.model
        if self.render is None or cfg.n == 0 or not getattr(model, "causal", True):
            return
        from pipeline.models.sampling import sample

        sequences = sample(model, n=cfg.n, max_length=cfg.max_length, temperature=cfg.temperature, top_k=cfg.top_k,
                           top_p=cfg.top_p, seed=self.t.s.seed + step, device=self.t.device)
        with tempfile.TemporaryDirectory() as folder:
            for path in self.render(sequences, Path(folder)):
                self._track("log_artifact", path, f"samples/step_{step:07d}")

    # ------------------------------------------------------------------ the end

    def finish(self, stop: str) -> FitResult:
        from pipeline.training.loop import FitResult

        self.t.progress.close()
        if not self.t.dist.is_main:  # DDP: rank 0 writes and tracks the result (see pipeline.training.distributed)
            return FitResult(self.final_metrics(stop), stop, self.t.out_dir, None)
        best = output_path(self.t.out_dir, "model")
        if best.exists():  # the run's result is the best model by validation loss, not the last step
            self.t.model.load_state_dict(load_checkpoint(best, map_location=self.t.device)["model_state"])
        metrics = self.final_metrics(stop)
        clip = self.t.s.clip_threshold if self.t.s.clip == "norm" else None
        files = write_outputs(self.t.out_dir, metrics, self.t.loop.epochs, self.t.loop.intervals, clip)
        for path in files:
            self.tracker.log_artifact(path)
        cpu_model = copy.deepcopy(self.t.model).cpu().eval()
        self.tracker.log_model(cpu_model, "model", pip_requirements=model_requirements(),
                               code_paths=model_code_paths())
        self.tracker.set_tags({"stop_reason": stop})
        self.tracker.finish("FINISHED")
        return FitResult(metrics, stop, self.t.out_dir, self.tracker.run_id)

    def final_metrics(self, stop: str) -> dict[str, Any]:
        loop = self.t.loop
        best = next((r for r in loop.epochs if r["step"] == loop.best_step), loop.epochs[-1] if loop.epochs else {})
        metrics = {k: v for k, v in best.items() if k.startswith("val_")}
        last = loop.intervals[-1] if loop.intervals else {}
        metrics.update(
            best_step=loop.best_step, best_epoch=best.get("epoch", 0.0), steps=loop.step,
            epochs=self.t.epoch_progress, early_stopped=int(stop == "early_stopping"),
            train_loss=loop.epochs[-1]["train_loss"] if loop.epochs else math.nan,
            grad_norm_final=last.get("grad_norm_mean", math.nan),
            clip_rate=finite_mean([r["clip_rate"] for r in loop.intervals]),
            parameters=count_parameters(self.t.model), threads=loop.threads,
            train_seconds=round(loop.train_seconds, 3),
            tokens_per_s=round(loop.tokens / loop.train_seconds, 1) if loop.train_seconds else 0.0,
            tracking_seconds=round(loop.tracking_seconds, 3),
            tracking_share=round(loop.tracking_seconds / loop.train_seconds, 5) if loop.train_seconds else 0.0,
        )
        return metrics


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
