"""Opening a tracker by name: the one place outside :mod:`.mlflow_tracker` that knows mlflow exists.

Kept out of ``pipeline.tracking/__init__`` so that importing the protocol (as the training loop does) never
imports mlflow, not even lazily.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.tracking import NullTracker, Tracker


def open_tracker(kind: str, experiment: str, run_name: str, *, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None, tracking_uri: str | None = None,
                 mode: str = "append") -> Tracker:
    """``kind`` mlflow: a new run named ``run_name`` in ``experiment``, or run ``run_id`` reopened (tags
    updated) in ``mode`` ``append`` (add figures, status untouched) or ``continue`` (train on in it): see
    ``MlflowTracker.resume``; ``none``: a :class:`NullTracker`.  The run lives in the stage's tracking worker
    when one was started for the same store (:mod:`.companion`), else in this process (mlflow imported here,
    lazily).
    End the run with :func:`pipeline.tracking.lifecycle.tracked_run`."""
    if kind == "none":
        return NullTracker()
    if kind != "mlflow":
        raise ValueError(f"tracking {kind!r} is not valid (choose mlflow or none)")
    from pipeline.tracking import default_tracking_uri
    from pipeline.tracking.companion import current

    companion = current(tracking_uri or default_tracking_uri())
    if companion is not None:  # the stage started a worker for this store: the run lives there
        return companion.open(experiment, run_name, run_id=run_id, tags=tags, mode=mode)
    from pipeline.tracking.mlflow_tracker import MlflowTracker

    if run_id:
        tracker = MlflowTracker.resume(run_id, tracking_uri=tracking_uri, mode=mode)
        if tags:
            tracker.set_tags(tags)
        return tracker
    return MlflowTracker.start(experiment, run_name, tracking_uri=tracking_uri, tags=tags)
