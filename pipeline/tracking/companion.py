"""A stage's MLflow work in a companion process, so that ``import mlflow`` and opening the store overlap the
stage's own start-up (importing torch, loading data, building the model) on the other core.

:func:`start_companion` starts :mod:`.worker` (``python -m pipeline.tracking.worker``) at the very beginning of
a stage that will track with MLflow (:func:`stage_companion`, run by ``stages._common.stage_main``); then
:func:`pipeline.tracking.factory.open_tracker` returns a :class:`RemoteTracker` for a run in that store instead
of an in-process ``MlflowTracker``.  One companion per process at a time (:func:`current`).

* Metric points are stamped here and sent without waiting (in batches); everything else waits for the worker's
  answer (a run opened, params, tags, artifacts, ``flush(wait=True)``, ``finish``), so its errors are raised
  here as in-process: a store failure is the same one-line ``TrackingError``, a warning is warned here.  The
  model is the one exception: it is sent, and its answer is awaited by the run's next waiting call, so that the
  stage draws its plots while the worker writes the model.
* Frames are written by a sender thread and answers read by a reader thread, so that a signal (Ctrl-C, SIGTERM)
  interrupts the stage's wait without tearing a frame; an answer to a request abandoned that way is dropped.
* The stage ends its runs (KILLED on a signal) and :func:`close_companion` waits until the worker has written
  everything and exited: a finished stage means a written store.  A dead worker turns every later request into
  a one-line ``TrackingError``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.tracking.remote import RemoteTracker
from pipeline.tracking.store import TrackingError
from pipeline.tracking.wire import pack_error, read_frame, rewarn, unpack_error, write_frame

_current: Companion | None = None


class Companion:
    """The worker process of one stage, its two pipes and the threads that write and read them."""

    def __init__(self, uri: str, *, models: bool = False) -> None:
        self.uri = uri
        requests_r, self._requests = os.pipe()
        self._replies, replies_w = os.pipe()
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this very pipeline package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "pipeline.tracking.worker", uri, str(requests_r), str(replies_w),
                   str(os.getpid()), *(["--models"] if models else [])]
        try:
            with _signals_ignored():  # the worker starts deaf to Ctrl-C and SIGTERM (see .worker)
                self.process = subprocess.Popen(command, pass_fds=(requests_r, replies_w), env=env,
                                                stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(self._requests)
            os.close(self._replies)
            raise
        finally:
            os.close(requests_r)
            os.close(replies_w)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: dict[int, tuple] = {}
        self._abandoned: set[int] = set()
        self._ready = threading.Condition()
        self._ids = itertools.count(1)
        self._handles = itertools.count(1)
        self.gone = False
        self.used = False  # a run was opened: closing waits for the worker
        threading.Thread(target=self._send_loop, name="mlflow-companion-send", daemon=True).start()
        threading.Thread(target=self._read_loop, name="mlflow-companion-read", daemon=True).start()

    def post(self, op: str, **payload: Any) -> None:
        """Send a request without waiting (its error, if any, comes with the run's next answer)."""
        self._outbox.put((0, op, payload))

    def ask(self, op: str, **payload: Any) -> Any:
        """Send a request and wait for its answer; its error is raised here."""
        return self.wait(self.send(op, **payload))

    def send(self, op: str, **payload: Any) -> int:
        """Send a request whose answer :meth:`wait` collects later; returns its id."""
        request_id = next(self._ids)
        self._outbox.put((request_id, op, payload))
        return request_id

    def wait(self, request_id: int) -> Any:
        """The answer to request ``request_id`` (from :meth:`send`), once it comes; its error is raised here."""
        try:
            with self._ready:
                while request_id not in self._answers and not self.gone:
                    self._ready.wait()
                answer = self._answers.pop(request_id, None)
        except BaseException:  # a signal interrupted the wait: its answer is dropped when it comes
            self._abandoned.add(request_id)
            raise
        if answer is None:
            raise TrackingError(f"MLflow store {self.uri}: the tracking worker (process {self.process.pid}) "
                                f"ended unexpectedly{self._exit_note()}; the run may be left RUNNING")
        result, error, caught = answer
        rewarn(caught)
        if error is not None:
            raise unpack_error(error)
        return result

    def open(self, experiment: str, run_name: str, *, run_id: str | None, tags: Mapping[str, str] | None,
             mode: str) -> RemoteTracker:
        handle = next(self._handles)
        self.used = True
        # Plain strings (as MLflow stores them): a torch object among the tags would make the worker import torch
        # just to unpickle the request, on the stage's path (~1.5 s).
        info = self.ask("open", handle=handle, experiment=experiment, run_name=run_name, run_id=run_id,
                        tags={str(k): str(v) for k, v in tags.items()} if tags else None, mode=mode)
        return RemoteTracker(self, handle, **info)

    def close(self) -> None:
        """Let the worker finish its queue and exit, and wait for it (unless no run was ever opened)."""
        if not self.gone and self.used:
            with contextlib.suppress(TrackingError):
                self.ask("close")
        self._outbox.put(None)
        if self.used:
            self.process.wait()

    def _send_loop(self) -> None:
        while (message := self._outbox.get()) is not None:
            request_id, op, payload = message
            try:  # the payload is pickled apart, so that the worker can answer a request it cannot unpickle
                write_frame(self._requests, (request_id, op, pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)))
            except OSError:  # the worker is gone: the reader thread says so to every waiter
                pass
            except Exception as e:  # the payload cannot be pickled (a model holding a lambda, ...)
                with self._ready:
                    if request_id and request_id not in self._abandoned:
                        self._answers[request_id] = (None, pack_error(e), [])
                    self._ready.notify_all()
        os.close(self._requests)  # the worker sees end-of-file

    def _read_loop(self) -> None:
        try:
            while True:
                request_id, result, error, caught = read_frame(self._replies)
                with self._ready:
                    if request_id in self._abandoned:
                        self._abandoned.discard(request_id)
                    else:
                        self._answers[request_id] = (result, error, caught)
                    self._ready.notify_all()
        except (EOFError, OSError):
            pass
        os.close(self._replies)
        with self._ready:
            self.gone = True
            self._ready.notify_all()

    def _exit_note(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return ""
        return f" (exit status {code})" if code >= 0 else f" ({signal.Signals(-code).name})"


class _signals_ignored:
    """SIGINT, SIGTERM and SIGHUP ignored while a child starts (an ignored signal stays ignored across exec)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> None:
        self.saved = None
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, signal.SIG_IGN) for s in self.SIGNALS}

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in (self.saved or {}).items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def start_companion(uri: str, *, models: bool = False) -> Companion | None:
    """Start the worker for store ``uri`` (``models``: also warm up model logging) and make it :func:`current`;
    None when it cannot start (the stage then tracks in-process)."""
    global _current
    close_companion()
    try:
        _current = Companion(uri, models=models)
    except OSError:
        _current = None
    return _current


def stage_companion(params_path: str, *, run: str | None = None, model_dir: str | None = None,
                    models: bool = False, section: str = "train") -> Callable[[], None] | None:
    """Start the worker of a stage that will track with MLflow; returns :func:`close_companion`, or None.

    The store is read cheaply from the params file before the stage runs (the stage still checks it properly):
    ``train.tracking`` with run ``run``'s overrides (``section="depth"``: with ``curriculum.depth.overrides``;
    ``"curriculum"``: ``curriculum.tracking``); with ``model_dir``, the run ``<model_dir>/mlflow_run.json`` names.
    No worker when the stage will not track with MLflow, on ranks other than 0 of a torchrun job, when the
    process may use one CPU only, or when anything is unclear: the stage then reports it, or tracks in-process.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get("RANK", "0") != "0" or cpus < 2:  # the worker needs a core of its own
        return None
    try:
        uri = _stage_store(params_path, run, model_dir, section)
    except Exception:  # a file missing or malformed: the stage reports it in its own words
        return None
    if uri is None or start_companion(uri, models=models) is None:
        return None
    return close_companion


