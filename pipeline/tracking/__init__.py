"""Experiment tracking behind a small protocol, so the training loop never imports mlflow.

:class:`Tracker` is what :func:`pipeline.training.fit` talks to; :class:`NullTracker` records nothing (and
counts what it was given, for tests and benchmarks); :class:`pipeline.tracking.mlflow_tracker.MlflowTracker`
is the MLflow implementation and the only module of seqlab that imports mlflow (with :mod:`.registry`).  Metric
points are buffered by the tracker and written in batches: a synchronous MLflow write to sqlite costs ~10 ms a
point on this machine, a batched one ~0.15 ms.  A stage may keep its runs in a companion process instead
(:mod:`.companion`, :mod:`.worker`), so that importing mlflow and opening the store overlap its own start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.tracking.tags import data_hash, git_state, run_tags

__all__ = [
    "NullTracker",
    "Tracker",
    "data_hash",
    "default_tracking_uri",
    "git_state",
    "run_tags",
]

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


@runtime_checkable
class Tracker(Protocol):
    """What the training loop logs to.  Metric writes may be buffered until :meth:`flush`."""

    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        """May return before the model is written (a tracking worker writes it meanwhile); then its error is
        raised by the next call that waits for the store, ``finish("FINISHED")`` at the latest."""
        ...

    def flush(self) -> None: ...

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush and end the run with ``status``; a second call does nothing (the first end wins)."""
        ...


class NullTracker:
    """Logs nothing; keeps counts (``points``, ``artifacts``) and the final ``status`` for inspection."""

    run_id: str | None = None

    def __init__(self) -> None:
        self.points = 0
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.status: str | None = None
        self.reason: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.points += len(metrics)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path).name, artifact_path))

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        self.artifacts.append((name, None))

    def flush(self) -> None:
        pass

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        if self.status is None:  # the first end wins, as for a real run
            self.status, self.reason = status, reason


def default_tracking_uri(root: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute root>/mlflow.db``.

    ``root`` defaults to ``DVC_ROOT`` (which DVC sets to the *original* repository even when ``dvc exp run
    --queue`` runs the stage in a temporary copy, whose own sqlite file would be deleted afterwards), then to
    the working directory.  The path is always made absolute.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    base = Path(root or os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    return f"sqlite:///{base / 'mlflow.db'}"

