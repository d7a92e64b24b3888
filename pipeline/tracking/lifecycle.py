"""How a tracked run ends: normally FINISHED; on an exception FAILED (tag ``failure_reason``: its first line); on
Ctrl-C or SIGTERM/SIGHUP (:class:`pipeline.errors.Terminated`) KILLED; a *reopened* run as ``MlflowTracker.resume``
says.  The first end wins, so the training loop may end its run inside the stage's ``with`` block.  A store that
cannot end a run after another error is one warning line; the original error stands.  Check inputs *before*
opening a run: a typo leaves no run."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from pipeline.errors import SeqlabWarning, first_line
from pipeline.tracking import Tracker


def end_status(error: BaseException | None) -> tuple[str, str | None]:
    """``(status, reason)`` for a run left by ``error`` (None: a normal exit)."""
    if error is None:
        return "FINISHED", None
    if isinstance(error, KeyboardInterrupt):
        return "KILLED", str(error) or "interrupted"
    kind, text = type(error).__name__, first_line(error)
    return "FAILED", (text if text == kind else f"{kind}: {text}")[:500]


def end_run(tracker: Tracker, error: BaseException | None = None) -> None:
    """End ``tracker``'s run as ``error`` (None: a normal exit) says; see the module docstring."""
    status, reason = end_status(error)
    try:
        tracker.finish(status, reason)
    except Exception as e:  # never hide the original error behind a tracking one
        if error is None:
            raise
        warnings.warn(f"could not mark the tracking run {status}: {first_line(e)}", SeqlabWarning, stacklevel=2)


@contextlib.contextmanager
def tracked_run(tracker: Tracker) -> Iterator[Tracker]:
    """``with tracked_run(open_tracker(...)) as tracker:`` -- the run ends as the block ends (see above)."""
    try:
        yield tracker
    except BaseException as error:
        end_run(tracker, error)
        raise
    end_run(tracker)
