"""The background thread that writes a tracker's buffered metric points while training goes on.

The training thread only appends to a list and hands it over (:meth:`BatchWriter.submit`); the store's slow
synchronous writes happen here, in order.  A write error is kept and raised on the training thread at
:meth:`BatchWriter.wait`, and later lists are dropped until then.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class BatchWriter:
    """One daemon thread that writes submitted point lists in order; errors surface at :meth:`wait`."""

    def __init__(self, write: Callable[[list], None]) -> None:
        self.write = write  # called on the writer thread, one submitted list at a time
        self.queue: queue.Queue[list | None] = queue.Queue()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def submit(self, points: list) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="mlflow-writer", daemon=True)
            self.thread.start()
        self.queue.put(points)

    def wait(self) -> None:
        self.queue.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None

    def _run(self) -> None:
        while (points := self.queue.get()) is not None:
            try:
                if self.error is None:
                    self.write(points)
            except BaseException as e:  # kept for the training thread: raised at wait()/finish()
                self.error = e
            finally:
                self.queue.task_done()
        self.queue.task_done()
