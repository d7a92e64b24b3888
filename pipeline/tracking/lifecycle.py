"""How a tracked run ends, whatever ends it: the one rule every stage and task follows.

* Leaving :func:`tracked_run` normally ends the run FINISHED.
* An exception ends it FAILED, with the first line of the error as the ``failure_reason`` tag.
* Ctrl-C (:class:`KeyboardInterrupt`) and SIGTERM/SIGHUP (:class:`pipeline.errors.Terminated`, a subclass)
  end it KILLED, with "interrupted" or "terminated by SIGTERM" as the reason.
* A run that was *reopened* follows the tracker's own policy (see ``MlflowTracker.resume``): appending to a
  finished run (the evaluate stage logging its figures) never changes its status; continuing a run
  (``--resume``) never turns a FINISHED run into FAILED or KILLED.
* Ending a run twice is harmless: the first end wins (``Tracker.finish`` is idempotent), so the training loop
  may end its run itself and the stage's ``with`` block still guards everything around it.
* If the tracking store itself fails while the run is being ended after another error, the original error
  is what the user sees; the store's failure is one warning line.

Validate inputs *before* opening a run: nothing to end is better than a FAILED run for a typo.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from pipeline.errors import SeqlabWarning, first_line
from pipeline.tracking import Tracker

__all__ = ["end_run", "end_status", "tracked_run"]


def end_status(error: BaseException | None) -> tuple[str, str | None]:
    """``(status, reason)`` for a run left by ``error`` (None: a normal exit)."""
    if error is None:
        return "FINISHED", None
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", str(error) or "interrupted"
    kind, text = type(error).__name__, first_line(error)
    return "FAILED", (text if text == kind else f"{kind}: {text}")[:500]


def end_run(tracker: Tracker, error: BaseException | None = None) -> None:
    """End ``tracker``'s run as ``error`` says (see the module docstring).  With an error already on its way,
    a failure to reach the store is a warning (:class:`SeqlabWarning`) instead of replacing it."""
    status, reason = end_status(error)
    if error is None:
        tracker.finish(status, reason)
        return
    try:
        tracker.finish(status, reason)
    except Exception as e:  # never hide the original error behind a tracking one
        warnings.warn(f"could not mark the tracking run {status}: {first_line(e)}",
                      SeqlabWarning, stacklevel=2)


@contextlib.contextmanager
def tracked_run(tracker: Tracker) -> Iterator[Tracker]:
    """``with tracked_run(open_tracker(...)) as tracker:`` -- the run ends as the block ends (see above)."""
    try:
        yield tracker
    except BaseException as error:
        end_run(tracker, error)
        raise
    end_run(tracker)
