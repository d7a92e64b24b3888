"""The MLflow implementation of :class:`pipeline.tracking.Tracker` (runs; the model registry is :mod:`.registry`).

Opening a run talks to the store at once; every later write is a job of one writer thread (:mod:`.writer`), so
training never waits on the store; each store call is bounded (:data:`.store.HTTP_SETTINGS`).  A store that goes
away: one warning line, training goes on, and the records kept meanwhile are written when it answers again.  More
than :data:`MAX_WAITING_POINTS` points waiting, or a store away for ``SEQLAB_TRACKING_WAIT`` s (60) as training ends,
ends the stage with one error line, the checkpoint kept for ``--resume auto``, the run FAILED if the store takes that
within 5 s.  After an error or a signal the end waits 5 s.  A write the store refuses (a 4xx) is raised at the next
call (one error line, the run FAILED); later ones are written.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import SeqlabWarning
from pipeline.tracking import RUN_STATUSES, default_tracking_uri
from pipeline.tracking import store as st
from pipeline.tracking.tags import HOST_TAG, PID_TAG, process_gone, process_tags
from pipeline.tracking.writer import BatchWriter

METRICS_PER_BATCH, PARAMS_PER_BATCH, MAX_VALUE_LENGTH = 1000, 100, 6000  # MLflow's limits
MAX_WAITING_POINTS = 100_000  # ~15 MB of points kept for a store that is away
END_WAIT, STOP_WAIT = 60.0, 5.0  # seconds an end waits for the store: FINISHED, and after an error or a signal


class MlflowTracker:
    """Logs one MLflow run.  Create it with :meth:`start` (a new run) or :meth:`resume` (an existing run id)."""

    def __init__(self, client: MlflowClient, uri: str, run_id: str, experiment_id: str,
                 flush_seconds: float = 30.0, *, mode: str = "new", prior_status: str | None = None) -> None:
        self.client, self.uri, self.run_id, self.experiment_id = client, uri, run_id, experiment_id
        self.flush_seconds, self.mode, self.prior_status = flush_seconds, mode, prior_status  # see resume()
        self.status: str | None = None  # set once the run has been ended by finish()
        self._buffer: list[tuple[str, float, int, int]] = []
        self._last_flush, self._writer = time.monotonic(), BatchWriter(transient, self._away)
        self._spool = tempfile.TemporaryDirectory(prefix="seqlab-artifacts-")  # copies of artifacts to write
        self.points_written = self.batches_written = 0

    @classmethod
    def start(cls, experiment: str, run_name: str, *, tracking_uri: str | None = None,
              tags: Mapping[str, str] | None = None, flush_seconds: float = 30.0) -> MlflowTracker:
        """A new run ``run_name``, owned by this process, in experiment ``experiment`` (created if missing)."""
        uri, client = connect(tracking_uri)
        experiment_id = ensure_experiment(experiment, tracking_uri=uri, client=client)
        close_orphans(client, uri, experiment_id)
        tags = {"mlflow.runName": run_name, **(tags or {}), **process_tags()}
        run = call_store(uri, lambda: client.create_run(experiment_id, run_name=run_name, tags=dict(tags)))
        return cls(client, uri, run.info.run_id, experiment_id, flush_seconds)

    @classmethod
    def resume(cls, run_id: str, *, tracking_uri: str | None = None, flush_seconds: float = 30.0,
               mode: str = "append") -> MlflowTracker:
        """Reopen run ``run_id``.  ``mode="append"`` (evaluate's figures): its status never changes (a failure is the
        tag ``last_error``).  ``"continue"`` (``--resume``): RUNNING again, ending as training ends, FINISHED kept."""
        assert mode in ("append", "continue"), mode
        uri, client = connect(tracking_uri)
        run = call_store(uri, lambda: client.get_run(run_id))
        closed = close_orphans(client, uri, run.info.experiment_id)  # this very run, if its process was killed
        prior = "KILLED" if run_id in closed else run.info.status
        if mode == "continue":
            call_store(uri, lambda: client.log_batch(run_id, tags=[RunTag(k, v) for k, v in process_tags().items()]))
            call_store(uri, lambda: client.update_run(run_id, status="RUNNING"))
        return cls(client, uri, run_id, run.info.experiment_id, flush_seconds, mode=mode, prior_status=prior)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._batches("params", [Param(k, str(v)[:MAX_VALUE_LENGTH]) for k, v in sorted(params.items())])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._batches("tags", [RunTag(k, str(v)[:MAX_VALUE_LENGTH]) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer points (written by the next flush); ``step`` is required, never inferred."""
        self._check()
        now = int(time.time() * 1000)
        self._buffer.extend((key, float(value), now, int(step)) for key, value in metrics.items())
        if len(self._buffer) >= METRICS_PER_BATCH or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered points to the writer; ``wait``: until written (``SEQLAB_TRACKING_WAIT`` s at most)."""
        self._check()
        self._hand_over()
        if wait:
            self._settle("FINISHED")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Write file ``path`` among the run's artifacts (under ``artifact_path``): a copy taken now, in turn."""
        copy = Path(tempfile.mkdtemp(dir=self._spool.name)) / Path(path).name
        shutil.copyfile(path, copy)
        self._writer.submit(lambda: self.client.log_artifact(self.run_id, str(copy), artifact_path))

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        """Log a torch module (pickled, no input example: "pt2" would freeze its shape) for ``mlflow.pytorch``; waits
        until it and everything before it are written (``SEQLAB_TRACKING_WAIT`` s at most)."""
        import mlflow.pytorch  # here: it imports torch, and only a training run logs a model

        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # its warning about pickle: chosen on purpose

        def log() -> None:  # in an active run (of this thread), which the block ends: RUNNING again until finish()
            mlflow.set_tracking_uri(self.uri)
            try:
                with mlflow.start_run(run_id=self.run_id):
                    mlflow.pytorch.log_model(model, name=name, serialization_format="pickle",
                                             pip_requirements=list(pip_requirements), code_paths=list(code_paths) or None)
            finally:
                self.client.update_run(self.run_id, status="RUNNING")

        self._writer.submit(log)
        self.flush(wait=True)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Write every record, record ``reason`` (tag ``failure_reason``), end the run with ``status`` (first wins)."""
        assert status in RUN_STATUSES, status
        if self.status is not None:
            return
        self._hand_over()
        self._writer.submit(functools.partial(self._end, status, reason))
        self._settle(status)
        self.status, refused = status, self._writer.refused
        self._close()
        if refused is not None:
            raise st.store_failure(self.uri, refused) from refused

    def _check(self) -> None:
        if self._writer.refused is not None:
            error, self._writer.refused = self._writer.refused, None
            raise st.store_failure(self.uri, error) from error
        if self._writer.pending_points > MAX_WAITING_POINTS:
            self._give_up(f"did not take {self._writer.pending_points:,} metric points")

    def _hand_over(self) -> None:
        buffer, self._buffer, self._last_flush = self._buffer, [], time.monotonic()
        self._batches("metrics", [Metric(*point) for point in buffer], METRICS_PER_BATCH)

    def _batches(self, kind: str, entries: list, size: int = PARAMS_PER_BATCH) -> None:
        for i in range(0, len(entries), size):
            batch = entries[i : i + size]
            self._writer.submit(functools.partial(self._write, kind, batch), len(batch) if kind == "metrics" else 0)

    def _write(self, kind: str, batch: list) -> None:
        self.client.log_batch(self.run_id, synchronous=True, **{kind: batch})
        if kind == "metrics":
            self.batches_written, self.points_written = self.batches_written + 1, self.points_written + len(batch)

    def _end(self, status: str, reason: str | None) -> None:
        """After every earlier record: the reason tag (an earlier try's gone if it finishes) and the status."""
        if self._writer.refused is not None and status == "FINISHED":
            status, reason = "FAILED", f"metrics not written: {st.store_error_message(self._writer.refused)}"
        final = self._final_status(status)
        if reason:
            tag = "failure_reason" if final == status else "last_error"
            self.client.set_tag(self.run_id, tag, reason[:MAX_VALUE_LENGTH])
        if final == "FINISHED" and "failure_reason" in self.client.get_run(self.run_id).data.tags:
            self.client.delete_tag(self.run_id, "failure_reason")
        if final is not None:
            self.client.set_terminated(self.run_id, status=final)

    def _final_status(self, status: str) -> str | None:
        """The status to set when this process ends the run with ``status``; None: leave it as it is."""
        if self.mode == "append":
            return None
        return "FINISHED" if self.mode == "continue" and self.prior_status == "FINISHED" else status

    def _away(self, error: BaseException) -> None:  # on the writer thread, when the store stops taking writes
        warnings.warn(f"{st.store_failure(self.uri, error)}; the stage goes on, keeping up to {MAX_WAITING_POINTS:,} "
                      f"metric points to write when the store answers", SeqlabWarning, stacklevel=1)

    def _settle(self, status: str) -> None:
        seconds = float(os.environ.get("SEQLAB_TRACKING_WAIT") or END_WAIT) if status == "FINISHED" else STOP_WAIT
        if not self._writer.wait(seconds, patient=status == "FINISHED"):
            self._give_up(f"did not take the run's records for {seconds:g} s", mark=status == "FINISHED")

    def _give_up(self, what: str, mark: bool = True) -> NoReturn:
        """Drop what waits, mark the run FAILED if the store takes that within 5 s (``mark``), raise one line."""
        old, points = self._writer, self._writer.pending_points + len(self._buffer)
        cause = st.store_error_message(old.outage) if old.outage is not None else "no answer"
        old.close(drop=True)  # a writer of its own for the mark: the old one may be inside a call for a while yet
        self.status, self._buffer, self._writer = "FAILED", [], BatchWriter(transient, lambda error: None)
        if mark:
            self._writer.submit(functools.partial(self._end, "FAILED", f"{points} metric points not written: {what}"))
        marked = mark and self._writer.wait(STOP_WAIT) and self._writer.refused is None
        self._close()
        run = "run marked FAILED" if marked else "run not ended"
        raise st.TrackingError(f"MLflow store {self.uri} {what} ({cause}): {points:,} metric points not written; "
                               f"{run}; --resume auto continues from the checkpoint")

    def _close(self) -> None:
        self._writer.close()
        self._spool.cleanup()


def transient(error: BaseException) -> bool:
    """A store away or busy (no answer, a 429 or 5xx, a locked or full sqlite file), not a write it refused (a 4xx)."""
    return not isinstance(error, MlflowException) or error.get_http_status_code() in (429, 500, 502, 503, 504)


def connect(tracking_uri: str | None = None) -> tuple[str, MlflowClient]:
    """The store's URI and a ready client: a server answered, or a new sqlite file's schema was made under a lock."""
    uri = tracking_uri or default_tracking_uri()
    st.check_server(uri)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # a traceback before each error it raises
    if not uri.startswith("sqlite:///"):  # the registry in the same store, not a process-wide one set elsewhere
        return uri, MlflowClient(tracking_uri=uri, registry_uri=uri)
    with st.store_lock(uri):  # the constructor creates/migrates the schema
        return uri, call_store(uri, lambda: MlflowClient(tracking_uri=uri, registry_uri=uri))


def run_status(run_id: str) -> str | None:
    """Run ``run_id``'s status in the store; None when the store has no such run."""
    uri, client = connect()
    try:
        return client.get_run(run_id).info.status
    except MlflowException as e:
        if transient(e):
            raise st.store_failure(uri, e) from e
        return None


#: Tags of every experiment seqlab creates: MLflow 3's UI then opens the runs table, not its GenAI (traces) view.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(name: str, *, tracking_uri: str | None = None, client: MlflowClient | None = None) -> str:
    """The id of experiment ``name`` in the store, created (with :data:`EXPERIMENT_TAGS`) if missing."""
    uri, client = (tracking_uri, client) if client else connect(tracking_uri)
    experiment = call_store(uri, lambda: client.get_experiment_by_name(name))
    if experiment is None:
        try:
            return client.create_experiment(name, st.artifact_location(uri, name), tags=EXPERIMENT_TAGS)
        except MlflowException:  # created meanwhile by a concurrent run (dvc queue -j 2)
            experiment = call_store(uri, lambda: client.get_experiment_by_name(name))
            if experiment is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():  # an experiment made before seqlab tagged them, or by hand
        if key not in experiment.tags:
            call_store(uri, lambda k=key, v=value: client.set_experiment_tag(experiment.experiment_id, k, v))
    return experiment.experiment_id


def call_store(uri: str, fn):
    """``fn()``, with any MLflow or database error turned into one :class:`TrackingError` line naming the store."""
    try:
        return fn()
    except (MlflowException, SQLAlchemyError) as e:
        raise st.store_failure(uri, e) from e


def close_orphans(client: MlflowClient, uri: str, experiment_id: str) -> list[str]:
    """Mark KILLED (one warning line each) the RUNNING runs whose process is gone (:func:`.tags.process_gone`)."""
    runs = call_store(uri, lambda: client.search_runs(
        [experiment_id], max_results=1000,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{process_tags()[HOST_TAG]}'"))
    closed = [run for run in runs if process_gone(run.data.tags)]
    for run in closed:
        pid = run.data.tags.get(PID_TAG)
        reason = f"process {pid} on {run.data.tags.get(HOST_TAG)} ended without closing the run (killed)"
        call_store(uri, lambda run=run, reason=reason: client.set_tag(run.info.run_id, "failure_reason", reason))
        call_store(uri, lambda run=run: client.set_terminated(run.info.run_id, status="KILLED"))
        warnings.warn(f"marked run {run.info.run_name!r} ({run.info.run_id[:8]}) KILLED: its process {pid} is gone",
                      SeqlabWarning, stacklevel=2)
    return [run.info.run_id for run in closed]
