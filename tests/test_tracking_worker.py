"""The tracking worker (pipeline/tracking/companion.py, worker.py): a stage's MLflow run kept by a companion
process, on a real sqlite store with real subprocesses.

What must hold as it did in-process: the run ends FINISHED with its params, metrics, artifacts and model; a
signal to the whole process group (Ctrl-C, a CI cancel) ends the stage with 130/143 and the run KILLED; and a
stage killed with -9 alone leaves its run KILLED by its worker, naming the gone process, with no later stage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.train_helpers import complete_params, tiny_params, tiny_run, write_dataset

PARAMS = tiny_params({"names-lstm": tiny_run(),
                      "names-long": tiny_run("long", overrides={"epochs": 100000, "checkpoint_every_steps": 5}),
                      # few checkpoints: a signal that lands inside torch.save is another story (a failed write)
                      "names-quiet": tiny_run("quiet", overrides={"epochs": 100000, "checkpoint_every_steps": 10**6})},
                     sample={"n": 1, "max_length": 10})


@pytest.fixture
def workspace(tmp_path, _migrated_db) -> Path:
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    write_dataset(tmp_path / "data/tokens/names-char")
    shutil.copy(_migrated_db, tmp_path / "mlflow.db")
    return tmp_path


def start_train(root: Path, run: str, out: str, *python_options: str) -> subprocess.Popen:
    """The train stage in a process group of its own (so that a test can signal the stage and its worker);
    ``python_options`` go to the stage's interpreter only (``-X importtime``), not to its worker's."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    command = [sys.executable, *python_options, "-m", "stages.train", "--params", "params.yaml", "--run", run, "--data",
               "data/tokens/names-char", "--out", out]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, as a shell with job control gives it: a test run started in the background (a CI
    job, ``cmd &``) inherits SIGINT ignored, and the stage keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_row(root: Path, run_id: str) -> tuple[str, dict[str, str], set[str]]:
    """(status, tags, metric keys) of a run, read straight from the sqlite file."""
    with sqlite3.connect(root / "mlflow.db") as db:
        status = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]
        tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())
        metrics = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics WHERE run_uuid = ?", (run_id,))}
    return status, tags, metrics


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_stage_tracks_through_its_worker_and_the_store_holds_everything(workspace):
    proc = start_train(workspace, "names-lstm", "models/lstm", "-X", "importtime")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "seqlab:" not in err and "Traceback" not in err, err
    imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert "torch.optim" in imported and "torch._dynamo" not in imported  # its 1-3 s are no training's business
    run_id = json.loads((workspace / "models/lstm/mlflow_run.json").read_text())["run_id"]
    status, tags, metrics = run_row(workspace, run_id)
    assert status == "FINISHED"
    assert tags["seqlab.pid"] == str(proc.pid)  # the run belongs to the stage, not to its worker
    assert {"grad_norm", "train_loss", "val_loss", "val_bpc", "epoch"} <= metrics
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.data.params["model.cell"] == "lstm" and run.data.tags["stop_reason"] == "completed"
    assert {"vocab.json", "metrics.json", "loss.png", "samples"} <= {a.path for a in client.list_artifacts(run_id)}
    assert client.search_logged_models([run.info.experiment_id])


def test_a_stage_killed_with_9_alone_has_its_run_closed_by_its_worker(workspace):
    proc = start_train(workspace, "names-long", "models/long")
    wait_for(workspace / "models/long/checkpoint.pt", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)  # the worker holds the same stderr: this returns once it has exited too
    run_id = json.loads((workspace / "models/long/mlflow_run.json").read_text())["run_id"]
    status, tags, _ = run_row(workspace, run_id)
    assert status == "KILLED"
    assert f"process {proc.pid} " in tags["failure_reason"] and "ended without closing the run" in tags["failure_reason"]


