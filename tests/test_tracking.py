"""Tracking: the MLflow tracker against a real sqlite store (buffering, statuses, models) and the run tags."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch

from pipeline.errors import SeqlabWarning
from pipeline.tracking import NullTracker, Tracker, default_tracking_uri, run_tags
from pipeline.tracking.factory import open_tracker
from pipeline.tracking.lifecycle import end_run
from pipeline.tracking.mlflow_tracker import MlflowTracker
from pipeline.tracking.store import TrackingError, artifact_location
from pipeline.training.outputs import model_code_paths, model_requirements
from tests.train_helpers import tiny_model


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_default_store_is_an_absolute_sqlite_file(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    # dvc exp run --queue runs in a temporary copy but sets DVC_ROOT to the real repository
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert default_tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"


def test_artifacts_live_beside_the_database_not_in_the_working_directory(tmp_path):
    location = artifact_location(f"sqlite:///{tmp_path}/mlflow.db", "austen-char")
    assert location == (tmp_path / "mlartifacts" / "austen-char").as_uri()
    assert artifact_location("http://127.0.0.1:5000", "x") is None


def test_metric_points_are_buffered_and_written_in_batches(mlflow_uri):
    tracker = MlflowTracker.start("buffering", "lstm", tracking_uri=mlflow_uri, flush_seconds=3600)
    client = _client(mlflow_uri)
    for step in range(999):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    assert client.get_metric_history(tracker.run_id, "loss") == []  # nothing written yet
    for step in range(999, 2500):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    tracker.finish()
    history = client.get_metric_history(tracker.run_id, "loss")
    assert len(history) == 2500 == tracker.points_written
    assert tracker.batches_written == 3  # 1000 + 1000 when the buffer filled, 500 at finish
    assert sorted(m.step for m in history) == list(range(2500))
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_a_write_error_on_the_writer_thread_reaches_the_caller_and_closes_the_run(mlflow_uri):
    tracker = MlflowTracker.start("write-error", "lstm", tracking_uri=mlflow_uri)
    tracker.log_metrics({"loss": 1.0}, step=1)
    tracker.log_metrics({"not a valid key!?": 1.0}, step=2)  # MLflow rejects the name when it writes
    with pytest.raises(TrackingError, match="not a valid key"):
        tracker.finish()
    run = _client(mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED" and "metrics not written" in run.data.tags["failure_reason"]


def test_a_refused_write_is_raised_at_the_next_call_and_the_records_after_it_are_written(mlflow_uri):
    tracker = MlflowTracker.start("refused", "lstm", tracking_uri=mlflow_uri, flush_seconds=3600)
    tracker.log_metrics({"not a valid key!?": 1.0}, step=1)
    tracker.flush()
    tracker.log_metrics({"loss": 2.0}, step=2)
    tracker.flush()
    deadline = time.monotonic() + 30
    with pytest.raises(TrackingError, match="not a valid key"):  # at a later call, not at the end of the run
        while time.monotonic() < deadline:
            tracker.log_metrics({"loss": 3.0}, step=3)
            time.sleep(0.01)
    end_run(tracker, TrackingError("refused"))
    client = _client(mlflow_uri)
    assert client.get_run(tracker.run_id).info.status == "FAILED"
    assert 2.0 in [m.value for m in client.get_metric_history(tracker.run_id, "loss")]


def test_a_continued_run_that_finishes_drops_the_failure_reason_of_its_earlier_try(mlflow_uri):
    failed = MlflowTracker.start("again", "lstm", tracking_uri=mlflow_uri)
    failed.finish("FAILED", "MLflow store did not take the run's records")
    MlflowTracker.resume(failed.run_id, tracking_uri=mlflow_uri, mode="append").finish("FAILED", "evaluate failed")
    assert _client(mlflow_uri).get_run(failed.run_id).data.tags["failure_reason"].startswith("MLflow store")
    MlflowTracker.resume(failed.run_id, tracking_uri=mlflow_uri, mode="continue").finish("FINISHED")
    run = _client(mlflow_uri).get_run(failed.run_id)
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags


def test_failed_run_keeps_its_reason(mlflow_uri):
    tracker = open_tracker("mlflow", "failing", "gru", tags={"device": "cpu"}, tracking_uri=mlflow_uri)
    assert isinstance(tracker, Tracker)
    tracker.finish("FAILED", "training diverged at step 7")
    run = _client(mlflow_uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "training diverged at step 7"
    assert run.data.tags["device"] == "cpu" and run.info.run_name == "gru"


def test_resume_reopens_the_same_run(mlflow_uri):
    first = MlflowTracker.start("resume", "lstm", tracking_uri=mlflow_uri)
    first.log_metrics({"a": 1.0}, step=1)
    first.flush()  # killed here: the run stays RUNNING
    again = open_tracker("mlflow", "resume", "lstm", run_id=first.run_id, tracking_uri=mlflow_uri)
    again.log_metrics({"a": 2.0}, step=2)
    again.finish()
    client = _client(mlflow_uri)
    assert [m.value for m in client.get_metric_history(first.run_id, "a")] == [1.0, 2.0]
    assert len(client.search_runs([first.experiment_id])) == 1


@pytest.mark.parametrize("direction", ["uni", "bi"])
def test_logged_model_loads_back_and_runs_on_any_batch_and_length(mlflow_uri, direction):
    import mlflow.pytorch

    model = tiny_model(13, direction=direction).eval()
    tracker = MlflowTracker.start("models", direction, tracking_uri=mlflow_uri)
    tracker.log_model(model, "model", pip_requirements=model_requirements(), code_paths=model_code_paths())
    tracker.finish()
    loaded = mlflow.pytorch.load_model(f"runs:/{tracker.run_id}/model")
    for shape in ((1, 3), (5, 17)):
        ids = torch.randint(3, 13, shape)
        logits, _ = loaded(ids)
        expected, _ = model(ids)
        first = logits[0] if direction == "bi" else logits
        assert first.shape == (*shape, 13)
        assert torch.allclose(first, expected[0] if direction == "bi" else expected)
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{tracker.run_id}/model/requirements.txt"))
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements.read_text()


def test_a_store_that_cannot_end_a_failing_run_is_a_warning_and_the_first_error_stands():
    class Unreachable(NullTracker):
        def finish(self, status: str, reason: str | None = None) -> None:
            raise ConnectionError("store down\nmore detail")

    with pytest.warns(SeqlabWarning, match=r"^could not mark the tracking run FAILED: store down$"):
        end_run(Unreachable(), ValueError("the real problem"))
    with pytest.raises(ConnectionError):  # no error on its way: the tracking error is the error
        end_run(Unreachable())


def test_run_tags_name_commit_dirt_data_device_and_dvc(tmp_path, monkeypatch):
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "f.txt").write_text("x")
    git("add", "f.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    data = tmp_path / "train.npy"
    data.write_bytes(b"abc")
    monkeypatch.setenv("DVC_STAGE", "train@austen-char-lstm")
    monkeypatch.setenv("DVC_EXP_NAME", "lusty-bass")
    tags = run_tags(tmp_path, [data], "cpu")
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] == "false"
    assert tags["dvc_stage"] == "train@austen-char-lstm" and tags["dvc_exp_name"] == "lusty-bass"
    assert tags["device"] == "cpu" and tags["torch_version"] == torch.__version__
    (tmp_path / "f.txt").write_text("changed")
    changed = run_tags(tmp_path, [data], "cpu")
    assert changed["git_dirty"] == "true" and changed["data_hash"] == tags["data_hash"]
    data.write_bytes(b"abd")
    assert run_tags(tmp_path, [data], "cpu")["data_hash"] != tags["data_hash"]


def test_experiments_are_tagged_as_model_training_also_when_made_elsewhere(mlflow_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    MlflowTracker.start("made-by-seqlab", "lstm").finish()
    client.create_experiment("made-by-hand")
    MlflowTracker.start("made-by-hand", "gru").finish()
    for name in ("made-by-seqlab", "made-by-hand"):
        assert client.get_experiment_by_name(name).tags["mlflow.experimentKind"] == "custom_model_development"


def test_reopened_runs_keep_their_status_by_mode(mlflow_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    finished = MlflowTracker.start("names", "lstm")
    finished.finish("FINISHED")
    appended = MlflowTracker.resume(finished.run_id, mode="append")
    assert client.get_run(finished.run_id).info.status == "FINISHED"  # appending never marks it RUNNING
    appended.log_metrics({"test_loss": 1.0}, step=3)
    appended.finish("FAILED", "evaluation failed")
    run = client.get_run(finished.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["test_loss"] == 1.0
    assert run.data.tags["last_error"] == "evaluation failed"
    continued = MlflowTracker.resume(finished.run_id, mode="continue")
    assert client.get_run(finished.run_id).info.status == "RUNNING"
    continued.finish("KILLED", "interrupted")  # a failure never turns a FINISHED run into KILLED
    assert client.get_run(finished.run_id).info.status == "FINISHED"
    killed = MlflowTracker.start("names", "gru")
    killed.finish("KILLED", "interrupted")
    MlflowTracker.resume(killed.run_id, mode="continue").finish("FINISHED")  # training completed this time
    assert client.get_run(killed.run_id).info.status == "FINISHED"
    twice = MlflowTracker.start("names", "rnn")
    twice.finish("FAILED", "first")
    twice.finish("FINISHED")  # the first end wins
    assert client.get_run(twice.run_id).info.status == "FAILED"


@pytest.mark.parametrize(("error", "expected"), [
    (None, ("FINISHED", None)),
    (KeyboardInterrupt(), ("KILLED", "interrupted")),
    (ValueError("bad value\nsecond line"), ("FAILED", "ValueError: bad value")),
    (ValueError(), ("FAILED", "ValueError")),
    (OSError(28, "No space left on device", "model.pt"), ("FAILED", "OSError: No space left on device")),
])
def test_a_run_ends_with_a_status_and_a_one_line_reason(error, expected):
    from pipeline.tracking.lifecycle import end_status

    assert end_status(error) == expected
