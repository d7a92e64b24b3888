"""The tracking worker: a companion process that does a stage's MLflow work on the other core.

Started by :func:`pipeline.tracking.companion.start_companion` as ``python -m pipeline.tracking.worker URI
REQUESTS REPLIES OWNER [--models]`` (two pipe descriptors and the stage's process id).  It imports mlflow and
opens the store at once, while the stage imports torch and loads its data.  With ``--models`` a second thread
then warms up what ``log_model`` needs (``import torch`` for ``mlflow.pytorch``, and one model saved to a
temporary folder: MLflow's first save in a process maps every installed package to its modules for its
requirement check, ~1.2 s, unless an earlier process in the same environment kept that map: :mod:`.packages`).
It starts as soon as the store is open: the stage's first requests (open the run, its params) cost
the worker a few hundredths of a second each, so sharing the interpreter with the warm-up delays them less than
waiting for a quiet moment delays the model at the end (measured in BENCHMARKS.md, "Stage start-up").
Requests are served in order by one
:class:`pipeline.tracking.mlflow_tracker.MlflowTracker` per run (see :mod:`.wire` for the frames).

It ignores SIGINT, SIGTERM and SIGHUP: Ctrl-C or a CI cancel reaches the whole process group, and the stage
decides how its runs end (KILLED) before it closes the worker.  If the stage dies without closing it (``kill
-9``: the request pipe reaches end-of-file), the worker ends that stage's open runs KILLED, naming the gone
process, and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings
from typing import Any

from pipeline.tracking.wire import pack_error, pack_warnings, read_frame, write_frame

#: The ``MlflowTracker`` methods a stage may call on a run by name.
RUN_METHODS = {"log_points", "flush", "log_params", "set_tags", "log_artifact", "log_model"}


class Worker:
    """Serves one stage: its open runs by handle, and the store client opened at start."""

    def __init__(self, uri: str, requests: int, replies: int, owner: int) -> None:
        self.uri, self.requests, self.replies, self.owner = uri, requests, replies, owner
        self.client: Any = None
        self.runs: dict[int, Any] = {}
        self.prewarm: threading.Thread | None = None

    # ------------------------------------------------------------------ start-up

    def open_store(self) -> None:
        """Import mlflow and open the store; a failure is left for the first request to meet again."""
        from pipeline.tracking import mlflow_tracker

        try:
            self.client = mlflow_tracker.open_client(self.uri)
            self.client.search_experiments(max_results=1)  # the first query builds SQLAlchemy's caches
        except Exception:
            self.client = None
        _caught.clear()

    def start_model_prewarm(self) -> None:
        self.prewarm = threading.Thread(target=_prewarm_models, name="mlflow-prewarm", daemon=True)
        self.prewarm.start()

    def wait_prewarm(self) -> None:
        if self.prewarm is not None:
            self.prewarm.join()
            self.prewarm = None

    # ------------------------------------------------------------------ serving

    def serve(self) -> None:
        while True:
            try:
                request_id, op, pickled = read_frame(self.requests)
            except EOFError:  # the stage is gone without closing its runs, or closed having opened none
                self.end_open_runs(f"process {self.owner} on {socket.gethostname()} ended without closing the "
                                   f"run (killed)")
                self.wait_prewarm()  # nobody waits for this exit; ending now would leave the warm-up's folder
                return
            if op == "close":
                self.end_open_runs(f"process {self.owner} ended without closing the run")
                self.wait_prewarm()
                self.reply(request_id, None, None, [])
                return
            self.handle(request_id, op, pickled)

    def handle(self, request_id: int, op: str, pickled: bytes) -> None:
        result = error = None
        payload: dict = {}
        _caught.clear()
        try:
            if op == "log_model":  # unpickling the model imports torch: never beside the warm-up importing it
                self.wait_prewarm()
            payload = pickle.loads(pickled)
            operation = getattr(self, f"op_{op}", None)
            result = operation(**payload) if operation is not None else self.call(op, **payload)
        except Exception as e:
            error = e.packed if isinstance(e, _Kept) else pack_error(e)
        if request_id:
            self.reply(request_id, result, error, pack_warnings(_caught))
        elif error is not None:  # a request that wanted no reply: kept for the run's next answer
            run = self.runs.get(payload.get("handle"))
            if run is not None and getattr(run, "seqlab_error", None) is None:
                run.seqlab_error = error

    def reply(self, request_id: int, result: Any, error: tuple | None, caught: list) -> None:
        with contextlib.suppress(BrokenPipeError):  # the stage stopped listening (it is ending); the work is done
            write_frame(self.replies, (request_id, result, error, caught))

    # ------------------------------------------------------------------ operations

    def op_open(self, handle: int, experiment: str, run_name: str, run_id: str | None, tags: dict | None,
                mode: str) -> dict:
        from pipeline.tracking.mlflow_tracker import MlflowTracker

        if run_id:
            tracker = MlflowTracker.resume(run_id, tracking_uri=self.uri, mode=mode, client=self.client,
                                           owner=self.owner)
            if tags:
                tracker.set_tags(tags)
        else:
            tracker = MlflowTracker.start(experiment, run_name, tracking_uri=self.uri, tags=tags, client=self.client,
                                          owner=self.owner)
        self.client = tracker.client
        tracker.seqlab_error = None
        self.runs[handle] = tracker
        return {"run_id": tracker.run_id, "experiment_id": tracker.experiment_id, "uri": tracker.uri}

    def call(self, method: str, handle: int, args: tuple = (), kwargs: dict | None = None) -> Any:
        """``method`` of run ``handle``'s tracker; an error kept from a request without reply is raised first."""
        if method not in RUN_METHODS:
            raise ValueError(f"{method!r} is not a run method the worker serves")
        tracker = self.runs[handle]
        if method != "log_points" and tracker.seqlab_error is not None:
            error, tracker.seqlab_error = tracker.seqlab_error, None
            raise _Kept(error)
        return getattr(tracker, method)(*args, **(kwargs or {}))

    def op_finish(self, handle: int, status: str, reason: str | None) -> None:
        tracker = self.runs.pop(handle)
        tracker.finish(status, reason)

    def end_open_runs(self, reason: str) -> None:
        """End every run still open KILLED (a run reopened to append keeps its status, see ``MlflowTracker``)."""
        for handle in list(self.runs):
            tracker = self.runs.pop(handle)
            try:
                tracker.finish("KILLED", reason)
            except Exception as e:  # nobody to tell but the log; the orphan sweep of a later stage remains
                print(f"seqlab: warning: could not mark run {tracker.run_id[:8]} KILLED: {e}", file=sys.stderr)


