"""Training time: the clock behind ``train_seconds``, the time budget and tokens/s.

Only training counts: the loop restarts the timer after each validation and checkpoint, and takes a lap at
each logging interval.  The time source is injected (``time.perf_counter`` by default), so a test can drive
a run's time budget with a clock of its own and know the exact step it stops at.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]  # seconds from an arbitrary origin, never decreasing


class TrainingTimer:
    """Seconds of training since the last :meth:`restart` or :meth:`lap`."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self._since = clock()

    def restart(self) -> None:
        """Start timing training work again (after work that is not training: validation, checkpoints)."""
        self._since = self.clock()

    def running(self) -> float:
        """Seconds since the last restart or lap."""
        return self.clock() - self._since

    def lap(self) -> float:
        """Seconds since the last restart or lap (at least 1 ns: a rate divides by it); starts the next lap."""
        now = self.clock()
        seconds, self._since = max(now - self._since, 1e-9), now
        return seconds
