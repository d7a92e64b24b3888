"""The MLflow implementation of :class:`pipeline.tracking.Tracker` (runs; the model registry is :mod:`.registry`).

* Store: ``MLFLOW_TRACKING_URI`` or an absolute ``sqlite:///<repo>/mlflow.db`` (see ``default_tracking_uri``).
* One experiment per dataset, one run per variant named after it; :meth:`MlflowTracker.resume` reopens a
  run by id (``--resume``, or the evaluate stage logging into the training run).
* Metric points are buffered and written with ``log_batch`` (1,000 points per call) when the buffer fills,
  every ``flush_seconds``, and at :meth:`flush` / :meth:`finish`: a synchronous ``log_metric`` to sqlite costs
  ~10 ms per point here, ``log_batch`` ~0.15 ms.  Even batched, that is ~0.5 ms for a step's three gradient
  figures, several percent of a small model's step, so the writes happen on a background thread
  (:class:`.writer.BatchWriter`): the training thread only appends tuples to a list.  SQLAlchemy's Python work
  holds the GIL, but torch's kernels release it, so the writer runs while the training thread computes.
  :meth:`finish` (and ``flush(wait=True)``) wait for every point to be written and re-raise a write error.
* Concurrent runs (``dvc queue start -j 2``) share the sqlite file: MLflow opens every sqlite session with
  ``PRAGMA busy_timeout = 20000``, so writers wait for each other's locks instead of failing, and
  :func:`_experiment_id` tolerates an experiment created meanwhile.  The one unsafe moment is the first open of
  a new file (MLflow creates the schema, and two processes migrating at once fail with "duplicate column"):
  :func:`open_client` holds an exclusive file lock while it does that.
* A tracking *server* is probed before a run opens (:func:`.store.check_server`).
* The model is logged with ``serialization_format="pickle"`` and no input example: the default "pt2" export
  traces the model on an example and freezes its batch size and length.  ``code_paths`` ships seqlab's
  ``pipeline`` package with the model and ``pip_requirements`` are explicit (no environment inference).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from pipeline.tracking import RUN_STATUSES, default_tracking_uri
from pipeline.tracking.store import (
    OrphanRunWarning,
    TrackingError,
    artifact_location,
    check_server,
    store_error_message,
    store_lock,
)
from pipeline.tracking.tags import HOST_TAG, PID_TAG, process_gone, process_tags
from pipeline.tracking.writer import BatchWriter

METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call
PARAMS_PER_BATCH = 100
MAX_VALUE_LENGTH = 6000


class MlflowTracker:
    """Logs one MLflow run.  Create it with :meth:`start` (a new run) or :meth:`resume` (an existing run id)."""

    def __init__(self, client: MlflowClient, uri: str, run_id: str, experiment_id: str,
                 flush_seconds: float = 30.0, *, mode: str = "new", prior_status: str | None = None) -> None:
        self.client, self.uri, self.run_id, self.experiment_id = client, uri, run_id, experiment_id
        self.flush_seconds = flush_seconds
        self.mode, self.prior_status = mode, prior_status  # see resume()
        self.status: str | None = None  # set once the run has been ended by finish()
        self._buffer: list[tuple[str, float, int, int]] = []
        self._last_flush = time.monotonic()
        self._writer = BatchWriter(self._write_points)
        self.points_written = 0
        self.batches_written = 0

    # ------------------------------------------------------------------ opening a run

    @classmethod
    def start(cls, experiment: str, run_name: str, *, tracking_uri: str | None = None,
              tags: Mapping[str, str] | None = None, flush_seconds: float = 30.0, client: MlflowClient | None = None,
              owner: int | None = None) -> MlflowTracker:
        """Create a run named ``run_name`` in experiment ``experiment`` (created if missing).  ``client``: an open
        client of the store; ``owner``: the process the run belongs to (default: this one; see ``process_tags``)."""
        uri = tracking_uri or default_tracking_uri()
        client = client or open_client(uri)
        experiment_id = _experiment_id(client, experiment, uri)
        close_orphans(client, uri, experiment_id)
        tags = {"mlflow.runName": run_name, **(tags or {}), **process_tags(owner)}
        run = call_store(uri, lambda: client.create_run(experiment_id, run_name=run_name, tags=dict(tags)))
        return cls(client, uri, run.info.run_id, experiment_id, flush_seconds)

    @classmethod
    def resume(cls, run_id: str, *, tracking_uri: str | None = None, flush_seconds: float = 30.0,
               mode: str = "append", client: MlflowClient | None = None, owner: int | None = None) -> MlflowTracker:
        """Reopen run ``run_id`` to add to it.

        ``mode="append"`` (the evaluate stage adding its figures to the training run): the run's status is
        left as it is, before, during and after, whatever happens; a failure is recorded as the tag
        ``last_error``.  ``mode="continue"`` (``--resume``: more training in the same run): the run is RUNNING
        again while this process trains and ends as the training ends, except that a failure never turns a
        FINISHED run into FAILED or KILLED (it stays FINISHED, with ``last_error``).
        """
        if mode not in ("append", "continue"):
            raise ValueError(f"mode {mode!r} is not append or continue")
        uri = tracking_uri or default_tracking_uri()
        client = client or open_client(uri)
        run = call_store(uri, lambda: client.get_run(run_id))
        closed = close_orphans(client, uri, run.info.experiment_id)  # this very run, if its process was killed
        prior = "KILLED" if run_id in closed else run.info.status
        if mode == "continue":
            call_store(uri, lambda: client.log_batch(run_id, tags=[RunTag(k, v) for k, v in process_tags(owner).items()]))
            call_store(uri, lambda: client.update_run(run_id, status="RUNNING"))
        return cls(client, uri, run_id, run.info.experiment_id, flush_seconds, mode=mode, prior_status=prior)

    # ------------------------------------------------------------------ the Tracker protocol

    def log_params(self, params: Mapping[str, Any]) -> None:
        entries = [Param(k, str(v)[:MAX_VALUE_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(entries), PARAMS_PER_BATCH):
            self._write(params=entries[i : i + PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        entries = [RunTag(k, str(v)[:MAX_VALUE_LENGTH]) for k, v in tags.items()]
        for i in range(0, len(entries), PARAMS_PER_BATCH):
            self._write(tags=entries[i : i + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer points (written by the next flush); ``step`` is required, never inferred."""
        now = int(time.time() * 1000)
        self.log_points([(key, float(value), now, int(step)) for key, value in metrics.items()])

    def log_points(self, points: Sequence[tuple[str, float, int, int]]) -> None:
        """Buffer ``(key, value, timestamp ms, step)`` points stamped elsewhere (by a stage, for its worker)."""
        self._buffer.extend(points)
        if len(self._buffer) >= METRICS_PER_BATCH or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered points to the writer thread; ``wait``: until written (raises a write error)."""
        buffer, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if buffer:
            self._writer.submit(buffer)
        if wait:
            self._writer.wait()

    def _write_points(self, points: list[tuple[str, float, int, int]]) -> None:
        """Called on the writer thread."""
        for i in range(0, len(points), METRICS_PER_BATCH):
            chunk = [Metric(key, value, timestamp, step) for key, value, timestamp, step in points[i : i + METRICS_PER_BATCH]]
            self._write(metrics=chunk)
            self.batches_written += 1
        self.points_written += len(points)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        call_store(self.uri, lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        """Log a torch module so that ``mlflow.pytorch.load_model`` returns it, runnable on any shape."""
        import mlflow.pytorch

        mlflow.set_tracking_uri(self.uri)
        # Pickle is chosen on purpose (see the module docstring); MLflow's warning about it is noise here.
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        # log_model needs an active run; leaving the block ends it (FINISHED), so re-mark it RUNNING:
        # finish() sets the real final status.
        def log() -> None:
            with mlflow.start_run(run_id=self.run_id):
                mlflow.pytorch.log_model(model, name=name, serialization_format="pickle",
                                         pip_requirements=list(pip_requirements), code_paths=list(code_paths) or None)

        try:
            with _kept_package_map():
                call_store(self.uri, log)
        finally:
            call_store(self.uri, lambda: self.client.update_run(self.run_id, status="RUNNING"))

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush, record ``reason`` (tag ``failure_reason``) and set the run's final status.

        If buffered points could not be written, the run is still closed (FAILED, with the write error as
        its reason) and the error is raised.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status {status!r} is not one of {RUN_STATUSES}")
        if self.status is not None:  # already ended: the first end wins
            return
        self.status = status
        error = None
        try:
            self.flush(wait=True)
        except TrackingError as e:
            error, status, reason = e, "FAILED", reason or f"metrics not written: {e}"
        finally:
            self._writer.close()
        final = self._final_status(status)
        if reason:
            tag = "failure_reason" if final == status else "last_error"
            self.set_tags({tag: reason[:MAX_VALUE_LENGTH]})
        if final is not None:
            call_store(self.uri, lambda: self.client.set_terminated(self.run_id, status=RunStatus.to_string(
                RunStatus.from_string(final))))
        if error is not None:
            raise error

    def _final_status(self, status: str) -> str | None:
        """The status to set when this process ends the run with ``status``; None: leave it as it is."""
        if self.mode == "append":
            return None
        if self.mode == "continue" and status != "FINISHED" and self.prior_status == "FINISHED":
            return "FINISHED"
        return status

    # ------------------------------------------------------------------ helpers

    def _write(self, metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()) -> None:
        call_store(self.uri, lambda: self.client.log_batch(self.run_id, metrics=list(metrics), params=list(params),
                                                      tags=list(tags), synchronous=True))


def warm_model_logging(folder: str) -> None:
    """Import what :meth:`MlflowTracker.log_model` imports lazily and save a tiny model into ``folder``: MLflow's
    first save maps every installed package to its modules (~1.2 s), later ones reuse the map; the map is kept
    between processes (:mod:`.packages`)."""
    import mlflow.pytorch
    import torch

    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    with _kept_package_map():
        mlflow.pytorch.save_model(torch.nn.Linear(1, 1), folder, serialization_format="pickle",
                                  pip_requirements=["torch"])


def _kept_package_map():
    """MLflow's module-to-distribution map from this environment's cache, and into it (:mod:`.packages`)."""
    import mlflow
    from mlflow.utils import requirements_utils

    from pipeline.tracking.packages import kept_map

    return kept_map(requirements_utils, mlflow.__version__)


def open_client(uri: str) -> MlflowClient:
    """A client whose store is ready: a server answered ``/health``, or a sqlite schema exists (created under a
    lock, so that concurrent first runs do not migrate the same new file twice)."""
    check_server(uri)
    # MLflow logs every database error with its traceback before raising it; seqlab raises it as one line
    # that keeps the driver's words (see store_error_message), so the duplicate log is turned off.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # The model registry lives in the same store; unset, MLflow would take the process-wide registry URI, which
    # an earlier run in the same process (a test, a notebook) may have pointed elsewhere.
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with store_lock(uri):  # the constructor creates/migrates the schema
        return call_store(uri, lambda: MlflowClient(tracking_uri=uri, registry_uri=uri))


#: Tags of every experiment seqlab creates.  ``mlflow.experimentKind`` tells MLflow 3's UI that this is model
#: training, so it opens the runs table instead of its GenAI (traces) view and never asks for the type.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str, *, tracking_uri: str | None = None) -> str:
    """The id of experiment ``name`` in the store, created (with :data:`EXPERIMENT_TAGS`) if missing."""
    uri = tracking_uri or default_tracking_uri()
    return _experiment_id(open_client(uri), name, uri)


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    experiment = call_store(uri, lambda: client.get_experiment_by_name(name))
    if experiment is not None:
        missing = {k: v for k, v in EXPERIMENT_TAGS.items() if k not in experiment.tags}
        for key, value in missing.items():  # an experiment made before seqlab tagged them, or by hand
            call_store(uri, lambda key=key, value=value: client.set_experiment_tag(experiment.experiment_id, key, value))
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name), tags=EXPERIMENT_TAGS)
    except MlflowException:  # created meanwhile by a concurrent run (dvc queue -j 2)
        experiment = call_store(uri, lambda: client.get_experiment_by_name(name))
        if experiment is None:
            raise
        return experiment.experiment_id


def call_store(uri: str, fn):
    """``fn()``, with any MLflow or database error turned into one :class:`TrackingError` line naming the store."""
    try:
        return fn()
    except (MlflowException, SQLAlchemyError) as e:
        raise TrackingError(f"MLflow store {uri}: {store_error_message(e)} "
                            f"(check MLFLOW_TRACKING_URI or set train.tracking: none)") from e


def close_orphans(client: MlflowClient, uri: str, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` whose process is gone (see
    :func:`pipeline.tracking.tags.process_gone`: only this machine's runs can be checked); one warning line
    each.  Returns their run ids."""
    runs = call_store(uri, lambda: client.search_runs(
        [experiment_id], max_results=1000,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{process_tags()[HOST_TAG]}'"))
    closed = []
    for run in runs:
        if not process_gone(run.data.tags):
            continue
        pid = run.data.tags.get(PID_TAG)
        reason = f"process {pid} on {run.data.tags.get(HOST_TAG)} ended without closing the run (killed)"
        call_store(uri, lambda run=run, reason=reason: client.log_batch(
            run.info.run_id, tags=[RunTag("failure_reason", reason)]))
        call_store(uri, lambda run=run: client.set_terminated(run.info.run_id, status="KILLED"))
        warnings.warn(f"marked run {run.info.run_name!r} ({run.info.run_id[:8]}) KILLED: its process {pid} is gone",
                      OrphanRunWarning, stacklevel=2)
        closed.append(run.info.run_id)
    return closed

