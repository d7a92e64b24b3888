"""The independent trainings of an experiment, side by side on the CPU's cores, with the same results as one by one.

An experiment such as ``agreement`` trains fifteen tiny models, each on one thread: run one after another they leave
the second core of a 2-core machine idle.  :func:`run_jobs` runs each job in a forked child process, up to
``workers`` at a time, and returns their results in the order of the jobs.  Every job seeds itself and trains on
the thread count the stage set, so its numbers do not depend on ``workers``, on the order the jobs finish in, or
on which process ran it (``tests/test_curriculum_parallel.py`` compares an experiment's figures between 1 and 2
workers).

Tracking stays in the stage's process: the stage opens each job's run as the job starts (so its start time and
the RUNNING state are true while it trains), and the child gets a :class:`RelayTracker` that sends every
call (metric points batched) through a ``multiprocessing`` pipe; the stage passes them on to the run in the
order they were made.  Only the stage ever talks to the store.

Failures: a job's exception is raised in the stage, as itself (or described, for a class a stage cannot load),
after the other children are stopped; a child that dies without a result (killed, out of memory) is an error
naming the job and how it ended.  A stop of the stage (Ctrl-C, SIGTERM) stops and reaps the children before it
propagates, so the experiment's runs are marked KILLED and no child trains on for nobody.  A child whose stage
disappeared (``kill -9``) ends at its next tracking call, when the pipe breaks.

Forking is used only where it is safe and pays: on Linux, on the CPU, with one intra-op thread per job (an
OpenMP runtime that ran a parallel region cannot be forked reliably).  Everywhere else the jobs run one by one
in the stage's process, with their own trackers, as before.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from pipeline.runtime import resolve_workers
from pipeline.tracking import Tracker

__all__ = ["Job", "JobDiedError", "RelayTracker", "plan_workers", "run_jobs"]

R = TypeVar("R")

#: Metric points a :class:`RelayTracker` collects before sending them, and the longest it keeps one (seconds).
SEND_POINTS, SEND_SECONDS = 200, 0.5
#: Seconds a child has to end after SIGTERM before it gets SIGKILL.
STOP_SECONDS = 5.0


class JobDiedError(RuntimeError):
    """A job's process ended without a result or an error: killed by a signal or by the kernel (out of memory)."""


@dataclass
class Job(Generic[R]):
    """One independent training: ``open()`` opens its tracking run (in the stage, as the job starts) and
    ``run(tracker)`` trains and returns what the stage needs (picklable)."""

    name: str
    open: Callable[[], Tracker]
    run: Callable[[Tracker], R]


def plan_workers(workers: int, n_jobs: int, device: str = "cpu") -> int:
    """How many jobs run at once: ``workers`` (<= 0: one per usable CPU), at most ``n_jobs``; 1 where forking
    is unsafe: not Linux, a device other than the CPU, or more than one intra-op thread in this process."""
    if not sys.platform.startswith("linux") or str(device) != "cpu" or torch.get_num_threads() != 1:
        return 1
    return resolve_workers(workers, n_jobs)


def run_jobs(jobs: Sequence[Job[R]], workers: int = 0, device: str = "cpu") -> list[R]:
    """``[job.run(job.open()) for job in jobs]``, computed by up to :func:`plan_workers` child processes."""
    n = plan_workers(workers, len(jobs), device)
    if n == 1:
        return [job.run(job.open()) for job in jobs]
    _warm_up()
    return _Pool(jobs, n).run()


def _warm_up() -> None:
    """Do once, before forking, what every job would otherwise do for itself: the first backward pass sets up
    autograd."""
    weight = torch.zeros(2, requires_grad=True)
    (weight * weight).sum().backward()


class RelayTracker:
    """The :class:`pipeline.tracking.Tracker` a job's child process sees: each call goes to the stage through a
    pipe (``connection``), without waiting.  Metric points are sent in batches; every other call sends those
    first, so the stage receives the calls in the order they were made."""

    run_id: str | None = None

    def __init__(self, connection: Connection, run_id: str | None = None) -> None:
        self.connection, self.run_id = connection, run_id
        self._points: list[tuple[dict[str, float], int]] = []
        self._sent_at = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._points.append(({k: float(v) for k, v in metrics.items()}, int(step)))
        if len(self._points) >= SEND_POINTS or time.monotonic() - self._sent_at >= SEND_SECONDS:
            self.send_points()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._call("log_params", dict(params))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._call("set_tags", dict(tags))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path)

    def log_model(self, model: Any, name: str = "model", *, pip_requirements: Sequence[str] = (),
                  code_paths: Sequence[str] = ()) -> None:
        self._call("log_model", model, name, pip_requirements=list(pip_requirements), code_paths=list(code_paths))

    def flush(self) -> None:
        self._call("flush")

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        self._call("finish", status, reason)

    def send_points(self) -> None:
        """Send the points collected so far (every other call does so first)."""
        points, self._points = self._points, []
        self._sent_at = time.monotonic()
        if points:
            _send(self.connection, ("points", points))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.send_points()
        _send(self.connection, ("call", method, args, kwargs))


