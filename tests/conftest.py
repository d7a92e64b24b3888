"""Shared fixtures. Everything here is hermetic: no network beyond 127.0.0.1, no ../shared."""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.mlflow_store import _migrated_db, mlflow_uri  # noqa: F401 - fixtures for every test module

REPO_ROOT = Path(__file__).resolve().parent.parent


class FileServer:
    """A real HTTP server on 127.0.0.1 that serves in-memory files, honours Range, and fails on demand.

    ``fail[path] = [500, 500]`` answers the next two requests for ``path`` with those statuses;
    ``cut[path] = n`` sends only the first ``n`` bytes of the next full answer, then drops the connection;
    ``delay[path] = s`` sleeps before answering (for timeouts); ``requests`` logs (path, Range header).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, list[int]] = {}
        self.cut: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.errors: list[BaseException] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                path, rng = self.path, self.headers.get("Range")
                server.requests.append((path, rng))
                if server.delay.get(path):
                    time.sleep(server.delay[path])
                if server.fail.get(path):
                    status = server.fail[path].pop(0)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path not in server.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, start, status = server.files[path], 0, 200
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes=") :].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                limit = server.cut.pop(path, None)
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # socketserver prints a traceback to stderr, which lands in the stderr a test
                # captures from the code under test. A client that hung up (a timeout, a request
                # abandoned after its status) is expected; anything else fails the test at teardown.
                error = sys.exc_info()[1]
                if not isinstance(error, (ConnectionResetError, BrokenPipeError)):
                    server.errors.append(error)

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def file_server():
    server = FileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    assert not server.errors, f"the test file server failed: {server.errors!r}"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with the working directory in a fresh temporary folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_params(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch, tmp_path_factory):
    # music21 writes a user settings/cache folder otherwise; keep it inside pytest's temp area.
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # user caches (~/.cache/seqlab) under that HOME
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if "CI" not in os.environ:
        monkeypatch.setenv("CI", "true")
