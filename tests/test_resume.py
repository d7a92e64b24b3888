"""Resuming a training run: only with the settings and data that shaped its checkpoint, never past a stop rule,
and under DVC (``--resume auto``) after a ``kill -9`` of ``dvc repro``, to the same weights as a run never killed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.config import ModelConfig, SampleConfig
from pipeline.models.checkpoint import load_checkpoint
from pipeline.training import fit, output_path
from pipeline.training.resume import differences, training_fingerprint
from pipeline.training.state import stop_rule_met
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.test_pipeline_dvc import _run, make_repo
from tests.test_training_fit import assert_same_run
from tests.train_helpers import (
    char_dataset,
    complete_params,
    tiny_model,
    tiny_params,
    tiny_run,
    tiny_settings,
    write_dataset,
)

VOCAB, TRAIN, VAL = char_dataset()
MODEL = ModelConfig(cell="lstm", embedding_size=8, hidden_size=16)


def test_the_fingerprint_watches_what_shapes_the_weights_only(tmp_path):
    data = tmp_path / "train.npy"
    data.write_bytes(b"ids")
    base = training_fingerprint(tiny_settings(), MODEL, [data])
    unwatched = tiny_settings(device="auto", threads=2, tracking="mlflow", progress=True, sample=SampleConfig(n=0))
    assert training_fingerprint(unwatched, MODEL, [data]) == base
    wider = training_fingerprint(tiny_settings(lr=0.02), dataclasses.replace(MODEL, hidden_size=24), [data])
    data.write_bytes(b"idz")
    edited = training_fingerprint(tiny_settings(), MODEL, [data])
    assert differences(base, wider) == "model.hidden_size 16 -> 24, train.lr 0.01 -> 0.02"
    assert differences(base, edited) == "data.train.npy changed"


def test_stop_rules_are_read_in_the_loops_order():
    s = tiny_settings(epochs=3, max_steps=10, early_stopping_patience=2, time_budget_s=5.0)
    loop = {"step": 4, "epoch": 1, "bad_validations": 0, "train_seconds": 1.0}
    assert stop_rule_met(loop, s) is None
    assert stop_rule_met({**loop, "epoch": 3}, s) == "completed"
    assert stop_rule_met({**loop, "train_seconds": 5.0}, s) == "time_budget"
    assert stop_rule_met({**loop, "step": 10, "train_seconds": 9.0}, s) == "max_steps"
    assert stop_rule_met({**loop, "step": 10, "bad_validations": 2}, s) == "early_stopping"


@pytest.mark.parametrize("rule", ["max_steps", "early_stopping"])
def test_resuming_a_finished_run_trains_no_further_step(tmp_path, rule):
    """Checkpoints land on the very step the run stopped at (before its final validation, for max_steps)."""
    settings = (tiny_settings(max_steps=14, checkpoint_every_steps=7) if rule == "max_steps" else
                tiny_settings(epochs=50, lr=0.3, clip="none", val_every_steps=3, checkpoint_every_steps=3,
                              early_stopping_patience=2))
    first = fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, tmp_path / "run")
    assert first.stop_reason == rule
    assert load_checkpoint(output_path(tmp_path / "run", "checkpoint"))["loop"]["step"] == first.metrics["steps"]
    again = fit(tiny_model(len(VOCAB), seed=9), TRAIN, VAL, settings, tmp_path / "run", resume=True)
    assert again.stop_reason == rule and again.metrics["steps"] == first.metrics["steps"]
    whole = tmp_path / "whole"
    fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, whole)
    assert_same_run(whole, tmp_path / "run")  # outputs written again, the same as the run's own


PARAMS = tiny_params({"names-char-lstm": tiny_run(overrides={"batching": "records"})}, tracking="none", sample={"n": 0})
ARGV = ["--params", "params.yaml", "--run", "names-char-lstm", "--data", "data/tokens/names-char",
        "--out", "models/names-char/lstm"]


def test_other_settings_are_one_line_by_hand_and_a_fresh_start_under_dvc(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    assert stage.main(ARGV) == 0
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS.replace("hidden_size: 16", "hidden_size: 24")))
    capsys.readouterr()

    assert stage.main([*ARGV, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("seqlab: error: models/names-char/lstm/checkpoint.pt was trained with other settings or "
                          "data (model.hidden_size 16 -> 24); put them back to resume")

    assert stage.main([*ARGV, "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert ("models/names-char/lstm/checkpoint.pt: trained with other settings or data (model.hidden_size 16 -> 24); "
            "training from scratch") in out
    assert load_checkpoint(tmp_path / "models/names-char/lstm/model.pt")["model_config"]["hidden_size"] == 24

    assert stage.main([*ARGV, "--resume", "auto"]) == 0  # DVC re-runs a finished stage only when something changed
    assert "a finished run (completed at step" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ under dvc repro

# Imported by the stage's Python (PYTHONPATH) in the run the test kills: right after writing the checkpoint of
# step >= SEQLAB_TEST_PAUSE_AT, it says so and waits to be killed, so the kill never races the training.
PAUSE_HOOK = """
import os, sys, time
if os.environ.get("SEQLAB_TEST_PAUSE_AT"):
    import importlib.util

    class _Pause:
        def find_spec(self, name, path=None, target=None):
            if name != "pipeline.training.checkpoints":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                save = module.save_training_checkpoint

                def save_then_pause(path, model, training):
                    save(path, model, training)
                    if training["loop"]["step"] >= int(os.environ["SEQLAB_TEST_PAUSE_AT"]):
                        open(os.environ["SEQLAB_TEST_PAUSED"], "w").close()
                        time.sleep(600)

                module.save_training_checkpoint = save_then_pause

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Pause())
"""


def _train_repo(tmp_path, name: str, hidden_size: int = 16):
    def tiny(params: dict) -> None:
        shared = {k: v for k, v in params["train"].items() if k != "runs"}  # every key the stage's params name
        shared.update(yaml.safe_load(PARAMS)["train"], epochs=3, sample={"n": 0})
        shared["runs"]["names-char-lstm"]["model"].update(hidden_size=hidden_size, dropout=0.2)
        params.clear()
        params["train"] = shared

    (tmp_path / name).mkdir()
    repo = make_repo(tmp_path / name, tiny)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {"train": pipeline["stages"]["train"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (repo / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(repo / "data/tokens/names-char")
    return repo


@pytest.mark.slow
def test_kill_9_under_dvc_repro_then_repro_resumes_to_the_same_weights(tmp_path):
    repro = [sys.executable, "-m", "dvc", "repro", "train@names-char-lstm"]
    whole, killed = _train_repo(tmp_path, "whole"), _train_repo(tmp_path, "killed")
    done = _run(repro, whole)
    assert done.returncode == 0 and "resuming" not in done.stdout, done.stdout + done.stderr

    (tmp_path / "hook").mkdir()
    (tmp_path / "hook/sitecustomize.py").write_text(PAUSE_HOOK)
    paused = tmp_path / "paused"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path / "hook"), "SEQLAB_TEST_PAUSE_AT": "40", "SEQLAB_TEST_PAUSED": str(paused)}
    victim = subprocess.Popen(repro, cwd=killed, env=env, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not paused.exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the training never reached step 40"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # dvc and the stage it runs, as a crash or the OOM killer would
    victim.communicate(timeout=60)
    out = killed / "models/names-char/lstm"
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == 40
    assert not (out / "metrics.json").exists()

    again = _run(repro, killed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from step 40 (checkpoint.pt)" in again.stdout
    assert_same_run(whole / "models/names-char/lstm", out)

    params = yaml.safe_load((killed / "params.yaml").read_text())
    params["train"]["runs"]["names-char-lstm"]["model"]["hidden_size"] = 24
    (killed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = _run(repro, killed)
    assert changed.returncode == 0 and "Traceback" not in changed.stdout + changed.stderr
    assert "trained with other settings or data (model.hidden_size 16 -> 24); training from scratch" in changed.stdout
    assert (REPO_ROOT / "dvc.yaml").read_text().count("--resume auto") == 1
