"""The train stage end to end on tiny data: outputs, the MLflow run (params, tags, metrics, artifacts), resume."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pipeline.config import TrainSettings, load_params
from pipeline.files import read_json
from pipeline.models.checkpoint import load_checkpoint
from pipeline.run_folder import RunFolder
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.train_helpers import (
    complete_params,
    stopped_after_checkpoint,
    tiny_params,
    tiny_run,
    work_checkpoints,
    write_dataset,
)

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


def test_a_stopped_run_resumes_in_the_same_mlflow_run_and_leaves_no_work_folder(workspace, mlflow_uri, capsys):
    from mlflow import MlflowClient

    out = workspace / "models/names-char/lstm"
    with stopped_after_checkpoint(10):
        assert stage.main(_argv()) == 130
    assert not out.exists() or not any(out.iterdir())  # the run folder gets its files when a run finishes
    [checkpoint] = work_checkpoints(workspace)
    stopped = load_checkpoint(checkpoint)["loop"]["run_id"]
    client = MlflowClient(mlflow_uri)
    assert client.get_run(stopped).info.status == "KILLED"

    assert stage.main(_argv("--resume")) == 0
    assert "resuming from step 10 (checkpoint.pt)" in capsys.readouterr().out
    info = read_json(out / "mlflow_run.json")
    assert info["run_id"] == stopped and client.get_run(stopped).info.status == "FINISHED"
    assert len(client.search_runs([info["experiment_id"]])) == 1
    assert not work_checkpoints(workspace) and not any((workspace / ".seqlab/runs").iterdir())  # pruned
    assert (workspace / ".seqlab/.gitignore").read_text().endswith("*\n")  # never committed, whatever the project


def test_a_second_training_into_a_folder_being_written_stops_with_one_line(workspace, capsys):
    with RunFolder(workspace / "models/names-char/lstm").exclusive():  # as a training in another process holds it
        assert stage.main(_argv()) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("seqlab: error: models/names-char/lstm: another training is writing this folder; wait for it "
                   "to end or stop it")
    assert stage.main(_argv()) == 0  # released with its holder


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


def test_dvc_stage_lists_the_shared_settings_and_the_run_itself():
    """`dvc exp run -S train.defaults.<key>=...` must rerun the stage: ``train.defaults`` is one of its params,
    and every shared setting is a key of it."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for definition, own in ((stages["train"]["do"], "train.runs.${key}"), (stages["depth"], "curriculum.depth")):
        assert definition["params"] == [own, "train.defaults"]
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]
    assert set(raw) == {"defaults", "runs"}
    assert set(raw["defaults"]) == {f.name for f in dataclasses.fields(TrainSettings)}
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.train.runs  # the default matrix parses, every run with its overrides
    for name in params.train.runs:
        params.train.settings_for(name)
