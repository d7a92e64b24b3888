"""The train stage end to end on tiny data: outputs, the MLflow run (params, tags, metrics, artifacts), resume."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pipeline.config import TrainSettings, load_params
from pipeline.files import read_json
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.train_helpers import complete_params, tiny_params, tiny_run, write_dataset

PARAMS = tiny_params({"names-char-lstm": tiny_run(overrides={"batching": "records"})}, sample={"n": 2, "max_length": 30})


@pytest.fixture
def workspace(tmp_path, monkeypatch, mlflow_uri):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    return tmp_path


def _argv(*extra: str) -> list[str]:
    return ["--params", "params.yaml", "--run", "names-char-lstm", "--data", "data/tokens/names-char",
            "--out", "models/names-char/lstm", *extra]


def test_stage_trains_and_tracks_one_run(workspace, mlflow_uri, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("DVC_STAGE", "train@names-char-lstm")
    assert stage.main(_argv()) == 0
    out = workspace / "models/names-char/lstm"
    info = read_json(out / "mlflow_run.json")
    assert info["experiment"] == "names-char" and info["run_name"] == "lstm"
    client = MlflowClient(mlflow_uri)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "lstm"
    assert run.data.params["train.lr"] == "0.002" and run.data.params["train.batching"] == "records"
    assert run.data.params["model.cell"] == "lstm" and run.data.params["dataset"] == "names-char"
    for tag in ("git_commit", "git_dirty", "data_hash", "device", "torch_version"):
        assert run.data.tags[tag], tag
    assert run.data.tags["dvc_stage"] == "train@names-char-lstm"
    assert run.data.metrics["val_bpc"] > 0
    top = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"vocab.json", "metrics.json", "loss.png", "grad_norms.png", "samples"} <= top
    sample_dirs = client.list_artifacts(info["run_id"], "samples")
    assert len(sample_dirs) == 2  # one per validation (epoch)
    assert client.search_logged_models([info["experiment_id"]])  # the model, loadable from MLflow
    assert read_json(out / "metrics.json")["steps"] > 0


def test_resume_continues_in_the_same_mlflow_run(workspace, mlflow_uri):
    from mlflow import MlflowClient

    assert stage.main(_argv()) == 0
    first = read_json(workspace / "models/names-char/lstm/mlflow_run.json")["run_id"]
    assert stage.main(_argv("--resume")) == 0  # nothing left to do: same run, finished again
    assert read_json(workspace / "models/names-char/lstm/mlflow_run.json")["run_id"] == first
    assert len(MlflowClient(mlflow_uri).search_runs([read_json(
        workspace / "models/names-char/lstm/mlflow_run.json")["experiment_id"]])) == 1


def test_unknown_run_is_one_clear_line(workspace, capsys):
    argv = _argv()
    argv[3] = "names-char-transformer"
    assert stage.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown run 'names-char-transformer' (valid: names-char-lstm)" in err


def test_missing_tokens_are_one_clear_line(workspace, capsys):
    (workspace / "data/tokens/names-char/train.npy").unlink()
    assert stage.main(_argv()) == 2
    assert "train.npy: token file not found" in capsys.readouterr().err


def test_dvc_stage_lists_every_shared_setting_and_the_run_itself():
    """`dvc exp run -S train.<key>=...` must rerun the stage: every shared key is one of its params."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    shared = {f"train.{f.name}" for f in dataclasses.fields(TrainSettings)}
    for definition, own in ((stages["train"]["do"], "train.runs.${key}"), (stages["depth"], "curriculum.depth")):
        # A plain key, or `params.yaml: [keys]` (the shared list, written once and reused through a YAML anchor).
        listed = {k for e in definition["params"] for k in (e["params.yaml"] if isinstance(e, dict) else [e])}
        assert listed == shared | {own}
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.train.runs  # the default matrix parses, every run with its overrides
    for name in params.train.runs:
        params.train.settings_for(name)
