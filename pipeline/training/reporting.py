"""Where the loop's figures go: tracker metrics, the progress bar, sampled text and the final artifacts.

:class:`Reporter` is a sink: the loop hands it values (a logging interval and its row, a validation row,
sampled sequences, the finished run's files and model) and it never sees the loop or its state.  Each
``log_*`` method returns the seconds it spent in tracker calls, which the loop keeps in ``tracking_seconds``.
The progress bar (:class:`ProgressBar`) shows loss, perplexity and tokens/s; it is silent under CI or when
stderr is not a terminal.

Metric names (all logged with ``step=``, the optimizer step):

* every step: the gradient metrics of :func:`~.optim.grad_metrics` (the global norm before and after
  clipping, and whether it fired);
* every logging interval: ``train_loss`` (mean NLL per token over the interval), ``train_perplexity``,
  ``clip_rate``, ``lr``, ``tokens_per_s``; ``train_forward_loss`` / ``train_backward_loss`` for
  bidirectional models; every ``layer_norms_every_steps``: ``grad_norm/<parameter name>``;
* every validation: ``val_loss``, ``val_perplexity``, ``val_bits_per_token`` (``val_bpc`` too for
  character-level data), per direction for bidirectional models, ``epoch``, and ``train_seconds`` (training
  time so far, validation excluded: the x axis of a loss-against-time curve).

Sampled sequences are logged as one text file per validation (``samples/step_<step>/samples.txt``), decoded by
the caller's ``decode_samples``; music is rendered to MIDI and piano rolls by the evaluate stage only.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from tqdm import tqdm

from pipeline import files
from pipeline.figures import perplexity
from pipeline.tracking import Tracker
from pipeline.training.meter import Interval
from pipeline.training.optim import grad_metrics
from pipeline.training.outputs import model_code_paths, model_requirements

SampleDecoder = Callable[[list[list[int]]], str]  # sampled id sequences -> their text, one file's content


class Reporter:
    """Sends one run's figures to ``tracker`` and ``progress_bar``; times its tracker calls with ``clock``."""

    def __init__(self, tracker: Tracker, progress_bar: ProgressBar, directions: Sequence[str],
                 clock: Callable[[], float], *, decode_samples: SampleDecoder | None = None,
                 run_name: str = "train") -> None:
        self.tracker, self.progress_bar, self.directions, self.clock = tracker, progress_bar, directions, clock
        self.decode_samples, self.run_name = decode_samples, run_name
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
            self._track("log_metrics", grad_metrics(interval.grad_norm[i], interval.grad_norm_clipped[i],
                                                    interval.clipped[i]), step=step)
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
        if samples and self.decode_samples is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "samples.txt"
                files.write_text(path, self.decode_samples(samples))
                self._track("log_artifact", path, f"samples/step_{step:07d}")
        mark = " (best)" if improved else ""
        self.progress_bar.note(f"{self.run_name}: epoch {row['epoch']:g} step {step}: train loss "
                               f"{row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, "
                               f"val ppl {row['val_perplexity']:.2f}{mark}")
        return self._tracked_seconds()

    # ------------------------------------------------------------------ the end

    def log_model(self, model: nn.Module) -> None:
        """Log a CPU copy of the finished run's ``model`` (a store error is raised here or by :meth:`log_result`)."""
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


def progress_bar_enabled(requested: bool = True) -> bool:
    """A bar only for a person watching: not under CI (``CI=true``), not into a log file or a pipe."""
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return requested and not ci and sys.stderr.isatty()


class ProgressBar:
    """A tqdm bar over optimizer steps, or one line per :meth:`note` when disabled."""

    def __init__(self, total: int, initial: int, enabled: bool, description: str = "train") -> None:
        self.bar = tqdm(total=total, initial=initial, desc=description, unit="step", dynamic_ncols=True,
                        file=sys.stderr) if enabled else None

    def update(self, steps: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is None:
            return
        ppl = perplexity(loss)
        self.bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{ppl:.2f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        self.bar.update(steps)

    def note(self, line: str) -> None:
        """One line that stays on screen (validation results); printed to stderr either way."""
        if self.bar is None:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
