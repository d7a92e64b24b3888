"""A run kept by the tracking worker (:mod:`.companion`): the :class:`pipeline.tracking.Tracker` protocol over the
companion's pipes.  Metric points are stamped here and sent in batches without waiting; the model is sent and its
answer awaited by the run's next waiting call; every other call waits for the worker's answer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.tracking.store import TrackingError

#: Points a :class:`RemoteTracker` collects before sending them, and the longest it keeps one.
SEND_POINTS, SEND_SECONDS = 500, 1.0


class Channel(Protocol):
    """What a run needs of :class:`pipeline.tracking.companion.Companion`: requests with and without an answer."""

    def post(self, op: str, **payload: Any) -> None: ...

    def send(self, op: str, **payload: Any) -> int: ...

    def wait(self, request_id: int) -> Any: ...

    def ask(self, op: str, **payload: Any) -> Any: ...


class RemoteTracker:
    """A run kept by the companion worker: the :class:`pipeline.tracking.Tracker` protocol plus ``uri`` and
    ``experiment_id``, as :class:`~pipeline.tracking.mlflow_tracker.MlflowTracker` has them."""

    def __init__(self, companion: Channel, handle: int, *, run_id: str, experiment_id: str, uri: str) -> None:
        self.companion, self.handle = companion, handle
        self.run_id, self.experiment_id, self.uri = run_id, experiment_id, uri
        self.status: str | None = None
        self._points: list[tuple[str, float, int, int]] = []
        self._pending: list[int] = []  # requests sent without waiting (the model), settled by the next wait
        self._sent_at = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._points.extend((key, float(value), now, int(step)) for key, value in metrics.items())
        if len(self._points) >= SEND_POINTS or time.monotonic() - self._sent_at >= SEND_SECONDS:
            self._send_points()

    def flush(self, wait: bool = False) -> None:
        self._send_points()
        if wait:
            self._call("flush", wait=True)  # settles the model first
        else:
            self.companion.post("flush", handle=self.handle)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._call("log_params", {k: str(v) for k, v in params.items()})  # as MlflowTracker writes them

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path)

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        """Returns once the model is sent, while the worker writes it: the stage's next work (its plots, say)
        overlaps the write.  Its error is raised by the next call that waits (any other call but
        ``log_metrics`` and ``flush()``); ``finish`` with a failure status ends the run whatever it was."""
        self._send_points()
        self._pending.append(self.companion.send("log_model", handle=self.handle, args=(model, name), kwargs={
            "pip_requirements": list(pip_requirements), "code_paths": list(code_paths)}))

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """As ``MlflowTracker.finish``: the first end wins; waits until the run is ended in the store."""
        if self.status is not None:
            return
        if status == "FINISHED":
            self._settle()  # a model that could not be written fails the run (the caller ends it FAILED)
        else:
            with contextlib.suppress(TrackingError):
                self._settle()
        self.status = status
        self._send_points()
        self.companion.ask("finish", handle=self.handle, status=status, reason=reason)

    def _settle(self) -> None:
        """Wait for the requests sent without waiting (:meth:`log_model`); the first error is raised."""
        while self._pending:
            self.companion.wait(self._pending.pop(0))

    def _send_points(self) -> None:
        points, self._points = self._points, []
        self._sent_at = time.monotonic()
        if points:
            self.companion.post("log_points", handle=self.handle, args=(points,))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._settle()
        self._send_points()
        return self.companion.ask(method, handle=self.handle, args=args, kwargs=kwargs)
