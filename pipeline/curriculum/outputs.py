"""Device, tracked runs and written outputs of a curriculum stage: one metrics dict feeds DVC (JSON/CSV) and MLflow.

:class:`ExperimentRuns` opens one tracking run per trained model of an experiment (MLflow experiment = the stage's
name, run = the model's name) and keeps them open until the experiment's figures exist, so that every run holds
the comparison plot it is part of.  Leaving the ``with`` block by an exception marks every open run FAILED
(KILLED for Ctrl-C or SIGTERM) with the reason; otherwise FINISHED: the rule of
:mod:`pipeline.tracking.lifecycle`, which every stage follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.config import flatten, to_plain
from pipeline.tracking import Tracker
from pipeline.training.outputs import write_csv

__all__ = ["ExperimentRuns", "numbers", "prepare", "write_csv", "write_metrics"]


def prepare(device: str, threads: int) -> str:
    """Set the thread count (0: torch's default) and return the resolved device of a curriculum stage."""
    from pipeline.runtime import resolve_device, set_threads

    set_threads(threads or None)
    return resolve_device(device)


class ExperimentRuns:
    """The tracking runs of one curriculum stage; ``kind`` is ``mlflow`` or ``none``."""

    def __init__(self, kind: str, experiment: str, *, data_files: Sequence[str | Path] = (), device: str = "cpu",
                 root: str | Path = ".") -> None:
        self.kind, self.experiment, self.device = kind, experiment, device
        self.data_files, self.root = [Path(p) for p in data_files], Path(root)
        self.trackers: list[Tracker] = []

    def open(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Tracker:
        """A new run named ``run_name`` with ``params`` (a config dataclass or mapping, flattened) logged."""
        from pipeline.tracking import run_tags
        from pipeline.tracking.factory import open_tracker

        extra = {"task": self.experiment, "variant": run_name, **(tags or {})}
        tracker = open_tracker(self.kind, self.experiment, run_name,
                               tags=run_tags(self.root, self.data_files, self.device, extra))
        self.trackers.append(tracker)
        tracker.log_params(flatten(to_plain(params)))
        return tracker

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        paths = list(paths)
        for tracker in self.trackers:
            for path in paths:
                tracker.log_artifact(path, artifact_path)

    def close(self, error: BaseException | None = None) -> None:
        """End every open run as ``error`` says (None: FINISHED), by the rule of :mod:`pipeline.tracking.lifecycle`."""
        from pipeline.tracking.lifecycle import end_run

        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            end_run(tracker, error)

    def __enter__(self) -> ExperimentRuns:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(error)


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of nested metrics as ``{"a.b": value}`` (what a tracker takes)."""
    return {k: float(v) for k, v in flatten(dict(metrics)).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """``metrics.json`` for ``dvc metrics show`` (sorted keys, nested per model)."""
    files.write_json(path, to_plain(dict(metrics)))
    return Path(path)
