"""The MLflow store seen from outside mlflow: where runs are kept, how long seqlab waits for it, how its errors read."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import UserError, first_line

#: MLflow's HTTP settings, set by :func:`check_server` unless set: its defaults (120 s a try, 7 retries, backoff 2)
#: wait minutes on a lost server; these give up after ~62 s at most (3 tries of 20 s), ~2 s if nothing listens.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be reached or refuses a request; the message names the store."""


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock per sqlite file, kept in the temp folder (not beside the database, not in git)."""
    key = hashlib.sha1(str(Path(uri[len("sqlite:///"):]).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"seqlab-mlflow-{key}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def check_server(uri: str) -> None:
    """Bound MLflow's HTTP waits (:data:`HTTP_SETTINGS`); for an ``http(s)://`` URI, raise :class:`TrackingError` unless
    ``<uri>/health`` answers within 5 s (``SEQLAB_TRACKING_TIMEOUT``); any HTTP answer (even 401/404) counts."""
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    if not uri.startswith(("http://", "https://")):
        return
    try:
        timeout = float(os.environ.get("SEQLAB_TRACKING_TIMEOUT") or 5)
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError:  # it answered: reachable (auth and routing are MLflow's business)
        return
    except (OSError, ValueError) as e:
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({getattr(e, 'reason', None) or e}): start it (mlflow "
            f"server --host ... --port ...), fix MLFLOW_TRACKING_URI, or unset it to use the local sqlite store "
            f"(or set train.defaults.tracking: none)") from e


def artifact_location(uri: str, experiment: str) -> str | None:
    """A new experiment's artifacts: ``<sqlite file's folder>/mlartifacts/<experiment>`` (not the current directory's
    ``./mlruns``: a temporary copy under ``dvc exp run --queue``); None for a server."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / experiment).as_uri()


#: A database driver's words ("(sqlite3.OperationalError) attempt to write a readonly database"), and a network's.
_DRIVER_ERROR = re.compile(r"\((?:sqlite3|psycopg2?|pymysql|MySQLdb)[\w.]*\) ([^\n\[]+)")
_NETWORK_ERROR = re.compile(r"(\[Errno -?\d+\] [^'\")\]]+|Read timed out|Connection aborted|RemoteDisconnected)")


def store_error_message(error: BaseException) -> str:
    """One line for a store failure: the database driver's or the network's own words when they are anywhere in
    the error or its causes (SQLAlchemy's first line is often advice about autoflush), else its first line."""
    chain = [error]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and cause not in chain:
        chain.append(cause)
    for e in chain:
        if match := _DRIVER_ERROR.search(str(e)) or _NETWORK_ERROR.search(str(e)):
            return match.group(1).strip()[:300]
    return first_line(error)[:300]


def store_failure(uri: str, error: BaseException) -> TrackingError:
    """The one-line :class:`TrackingError` for ``error`` of store ``uri``: its cause and what to do."""
    cause = store_error_message(error)
    fix = "check MLFLOW_TRACKING_URI or set train.defaults.tracking: none"
    if uri.startswith("sqlite:///") and cause in ("disk I/O error", "database or disk is full"):  # no room to grow
        fix = (f"{uri[len('sqlite:///'):]} could not grow: the disk is full or a file size limit (ulimit -f) was "
               f"reached; free space or raise the limit, or set train.defaults.tracking: none")
    return TrackingError(f"MLflow store {uri}: {cause} ({fix})")