@pytest.mark.parametrize(("signum", "code", "reason"), [(signal.SIGINT, 130, "interrupted"),
                                                        (signal.SIGTERM, 143, "terminated by SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_process_group_ends_the_stage_and_its_run_killed(workspace, signum, code, reason):
    proc = start_train(workspace, "names-quiet", "models/quiet")
    wait_for(workspace / "models/quiet/mlflow_run.json", proc)  # the run is open: training starts
    time.sleep(1.0)
    os.killpg(proc.pid, signum)  # the stage and its worker, as Ctrl-C in a terminal or a CI cancel
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("seqlab: ")
    run_id = json.loads((workspace / "models/quiet/mlflow_run.json").read_text())["run_id"]
    status, tags, _ = run_row(workspace, run_id)
    assert status == "KILLED" and tags["failure_reason"] == reason


def test_the_worker_api_in_process(mlflow_uri, tmp_path):
    """start_companion + open_tracker: a RemoteTracker whose run the worker writes; closing waits for it."""
    import torch
    from mlflow import MlflowClient

    from pipeline.tracking.companion import close_companion, start_companion
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.remote import RemoteTracker

    companion = start_companion(mlflow_uri)
    try:
        tracker = open_tracker("mlflow", "worker-api", "one", tags={"k": "v"})
        assert isinstance(tracker, RemoteTracker)
        tracker.log_params({"lr": 0.1, "cell": None})
        for step in range(1200):  # more than one batch of points
            tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        (tmp_path / "note.txt").write_text("hello")
        tracker.log_artifact(tmp_path / "note.txt", "notes")
        tracker.log_model(torch.nn.Linear(2, 3), "model")
        tracker.finish()
        tracker.finish("FAILED", "a second end does nothing")
    finally:
        close_companion()
    assert companion.process.poll() == 0
    client = MlflowClient(mlflow_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1", "cell": "None"}
    assert run.data.tags["k"] == "v" and "failure_reason" not in run.data.tags
    assert len(client.get_metric_history(tracker.run_id, "loss")) == 1200
    assert [a.path for a in client.list_artifacts(tracker.run_id, "notes")] == ["notes/note.txt"]
    assert client.search_logged_models([tracker.experiment_id])


class _Unpicklable(__import__("torch").nn.Linear):
    """A model that cannot be sent to the worker (pickling it fails), as one holding a lambda."""

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle this model: it holds a lambda")


def test_a_model_that_cannot_be_written_fails_the_run_at_the_next_waiting_call(mlflow_uri):
    """log_model returns while the worker writes (the stage draws its plots meanwhile); its error is raised by
    the next call that waits, and ending the run FAILED then works and records the reason."""
    from mlflow import MlflowClient

    from pipeline.tracking.companion import close_companion, start_companion
    from pipeline.tracking.factory import open_tracker

    companion = start_companion(mlflow_uri)
    try:
        tracker = open_tracker("mlflow", "worker-model", "bad")
        tracker.log_model(_Unpicklable(2, 3), "model")  # sent, not awaited: no error yet
        tracker.log_metrics({"loss": 1.0}, step=0)  # still none: metric points never wait
        with pytest.raises(TypeError, match="cannot pickle this model"):
            tracker.set_tags({"stop_reason": "completed"})
        tracker.finish("FAILED", "cannot pickle this model")
        good = open_tracker("mlflow", "worker-model", "good")
        good.log_model(_Unpicklable.__mro__[1](2, 3), "model")
        with pytest.raises(TypeError, match="cannot pickle"):  # a FINISHED end waits for the model too
            other = open_tracker("mlflow", "worker-model", "late")
            other.log_model(_Unpicklable(2, 3), "model")
            other.finish()
        other.finish("FAILED", "model")
        good.finish()
    finally:
        close_companion()
    assert companion.process.poll() == 0
    client = MlflowClient(mlflow_uri)
    bad = client.get_run(tracker.run_id)
    assert bad.info.status == "FAILED" and bad.data.tags["failure_reason"] == "cannot pickle this model"
    assert "stop_reason" not in bad.data.tags  # the tags call that raised wrote nothing
    assert client.get_run(other.run_id).info.status == "FAILED"
    assert client.get_run(good.run_id).info.status == "FINISHED"
    assert client.search_logged_models([good.experiment_id])  # the good model was written


def test_a_worker_that_died_is_one_line_and_the_store_error_keeps_its_words(mlflow_uri, tmp_path):
    from pipeline.tracking.companion import close_companion, start_companion
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.store import TrackingError

    companion = start_companion(mlflow_uri)
    try:
        tracker = open_tracker("mlflow", "worker-errors", "one")
        with pytest.raises(TrackingError, match="RESOURCE_DOES_NOT_EXIST|not found|does not exist"):
            open_tracker("mlflow", "worker-errors", "again", run_id="0" * 32, mode="append")
        tracker.finish()
        companion.process.kill()
        companion.process.wait()
        with pytest.raises(TrackingError, match="tracking worker .* ended unexpectedly"):
            companion.ask("open", handle=99, experiment="x", run_name="y", run_id=None, tags=None, mode="append")
    finally:
        close_companion()


def test_which_store_a_stage_will_track_into_is_read_from_its_own_params_section(tmp_path, monkeypatch):
    import yaml

    from pipeline.tracking.companion import _stage_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/mlflow.db")
    params = {"train": {"tracking": "mlflow", "runs": {"quiet": {"overrides": {"tracking": "none"}}}},
              "curriculum": {"tracking": "none", "depth": {"overrides": {"tracking": "none"}}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert _stage_store(str(path), "loud", None, "train") == "sqlite:////somewhere/mlflow.db"
    assert _stage_store(str(path), "quiet", None, "train") is None
    assert _stage_store(str(path), None, None, "curriculum") is None  # the task stages' own switch
    assert _stage_store(str(path), None, None, "depth") is None  # train settings under the depth overrides
    params["curriculum"] = {"tracking": "mlflow", "depth": {"overrides": {}}}
    path.write_text(yaml.safe_dump(params))
    assert _stage_store(str(path), None, None, "curriculum") == "sqlite:////somewhere/mlflow.db"
    assert _stage_store(str(path), None, None, "depth") == "sqlite:////somewhere/mlflow.db"


@pytest.mark.parametrize("opened", [False, True])
def test_the_model_warm_up_leaves_no_folder_behind(mlflow_uri, tmp_path, monkeypatch, opened):
    """The warm-up saves a model into a temporary folder; a stage that closes at once (no run opened: the worker
    meets end-of-file while still warming up) or after a run must not leave it in the temporary directory."""
    from pipeline.tracking.companion import close_companion, start_companion
    from pipeline.tracking.factory import open_tracker

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the worker's tempfile folder
    companion = start_companion(mlflow_uri, models=True)
    try:
        if opened:
            open_tracker("mlflow", "warm-up", "one").finish()
    finally:
        close_companion()
    assert companion.process.wait(timeout=60) == 0
    assert not list(scratch.glob("seqlab-prewarm-*"))


def test_a_worker_removes_the_warm_up_folders_of_workers_that_were_killed(mlflow_uri, tmp_path, monkeypatch):
    """A worker killed during its warm-up (kill -9 of the process group, the OOM killer) cannot remove its folder:
    the next worker that warms up removes the folders whose process is gone (a reused pid told by its start time),
    and leaves a live one's alone."""
    from pipeline.process import start_ticks
    from pipeline.tracking.companion import close_companion, start_companion

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = scratch / f"seqlab-prewarm-{gone.pid}-12345-k2x9q_7a"
    (orphan / "model").mkdir(parents=True)
    (orphan / "model" / "MLmodel").write_text("flavors: {}\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = scratch / f"seqlab-prewarm-{sleeper.pid}-{start_ticks(sleeper.pid)}-a8bd0c1e"  # still running
        live.mkdir()
        reused = scratch / f"seqlab-prewarm-{sleeper.pid}-1-b7ce1d2f"  # that pid, an earlier process: gone
        reused.mkdir()
        other = scratch / "seqlab-prewarm-notapid"  # not a worker's name: never touched
        other.mkdir()
        companion = start_companion(mlflow_uri, models=True)
        close_companion()
        assert companion.process.wait(timeout=60) == 0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in scratch.glob("seqlab-prewarm-*")) == sorted([live.name, other.name])
