"""Run ``mlflow server`` for tests: on 127.0.0.1, in its own process group, stopped whole (no stray workers).

``--workers 1`` with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` answers ``/health`` in ~9-11 s here instead of
~40 s (no job-runner processes). MLflow 3.17's ``mlflow server`` serves the UI, the REST API and (by default,
``--serve-artifacts``) proxied artifacts; runs whose artifact URI is ``file://...`` are read from that folder.
Used through :mod:`tests.mlflow_ui`, which re-exports everything public here.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# A proxy from the environment must never see 127.0.0.1 requests.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job-runner processes; /health in ~11 s instead of ~40 s
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


class ServerUrl(str):
    """The server's base URL (``http://127.0.0.1:PORT``), carrying its process group id and log file."""

    pgid: int
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after "(comm)" (comm may contain spaces): state ppid pgrp ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts_dir: str | Path, port: int | None = None, *,
                  timeout: float = 120.0) -> Iterator[ServerUrl]:
    """Serve ``backend_uri`` (UI + REST API) on 127.0.0.1; yield its base URL; stop every process of it on exit.

    ``artifacts_dir`` is the root for experiments created through the server and for proxied artifacts;
    runs whose artifact URI is ``file://...`` (seqlab's tracker writes ``<repo>/mlartifacts/<experiment>``)
    are read from there directly.
    """
    log = Path(tempfile.mkstemp(prefix="mlflow-server-", suffix=".log")[1])
    proc, url = _start(backend_uri, Path(artifacts_dir), port, log, timeout)
    try:
        yield url
    finally:
        stop_process_group(proc)
    log.unlink(missing_ok=True)


def _start(backend_uri: str, artifacts: Path, port: int | None, log: Path,
           timeout: float) -> tuple[subprocess.Popen, ServerUrl]:
    for _attempt in range(3 if port is None else 1):  # a free port can be taken before the server binds it
        chosen = port or free_port()
        proc = _spawn(backend_uri, artifacts, chosen, log)
        url = ServerUrl(f"http://127.0.0.1:{chosen}")
        url.pgid, url.log_path = proc.pid, log
        try:
            _wait_healthy(proc, url, timeout)
            return proc, url
        except RuntimeError:
            stop_process_group(proc)
            if "address already in use" not in log.read_text(errors="replace").lower():
                raise
    raise RuntimeError(f"mlflow server: no free port after 3 tries; log: {log}")


def _spawn(backend_uri: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--default-artifact-root", artifacts.resolve().as_uri(),
           "--artifacts-destination", artifacts.resolve().as_uri(),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | SERVER_ENV
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=artifacts.parent, start_new_session=True)


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode} before answering /health:\n"
                               + _tail(url))
        try:
            with _NO_PROXY.open(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # not listening yet, or closed on us while starting
            pass
        time.sleep(0.25)
    raise RuntimeError(f"mlflow server did not answer {url}/health within {timeout:.0f} s:\n" + _tail(url))


def _tail(url: ServerUrl, lines: int = 20) -> str:
    text = url.log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(["--- last lines of " + str(url.log_path), *text])


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the whole process group of ``proc`` (a session leader), SIGKILL what is left after ``grace`` s."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader: it is our child
            if proc.returncode is not None and not process_group_members(pgid):
                return
            time.sleep(0.1)
    proc.wait(timeout=5)
