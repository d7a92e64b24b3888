"""A tracking store that fails under a real training stage (a subprocess each, a real ``mlflow server`` or sqlite file).

* A server killed mid-training: one warning line within seconds, training goes on, and every record is written
  once the server is back (exit 0, the run FINISHED, no metric step missing).
* A server that stays away: the stage ends ``SEQLAB_TRACKING_WAIT`` s after training with one error line and its
  checkpoint; SIGTERM while the server is away ends a stage within 10 s with 143.
* A sqlite store that stops taking writes (a file-size limit): one warning line at once naming the file and the
  cause, one error line at the end, the run FAILED; ``--resume auto`` then continues from the checkpoint (no new
  training) and ends the run FINISHED without its old ``failure_reason``.
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.files import read_json
from tests.conftest import REPO_ROOT
from tests.mlflow_ui import free_port, mlflow_server
from tests.train_helpers import complete_params, tiny_params, tiny_run, write_dataset

pytestmark = pytest.mark.slow

STEPS = 300
PARAMS = tiny_params({"names-lstm": tiny_run(overrides={"epochs": 1000, "max_steps": STEPS, "val_every_steps": 50}),
                      "names-long": tiny_run("long", overrides={"epochs": 100000})},
                     checkpoint_every_steps=10, sample={"n": 1, "max_length": 10})
AWAY = "the stage goes on, keeping up to 100,000 metric points"


@pytest.fixture
def workspace(tmp_path, _migrated_db) -> Path:
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    for name in ("mlflow.db", "server.db"):
        shutil.copy(_migrated_db, tmp_path / name)
    return tmp_path


class Stage:
    """``python -m stages.train`` as a child, its stderr lines collected with the time each arrived."""

    def __init__(self, root: Path, uri: str, run: str, out: str, *extra: str, wait: float = 60, preexec=None):
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri,
               "SEQLAB_TRACKING_WAIT": str(wait)}
        self.out, self.work = root / out, root / ".seqlab/runs" / out  # the checkpoints: <work>/<fingerprint>/
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stages.train", "--params", "params.yaml", "--run", run, "--data",
             "data/tokens/names-char", "--out", out, *extra], cwd=root, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
        self.lines: list[tuple[float, str]] = []  # stderr
        self.output: list[tuple[float, str]] = []  # stdout
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in ((self.proc.stderr, self.lines), (self.proc.stdout, self.output))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[tuple[float, str]]) -> None:
        for line in stream:
            lines.append((time.monotonic(), line.rstrip("\n")))

    def stderr(self) -> list[str]:
        """What seqlab says on stderr (the progress lines of each validation left out)."""
        return [line for _, line in self.said()]

    def said(self) -> list[tuple[float, str]]:
        return [(t, line) for t, line in self.lines if not line.startswith(self.out.name + ": ")]

    def wait_until(self, done, seconds: float = 90, what: str = "") -> float:
        deadline = time.monotonic() + seconds
        while not done():
            assert self.proc.poll() is None, (what, self.stderr())
            assert time.monotonic() < deadline, (f"no {what} within {seconds} s", self.stderr())
            time.sleep(0.05)
        return time.monotonic()

    def end(self, timeout: float) -> tuple[int, float]:
        """The exit status, and the seconds it took from now."""
        start = time.monotonic()
        self.proc.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=5)
        return self.proc.returncode, time.monotonic() - start

    def step(self) -> int:
        """The step of the training's last checkpoint (0: none yet)."""
        from pipeline.training.checkpoints import load_training_checkpoint

        try:
            return load_training_checkpoint(next(self.work.glob("*/checkpoint.pt")))["loop"]["step"]
        except (StopIteration, OSError, RuntimeError, ValueError):  # not there yet, or being replaced
            return 0

    def warned(self) -> bool:
        return any(AWAY in line for line in self.stderr())


def kill_server(url) -> float:
    os.killpg(url.pgid, signal.SIGKILL)  # the server's whole process group, as a crash would
    return time.monotonic()


def assert_clean(lines: list[str]) -> None:
    assert all(line.startswith("seqlab: ") for line in lines), "\n".join(lines)  # no traceback, no MLflow log


