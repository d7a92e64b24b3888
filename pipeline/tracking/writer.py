"""The thread that writes a tracker's records to the store, one job at a time, in order.  A job the store refuses
(``transient(error)`` false) is dropped, its error kept in ``refused``.  A job that fails because the store is away
stays first, tried again every ``retry_seconds``, the later ones behind it; ``report(error)`` says when it went."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class BatchWriter:
    def __init__(self, transient: Callable[[BaseException], bool], report: Callable[[BaseException], None],
                 retry_seconds: float = 2.0) -> None:
        self.transient, self.report, self.retry_seconds = transient, report, retry_seconds
        self.jobs: collections.deque[tuple[Callable[[], None], int]] = collections.deque()  # (write, its points)
        self.cond, self.pending_points, self.closed = threading.Condition(), 0, False
        self.refused: BaseException | None = None  # the first job the store refused, until the caller takes it
        self.outage: BaseException | None = None  # why the first job waits, while the store is away
        self.away_since = 0.0  # when the store went away
        threading.Thread(target=self._run, name="mlflow-writer", daemon=True).start()  # a daemon: never holds up exit

    def submit(self, write: Callable[[], None], points: int = 0) -> None:
        with self.cond:
            self.jobs.append((write, points))
            self.pending_points += points
            self.cond.notify_all()  # wakes a retry too

    def wait(self, seconds: float, patient: bool = False) -> bool:
        """True once all is done, False after ``seconds`` (``patient``: of the store away, not of slow work); a
        signal interrupts it."""
        start = time.monotonic()
        with self.cond:
            while self.jobs:
                since = (max(start, self.away_since) if self.outage else time.monotonic()) if patient else start
                if (left := since + seconds - time.monotonic()) <= 0:
                    return False
                self.cond.wait(left)
            return True

    def close(self, drop: bool = False) -> None:
        """End the thread once the jobs are done; ``drop``: now, leaving them unwritten."""
        with self.cond:
            self.closed = True
            if drop:
                self.jobs.clear()
                self.pending_points = 0
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.jobs or self.closed)
                if not self.jobs:
                    return
                job = self.jobs[0]
            try:
                job[0]()
            except Exception as e:  # every failure is either waited out or kept for the caller
                if self.transient(e):
                    if self.outage is None:
                        self.away_since = time.monotonic()
                        self.report(e)
                    self.outage = e
                    with self.cond:
                        self.cond.notify_all()  # a patient wait counts from now
                        self.cond.wait(self.retry_seconds)
                    continue
                self.refused = self.refused or e
            with self.cond:
                if self.jobs and self.jobs[0] is job:  # not if close(drop=True) came meanwhile
                    self.jobs.popleft()
                    self.pending_points -= job[1]
                self.cond.notify_all()
            self.outage = None
