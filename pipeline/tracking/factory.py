"""Trackers by name: kept out of ``pipeline.tracking``, so that importing the protocol never imports mlflow."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.tracking import NullTracker, Tracker
from pipeline.tracking.mlflow_tracker import MlflowTracker
from pipeline.tracking.mlflow_tracker import run_status as mlflow_run_status


def open_tracker(kind: str, experiment: str, run_name: str, *, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None, tracking_uri: str | None = None,
                 mode: str = "append") -> Tracker:
    """``kind`` mlflow: a new run named ``run_name`` in ``experiment``, or run ``run_id`` reopened (tags updated) in
    ``mode`` ``append`` or ``continue`` (see ``MlflowTracker.resume``); ``none``: a :class:`NullTracker`."""
    if kind == "none":
        return NullTracker()
    if kind != "mlflow":
        raise ValueError(f"tracking {kind!r} is not valid (choose mlflow or none)")
    if not run_id:
        return MlflowTracker.start(experiment, run_name, tracking_uri=tracking_uri, tags=tags)
    tracker = MlflowTracker.resume(run_id, tracking_uri=tracking_uri, mode=mode)
    if tags:
        tracker.set_tags(tags)
    return tracker


def run_status(kind: str, run_id: str | None) -> str | None:
    """Run ``run_id``'s status in ``kind``'s store; None without tracking, a run id or such a run."""
    return mlflow_run_status(run_id) if kind == "mlflow" and run_id else None
