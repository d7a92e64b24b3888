"""A process pool whose results never depend on how many workers ran them.

``pool_map(fn, items, workers)`` returns ``[fn(x) for x in items]`` in input order,
whatever ``workers`` is: every item is processed independently and the results are
gathered by position, so worker count changes speed only.  ``workers`` <= 0 means
every CPU this process may use; 1 (or a single item) runs in this process, with no pool.

Workers are forked on Linux, so music21 (imported once by the parent) is not imported
again per worker; elsewhere they are spawned.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from pipeline.runtime import resolve_workers

__all__ = ["pool_map", "resolve_workers"]

T = TypeVar("T")
R = TypeVar("R")


def pool_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 0) -> list[R]:
    """``[fn(x) for x in items]``, computed by up to ``workers`` processes; ``fn`` must be module-level."""
    n = resolve_workers(workers, len(items))
    if n == 1:
        return [fn(x) for x in items]
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with multiprocessing.get_context(method).Pool(n) as pool:
        # small chunks: files differ a lot in size; results come back in input order whatever the chunking
        return pool.map(fn, items, chunksize=max(1, len(items) // (n * 8)))