@dataclass
class _Child:
    index: int
    pid: int
    connection: Connection  # the read end of its pipe, in the stage
    tracker: Tracker


class _Pool:
    """Starts the children, relays their tracking, collects their results; always reaps every child it started."""

    def __init__(self, jobs: Sequence[Job], workers: int) -> None:
        self.jobs, self.workers = jobs, workers
        self.results: dict[int, Any] = {}
        self.running: dict[Connection, _Child] = {}  # by read end

    def run(self) -> list[Any]:
        waiting = collections.deque(range(len(self.jobs)))
        try:
            while waiting or self.running:
                while waiting and len(self.running) < self.workers:
                    self._start(waiting.popleft())
                for connection in wait(list(self.running)):
                    self._receive(self.running[connection])
        finally:
            self._stop_all()
        return [self.results[i] for i in range(len(self.jobs))]

    def _start(self, index: int) -> None:
        tracker = self.jobs[index].open()
        reader, writer = multiprocessing.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            for connection in (reader, *self.running):  # its read end and earlier children's: the stage's alone
                connection.close()
            _child_main(self.jobs[index], writer, tracker.run_id)
        writer.close()
        self.running[reader] = _Child(index, pid, reader, tracker)

    def _receive(self, child: _Child) -> None:
        job = self.jobs[child.index]
        try:
            message = pickle.loads(child.connection.recv_bytes())
        except (EOFError, OSError):  # no message, or half of one: the child is gone
            raise JobDiedError(f"{job.name}: its process ended without a result ({self._reap(child)}); "
                               "if it was killed for lack of memory, set curriculum.workers: 1") from None
        kind = message[0]
        if kind == "points":
            for metrics, step in message[1]:
                child.tracker.log_metrics(metrics, step=step)
        elif kind == "call":
            _, method, args, kwargs = message
            getattr(child.tracker, method)(*args, **kwargs)
        elif kind == "done":
            self.results[child.index] = message[1]
            self._reap(child)
        else:  # "error"
            self._reap(child)
            raise message[1]

    def _reap(self, child: _Child) -> str:
        """Wait for ``child`` to end; how it ended (exit code or signal)."""
        self._forget(child)
        return _describe(os.waitpid(child.pid, 0)[1])

    def _forget(self, child: _Child) -> None:
        del self.running[child.connection]
        child.connection.close()

    def _stop_all(self) -> None:
        """Stop the children still running (an error or a stop of the stage) and wait for each: SIGTERM (the
        children's default action ends them at once), and SIGKILL for one still there after ``STOP_SECONDS``."""
        for child in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while self.running:
            for child in list(self.running.values()):
                if os.waitpid(child.pid, os.WNOHANG)[0]:
                    self._forget(child)
                elif time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)
            time.sleep(0.01)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _child_main(job: Job, connection: Connection, run_id: str | None) -> None:
    """Run ``job`` with a relay to the stage and leave by ``os._exit``: the stage's exit handlers, open runs and
    buffered files belong to the stage, not to this copy of it."""
    code, relay = 0, RelayTracker(connection, run_id)
    try:
        result = job.run(relay)
        relay.send_points()  # the points logged after the run's last other call
        _send(connection, ("done", result))
    except BaseException as error:  # noqa: BLE001 - every failure goes to the stage, which decides
        code = 1
        with contextlib.suppress(BaseException):
            relay.send_points()
            _send(connection, ("error", _sendable(error)))
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _send(connection: Connection, message: tuple) -> None:
    """Send ``message`` pickled by the standard pickler: ``Connection.send`` would use the one torch extends to
    pass tensors through shared memory, which the stage cannot open once the child has exited."""
    connection.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _sendable(error: BaseException) -> BaseException:
    """``error`` itself when it survives pickling as its own class, else a ``RuntimeError`` that names its class
    and message and carries the job's traceback as a note."""
    with contextlib.suppress(Exception):
        if type(pickle.loads(pickle.dumps(error))) is type(error):
            return error
    described = RuntimeError(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
    described.add_note("in the job's process:\n" + "".join(traceback.format_exception(error)).rstrip())
    return described