def _stage_store(params_path: str, run: str | None, model_dir: str | None, section: str) -> str | None:
    import json

    import yaml

    from pipeline.tracking import default_tracking_uri

    with open(params_path, encoding="utf-8") as f:
        raw = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    settings = raw.get("curriculum") or {} if section == "curriculum" else raw["train"]
    if section == "depth":
        overrides = ((raw.get("curriculum") or {}).get("depth") or {}).get("overrides") or {}
    else:
        overrides = ((settings.get("runs") or {}).get(run) or {}).get("overrides") or {} if run else {}
    if {**settings, **overrides}.get("tracking", "mlflow") != "mlflow":
        return None
    if model_dir is None:
        return default_tracking_uri()
    info = json.loads((Path(model_dir) / "mlflow_run.json").read_text(encoding="utf-8"))
    return (info.get("tracking_uri") or default_tracking_uri()) if info.get("run_id") else None


def current(uri: str) -> Companion | None:
    """The running companion for store ``uri``, if any."""
    companion = _current
    if companion is None or companion.uri != uri or companion.gone:
        return None
    return companion


def close_companion() -> None:
    """Close the current companion, waiting until the worker has written everything (see :meth:`Companion.close`)."""
    global _current
    companion, _current = _current, None
    if companion is not None:
        companion.close()
