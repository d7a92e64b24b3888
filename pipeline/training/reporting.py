"""Where the loop's figures go: tracker metrics, the progress bar, sample files and the final artifacts.

:class:`Reporter` is a sink: the loop hands it values (a logging interval and its row, a validation row,
sampled sequences, the finished run's files and model) and it never sees the loop or its state.  Each
``log_*`` method returns the seconds it spent in tracker calls, which the loop keeps in ``tracking_seconds``.

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
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.tracking import Tracker
from pipeline.training.meter import Interval, perplexity
from pipeline.training.outputs import model_code_paths, model_requirements
from pipeline.training.progress_bar import ProgressBar
from pipeline.training.timer import Clock

SampleRenderer = Callable[[list[list[int]], Path], list[Path]]


class Reporter:
    """Sends one run's figures to ``tracker`` and ``progress_bar``; times its tracker calls with ``clock``."""

    def __init__(self, tracker: Tracker, progress_bar: ProgressBar, directions: Sequence[str], clock: Clock, *,
                 render_samples: SampleRenderer | None = None, run_name: str = "train") -> None:
        self.tracker, self.progress_bar, self.directions, self.clock = tracker, progress_bar, directions, clock
        self.render_samples, self.run_name = render_samples, run_name
        self._tracking_seconds = 0.0

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    def _track(self, method: str, *args: Any, **kwargs: Any) -> None:
        start = self.clock()
        getattr(self.tracker, method)(*args, **kwargs)
        self._tracking_seconds += self.clock() - start

    def _tracked_seconds(self) -> float:
        """Tracker seconds since the previous call."""
        seconds, self._tracking_seconds = self._tracking_seconds, 0.0
        return seconds

    # ------------------------------------------------------------------ during the run

    def log_interval(self, interval: Interval, row: dict[str, Any]) -> float:
        """Per-step gradient norms, the interval's summary (``row``: its ``grad_norms.csv`` row), layer norms."""
        for i, step in enumerate(interval.steps):
            self._track("log_metrics", {"grad_norm": interval.grad_norm[i], "grad_norm_clipped":
                                        interval.grad_norm_clipped[i], "clipped": interval.clipped[i]}, step=step)
        summary = {"train_loss": interval.loss, "train_perplexity": perplexity(interval.loss),
                   "clip_rate": row["clip_rate"], "lr": row["lr"], "tokens_per_s": row["tokens_per_s"]}
        if len(self.directions) > 1:
            for name, mean in zip(self.directions, interval.mean_losses, strict=True):
                summary[f"train_{name}_loss"] = mean
        self._track("log_metrics", summary, step=row["step"])
        for step, norms in interval.layer_norms:
            self._track("log_metrics", {f"grad_norm/{name}": value for name, value in norms.items()}, step=step)
        self.progress_bar.update(len(interval.steps), interval.loss, row["tokens_per_s"])
        return self._tracked_seconds()

    def log_validation(self, row: dict[str, Any], improved: bool, samples: list[list[int]]) -> float:
        """A validation's figures (``row``: its ``epochs.csv`` row), the sequences sampled then, one line."""
        step = row["step"]
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        self._track("log_metrics", {**val, "epoch": row["epoch"], "train_seconds": row["train_seconds"]}, step=step)
        self._track("flush")
        if samples and self.render_samples is not None:
            with tempfile.TemporaryDirectory() as folder:
                for path in self.render_samples(samples, Path(folder)):
                    self._track("log_artifact", path, f"samples/step_{step:07d}")
        mark = " (best)" if improved else ""
        self.progress_bar.note(f"{self.run_name}: epoch {row['epoch']:g} step {step}: train loss "
                               f"{row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                               f"val ppl {row['val_perplexity']:.2f}{mark}")
        return self._tracked_seconds()

    # ------------------------------------------------------------------ the end

    def log_model(self, model: nn.Module) -> None:
        """A CPU copy of the finished run's ``model``: first, since a tracking worker writes it while the stage
        draws the run's plots (a store error is raised by :meth:`log_result` at the latest)."""
        cpu_model = copy.deepcopy(model).cpu().eval()
        self.tracker.log_model(cpu_model, "model", pip_requirements=model_requirements(),
                               code_paths=model_code_paths())

    def log_result(self, files: Sequence[Path], stop: str) -> None:
        """The finished run's output files and why it stopped (after :meth:`log_model`); ends the tracker run."""
        for path in files:
            self.tracker.log_artifact(path)
        self.tracker.set_tags({"stop_reason": stop})
        self.tracker.finish("FINISHED")

    def close(self) -> None:
        self.progress_bar.close()
