"""Shared tracking: the train stage against a real ``mlflow server`` over HTTP, one clear line when the server is
unreachable (before any training), and two trainings at once into one sqlite store (``dvc queue start -j 2``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from pipeline.files import read_json
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.mlflow_ui import free_port, mlflow_server
from tests.train_helpers import complete_params, tiny_params, tiny_run, write_dataset

pytestmark = pytest.mark.slow

PARAMS = tiny_params({"names-char-lstm": tiny_run(), "names-char-gru": tiny_run("gru", "gru", hidden_size=24)},
                     log_every_steps=2, sample={"n": 1, "max_length": 20})


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    return tmp_path


def _argv(run: str) -> list[str]:
    variant = run.rsplit("-", 1)[1]
    return ["--params", "params.yaml", "--run", run, "--data", "data/tokens/names-char",
            "--out", f"models/names-char/{variant}"]


def test_training_logs_to_an_mlflow_server_over_http(workspace, _migrated_db, monkeypatch):
    from mlflow import MlflowClient

    shutil.copy(_migrated_db, workspace / "server.db")
    with mlflow_server(f"sqlite:///{workspace / 'server.db'}", workspace / "server-artifacts") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        assert stage.main(_argv("names-char-lstm")) == 0
        info = read_json(workspace / "models/names-char/lstm/mlflow_run.json")
        assert info["tracking_uri"] == url
        client = MlflowClient(url)
        run = client.get_run(info["run_id"])
        assert run.info.status == "FINISHED" and run.data.metrics["val_loss"] > 0
        assert len(client.get_metric_history(info["run_id"], "train_loss")) >= 5
        assert {"metrics.json", "loss.png"} <= {a.path for a in client.list_artifacts(info["run_id"])}
    assert any((workspace / "server-artifacts").rglob("metrics.json"))  # stored by the server, not the client
    assert not (workspace / "mlflow.db").exists()  # nothing went to the local default store


def test_an_unreachable_server_stops_the_stage_with_one_line_before_training(workspace, monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    start = time.monotonic()
    assert stage.main(_argv("names-char-lstm")) == 2
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "not reachable" in err[0] and "MLFLOW_TRACKING_URI" in err[0], err
    assert not list(workspace.glob(".seqlab/runs/**/checkpoint.pt"))


def test_two_trainings_at_once_into_one_new_sqlite_store_keep_their_own_runs(workspace):
    """The default store (<working directory>/mlflow.db) does not exist yet: both processes open it at once."""
    from mlflow import MlflowClient

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "stages.train", *_argv(run)], cwd=workspace, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for run in ("names-char-lstm", "names-char-gru")]
    for proc in procs:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = {}
    for variant in ("lstm", "gru"):
        info = read_json(workspace / f"models/names-char/{variant}/mlflow_run.json")
        runs[variant] = client.get_run(info["run_id"])
        metrics = read_json(workspace / f"models/names-char/{variant}/metrics.json")
        assert runs[variant].info.status == "FINISHED"
        assert runs[variant].data.metrics["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-6)
        assert runs[variant].data.params["model.hidden_size"] == {"lstm": "16", "gru": "24"}[variant]
    assert runs["lstm"].info.experiment_id == runs["gru"].info.experiment_id  # one experiment, created once
    assert runs["lstm"].data.metrics["val_loss"] != runs["gru"].data.metrics["val_loss"]
    experiment = client.get_experiment_by_name("names-char")
    assert {r.info.run_name for r in client.search_runs([experiment.experiment_id])} == {"lstm", "gru"}