def test_a_server_killed_mid_training_gets_every_record_once_it_is_back(workspace):
    from mlflow import MlflowClient

    port, backend = free_port(), f"sqlite:///{workspace / 'server.db'}"
    with mlflow_server(backend, workspace / "artifacts", port) as url:
        stage = Stage(workspace, url, "names-lstm", "models/a", wait=240)
        stage.wait_until(lambda: stage.step() >= 10, what="first checkpoint")
        killed = kill_server(url)
    warned = stage.wait_until(stage.warned, what="warning")
    assert warned - killed < 20
    stage.wait_until(lambda: stage.step() >= STEPS, what="last checkpoint while the server is away")
    with mlflow_server(backend, workspace / "artifacts", port) as url:
        code, _ = stage.end(timeout=240)
        lines = stage.stderr()
        assert code == 0, lines
        assert_clean(lines)
        assert len(lines) == 1 and AWAY in lines[0], lines  # one line for the outage, none at the end
        client = MlflowClient(url)
        run_id = read_json(stage.out / "mlflow_run.json")["run_id"]
        assert client.get_run(run_id).info.status == "FINISHED"
        steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
        with open(stage.out / "grad_norms.csv") as rows:  # one row per logging interval
            assert steps == [int(row["step"]) for row in csv.DictReader(rows)]  # nothing lost meanwhile
        assert len(client.get_metric_history(run_id, "grad_norm")) == STEPS


def test_a_server_that_stays_away_ends_the_stage_with_one_line_and_sigterm_within_seconds(workspace):
    with mlflow_server(f"sqlite:///{workspace / 'server.db'}", workspace / "artifacts") as url:
        lost = Stage(workspace, url, "names-lstm", "models/lost", wait=5)
        term = Stage(workspace, url, "names-long", "models/term", wait=5)
        for stage in (lost, term):
            stage.wait_until(lambda stage=stage: stage.step() >= 10, what="first checkpoint")
        killed = kill_server(url)
    term.wait_until(term.warned, what="warning")
    term.proc.send_signal(signal.SIGTERM)
    code, seconds = term.end(timeout=30)
    assert code == 143 and seconds < 10, (code, seconds, term.stderr())
    assert_clean(term.stderr())
    assert term.stderr()[-1].startswith("seqlab: terminated by SIGTERM")
    assert term.step() >= 10  # its checkpoint is kept
    code, _ = lost.end(timeout=120)
    lines = lost.stderr()
    assert code == 2 and time.monotonic() - killed < 60, lines
    assert_clean(lines)
    assert len(lines) == 2 and AWAY in lines[0], lines
    assert lines[1].startswith(f"seqlab: error: MLflow store {url} did not take the run's records for 5 s"), lines
    assert "metric points not written" in lines[1] and "--resume auto" in lines[1]
    assert lost.step() == STEPS


def _status_and_tags(db: Path, run_id: str) -> tuple[str, dict[str, str]]:
    with sqlite3.connect(db) as con:
        status = con.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]
        return status, dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())


def test_a_store_that_stops_taking_writes_is_one_line_at_once_and_the_resume_continues(workspace):
    db = workspace / "mlflow.db"
    uri = f"sqlite:///{db}"
    limit = db.stat().st_size + 64 * 1024  # room for the run and its first points; the checkpoint (~55 KB) fits

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    stage = Stage(workspace, uri, "names-lstm", "models/full", wait=5, preexec=small_files)
    code, _ = stage.end(timeout=120)
    lines = stage.stderr()
    assert code == 2, lines
    assert_clean(lines)
    assert len(lines) == 2, lines
    assert f"{db} could not grow" in lines[0] and "ulimit -f" in lines[0] and AWAY in lines[0]
    everything = [line for _, line in stage.lines]
    last_validation = next(i for i, line in enumerate(everything) if f" step {STEPS}: " in line)
    assert everything.index(lines[0]) < last_validation  # said while training went on, not at its end
    assert lines[1].startswith("seqlab: error: ") and "run marked FAILED" in lines[1], lines[1]
    with sqlite3.connect(db) as con:
        (run_id,) = con.execute("SELECT run_uuid FROM runs").fetchone()  # the one run of this store
    status, tags = _status_and_tags(db, run_id)
    assert status == "FAILED" and "metric points not written" in tags["failure_reason"]
    assert stage.step() == STEPS and not (stage.out / "metrics.json").exists()

    again = Stage(workspace, uri, "names-lstm", "models/full", "--resume", "auto")
    code, _ = again.end(timeout=120)
    assert code == 0, again.stderr()
    assert any(line.startswith(f"resuming from step {STEPS} ") for _, line in again.output), again.output
    status, tags = _status_and_tags(db, run_id)
    assert status == "FINISHED" and "failure_reason" not in tags, tags
    assert read_json(stage.out / "metrics.json")["steps"] == STEPS  # continued, not trained again