#: The warnings of the request being served (warned on the main thread; other threads' warnings are dropped).
_caught: list[warnings.WarningMessage] = []


def _keep_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if threading.current_thread() is threading.main_thread():
        _caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))


class _Kept(Exception):
    """Carries an error packed earlier (by a request that wanted no reply) to the next reply of its run."""

    def __init__(self, packed: tuple) -> None:
        super().__init__(packed)
        self.packed = packed


#: The warm-up's temporary folders: ``seqlab-prewarm-<worker pid>-<its start time in ticks>-<random>``.
PREWARM_FOLDER = re.compile(r"seqlab-prewarm-(\d+)-(\d+)-\w+")


def _prewarm_models() -> None:
    """Import what ``mlflow.pytorch.log_model`` imports lazily and save one tiny model to a temporary folder.
    The folders of workers killed during their warm-up (``kill -9``, the OOM killer) are removed first."""
    remove_orphan_prewarm_folders(tempfile.gettempdir())
    from pipeline.tracking.tags import START_TAG, process_tags

    folder = tempfile.mkdtemp(prefix=f"seqlab-prewarm-{os.getpid()}-{process_tags()[START_TAG]}-")
    try:
        from pipeline.tracking.mlflow_tracker import warm_model_logging

        warm_model_logging(os.path.join(folder, "model"))
    except Exception:  # a warm-up only: the real log_model meets any real problem and reports it
        pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_prewarm_folders(root: str) -> list[str]:
    """Remove the warm-up folders in ``root`` whose worker process has certainly ended (by the rule of
    :func:`pipeline.tracking.tags.process_gone`: a reused process id is told by its start time); their names."""
    from pipeline.tracking.tags import PID_TAG, START_TAG, process_gone, process_tags

    here, removed = process_tags(), []
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            match = PREWARM_FOLDER.fullmatch(name)
            if match and process_gone({**here, PID_TAG: match.group(1), START_TAG: match.group(2)}):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                removed.append(name)
    return removed


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    warnings.simplefilter("default")
    warnings.showwarning = _keep_warning
    uri, requests, replies, owner = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    worker = Worker(uri, requests, replies, owner)
    worker.open_store()
    if "--models" in argv[4:]:
        worker.start_model_prewarm()
    worker.serve()
    return 0


if __name__ == "__main__":
    from pipeline.process import exit_now

    exit_now(main(sys.argv[1:]))  # no interpreter teardown: the stage is waiting for this exit
