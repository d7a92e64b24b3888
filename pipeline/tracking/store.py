"""The MLflow store seen from outside mlflow: its server probe, file lock, artifact folder and error lines.

Pure Python (no mlflow import), so the rules about *where* runs are kept and *how* a store failure is told
can be read and tested without the client; :mod:`.mlflow_tracker` calls them.

A tracking *server* (``http(s)://`` URI) is probed at ``/health`` with a short timeout when a run opens
(:func:`check_server`): an unreachable one stops the stage with one line before any training, where MLflow's
own client would retry for minutes.  Any HTTP answer (even 401/404) counts as reachable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path

from pipeline.errors import SeqlabWarning, UserError

#: Seconds to wait for a tracking server's /health when a run opens (``SEQLAB_TRACKING_TIMEOUT`` overrides).
SERVER_PROBE_SECONDS = 5.0


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be reached or refuses a request; the message names the store."""


class OrphanRunWarning(SeqlabWarning):
    """A run left RUNNING by a process that no longer exists was marked KILLED."""


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock per sqlite file, kept in the temp folder (not beside the database, not in git)."""
    key = hashlib.sha1(str(Path(uri[len("sqlite:///"):]).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"seqlab-mlflow-{key}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_server(uri: str, timeout: float | None = None) -> None:
    """For an ``http(s)://`` tracking URI, raise :class:`TrackingError` (one line) unless ``<uri>/health`` answers.

    Other stores (sqlite, file) are local and need no probe.  The timeout defaults to
    ``SEQLAB_TRACKING_TIMEOUT`` or :data:`SERVER_PROBE_SECONDS`.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error  # here: http.client and ssl cost a stage ~50 ms to import, and only a server needs them
    import urllib.request

    timeout = timeout or float(os.environ.get("SEQLAB_TRACKING_TIMEOUT", SERVER_PROBE_SECONDS))
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:  # it answered: reachable (auth and routing are MLflow's business)
        return
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({reason}): start it (mlflow server --host ... "
            f"--port ...), fix MLFLOW_TRACKING_URI, or unset it to use the local sqlite store "
            f"(or set train.tracking: none)") from e


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<folder of the sqlite file>/mlartifacts/<experiment>``.

    MLflow's own default for a database store is ``./mlruns`` relative to the *current* directory, which
    under ``dvc exp run --queue`` is a temporary copy that is deleted afterwards.  A server (http) decides.
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):])
    return (database.resolve().parent / "mlartifacts" / experiment).as_uri()


#: What a database driver says, e.g. "(sqlite3.OperationalError) attempt to write a readonly database".
_DRIVER_ERROR = re.compile(r"\((?:sqlite3|psycopg2?|pymysql|MySQLdb)[\w.]*\) ([^\n\[]+)")


def store_error_message(error: BaseException) -> str:
    """One line for a store failure: the database driver's own words when they are anywhere in the error or
    its causes (SQLAlchemy's first line is often advice about autoflush), else the error's first line."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = _DRIVER_ERROR.search(str(current))
        if match:
            return match.group(1).strip()[:300]
        if type(current).__module__.startswith(("sqlite3", "psycopg", "pymysql")):
            return str(current).splitlines()[0][:300]
        current = current.__cause__ or current.__context__
    return (str(error).splitlines() or [type(error).__name__])[0][:300] or type(error).__name__
