"""Experiment tracking behind a small protocol, so the training loop never imports mlflow.

:class:`Tracker` is what :func:`pipeline.training.fit` talks to; :class:`NullTracker` records nothing (and counts
what it was given, for tests and benchmarks).  Only :mod:`.mlflow_tracker` and :mod:`.registry` import mlflow; a
stage opens its runs with :func:`.factory.open_tracker` and ends them with :func:`.lifecycle.tracked_run`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.tracking.tags import run_tags

__all__ = ["RUN_STATUSES", "NullTracker", "Tracker", "default_tracking_uri", "run_tags"]

RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


@runtime_checkable
class Tracker(Protocol):
    """What the training loop logs to.  Metric writes may be buffered until :meth:`flush`."""

    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def flush(self) -> None: ...
    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None: ...

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush and end the run with ``status``; a second call does nothing (the first end wins)."""


class NullTracker:
    """Logs nothing; keeps counts (``points``, ``artifacts``) and the final ``status`` for inspection."""

    run_id: str | None = None

    def __init__(self) -> None:
        self.points, self.params, self.tags = 0, {}, {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.status: str | None = None
        self.reason: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: self.params.update(params)
    def set_tags(self, tags: Mapping[str, str]) -> None: self.tags.update(tags)
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: self.points += len(metrics)
    def log_model(self, model: Any, name: str = "model", **options: Any) -> None: self.artifacts.append((name, None))
    def flush(self) -> None: pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path).name, artifact_path))

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        if self.status is None:  # the first end wins, as for a real run
            self.status, self.reason = status, reason


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db``, the root being ``DVC_ROOT`` (the *original*
    repository even when ``dvc exp run --queue`` runs the stage in a temporary copy), else the working directory."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(os.environ.get('DVC_ROOT') or os.getcwd()).resolve() / 'mlflow.db'}"

