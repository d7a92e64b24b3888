"""Resuming a training run: only with the settings and data that shaped its checkpoint, never past a stop rule,
and under DVC (``--resume auto``) after a ``kill -9`` of ``dvc repro``, to the same weights as a run never killed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import ModelConfig, SampleConfig
from pipeline.models.checkpoint import load_checkpoint
from pipeline.run_folder import WorkFolder
from pipeline.training.checkpoints import differences, training_fingerprint
from pipeline.training.loop import fit
from pipeline.training.state import stop_rule_met
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.test_pipeline_dvc import _run, make_repo
from tests.test_training_fit import _Interrupt, assert_same_run
from tests.train_helpers import (
    TrainingClock,
    char_dataset,
    complete_params,
    contents,
    stopped_after_checkpoint,
    tiny_model,
    tiny_params,
    tiny_run,
    tiny_settings,
    work_checkpoints,
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
    assert load_checkpoint(WorkFolder(tmp_path / "run").checkpoint)["loop"]["step"] == first.metrics["steps"]
    again = fit(tiny_model(len(VOCAB), seed=9), TRAIN, VAL, settings, tmp_path / "run", resume=True)
    assert again.stop_reason == rule and again.metrics["steps"] == first.metrics["steps"]
    whole = tmp_path / "whole"
    fit(tiny_model(len(VOCAB)), TRAIN, VAL, settings, whole)
    assert_same_run(whole, tmp_path / "run")  # outputs written again, the same as the run's own


def test_a_resumed_run_spends_only_the_time_budget_it_had_left(tmp_path):
    """The training seconds before an interruption count against ``time_budget_s`` after the resume: with a
    clock that moves 1/8 s per training step, a 2 s budget ends at step 16, interrupted at step 10 or not."""
    settings = tiny_settings(epochs=100_000, time_budget_s=2.0, checkpoint_every_steps=4,
                             early_stopping_patience=None)

    def run(out, seed=3, **kwargs):
        model = tiny_model(len(VOCAB), seed=seed)
        return fit(model, TRAIN, VAL, settings, tmp_path / out, clock=TrainingClock(model, 0.125), **kwargs)

    whole = run("whole")
    assert whole.stop_reason == "time_budget" and whole.metrics["steps"] == 16
    with pytest.raises(KeyboardInterrupt):
        run("parts", tracker=_Interrupt(at=10))
    loop = load_checkpoint(WorkFolder(tmp_path / "parts").checkpoint)["loop"]
    assert (loop["step"], loop["train_seconds"]) == (8, 1.0)
    resumed = run("parts", seed=9, resume=True)  # 1 s left: 8 more steps, not a fresh 2 s (16)
    assert resumed.stop_reason == "time_budget"
    assert (resumed.metrics["steps"], resumed.metrics["train_seconds"]) == (16, 2.0)
    assert_same_run(tmp_path / "whole", tmp_path / "parts")
    again = run("parts", seed=9, resume=True)  # the budget is spent: no further step
    assert (again.stop_reason, again.metrics["steps"]) == ("time_budget", 16)


PARAMS = tiny_params({"names-char-lstm": tiny_run(overrides={"batching": "records"})}, tracking="none", sample={"n": 0})
ARGV = ["--params", "params.yaml", "--run", "names-char-lstm", "--data", "data/tokens/names-char",
        "--out", "models/names-char/lstm"]


def test_other_settings_are_one_line_by_hand_and_a_fresh_start_under_dvc(tmp_path, monkeypatch, capsys):
    """A stopped run's checkpoint is kept by fingerprint: other settings start fresh beside it (or stop, asked to
    resume), and putting the settings back resumes it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    with stopped_after_checkpoint(10):
        assert stage.main(ARGV) == 130
    [kept] = work_checkpoints(Path("."))
    assert kept.parent.parent == Path(".seqlab/runs/models/names-char/lstm")
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS.replace("hidden_size: 16", "hidden_size: 24")))
    capsys.readouterr()

    assert stage.main([*ARGV, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"seqlab: error: {kept} was trained with other settings or data (model.hidden_size "
                          f"16 -> 24); put them back to resume")

    assert stage.main([*ARGV, "--resume", "auto"]) == 0
    out = capsys.readouterr().out
    assert f"{kept}: trained with other settings or data (model.hidden_size 16 -> 24); training from scratch" in out
    assert load_checkpoint(tmp_path / "models/names-char/lstm/model.pt")["model_config"]["hidden_size"] == 24
    assert work_checkpoints(Path(".")) == [kept]  # the finished run's own work folder is gone, the other stays

    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    assert stage.main([*ARGV, "--resume", "auto"]) == 0
    assert "resuming from step 10 (checkpoint.pt)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "models/names-char/lstm/model.pt")["model_config"]["hidden_size"] == 16
    assert not list((tmp_path / ".seqlab/runs").iterdir())


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


GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
REPRO = [sys.executable, "-m", "dvc", "repro", "train@names-char-lstm"]
EXP_RUN = [sys.executable, "-m", "dvc", "exp", "run", "train@names-char-lstm"]
BY_HAND = [sys.executable, "-m", "stages.train", *ARGV]


def _train_repo(tmp_path, name: str, hidden_size: int = 16):
    def tiny(params: dict) -> None:
        train = yaml.safe_load(PARAMS)["train"]  # every key of train.defaults written out, as the stage needs
        train["defaults"].update(epochs=3, sample={"n": 0})
        train["runs"]["names-char-lstm"]["model"].update(hidden_size=hidden_size, dropout=0.2)
        params.clear()
        params["train"] = train

    (tmp_path / name).mkdir()
    repo = make_repo(tmp_path / name, tiny)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {"train": pipeline["stages"]["train"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (repo / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(repo / "data/tokens/names-char")
    assert _run([*GIT, "add", "-A"], repo).returncode == 0
    assert _run([*GIT, "commit", "-qm", "the pipeline"], repo).returncode == 0  # dvc exp run starts from a commit
    return repo


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The model folder of a training that ``dvc repro`` ran from start to end."""
    repo = _train_repo(tmp_path_factory.mktemp("whole"), "whole")
    done = _run(REPRO, repo)
    assert done.returncode == 0 and "resuming" not in done.stdout, done.stdout + done.stderr
    assert not work_checkpoints(repo)
    return repo / "models/names-char/lstm"


def _killed_at_step_40(tmp_path, repo, command: list[str]) -> None:
    """Run ``command`` in ``repo`` until the training has written its checkpoint of step 40, then kill -9 it all."""
    (tmp_path / "hook").mkdir(exist_ok=True)
    (tmp_path / "hook/sitecustomize.py").write_text(PAUSE_HOOK)
    paused = tmp_path / "paused"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path / "hook"), "SEQLAB_TEST_PAUSE_AT": "40", "SEQLAB_TEST_PAUSED": str(paused)}
    victim = subprocess.Popen(command, cwd=repo, env=env, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not paused.exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the training never reached step 40"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)  # dvc and the stage it runs, as a crash or the OOM killer would
    victim.communicate(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("resume", [REPRO, EXP_RUN], ids=["dvc-repro", "dvc-exp-run"])
def test_kill_9_under_dvc_repro_then_dvc_resumes_to_the_same_weights(tmp_path, whole_run, resume):
    """The checkpoint lives in .seqlab/runs/, no output of the stage: ``dvc exp run``, which first checks out the
    outputs recorded in dvc.lock (none yet), resumes from it as ``dvc repro`` does."""
    killed = _train_repo(tmp_path, "killed")
    _killed_at_step_40(tmp_path, killed, REPRO)
    [checkpoint] = work_checkpoints(killed)
    assert load_checkpoint(checkpoint)["loop"]["step"] == 40
    out = killed / "models/names-char/lstm"
    assert not any(out.iterdir())  # the model folder gets its files when the run finishes

    again = _run(resume, killed)
    said = again.stdout + again.stderr
    assert again.returncode == 0, said
    assert "resuming from step 40 (checkpoint.pt)" in said
    assert_same_run(whole_run, out)
    assert not work_checkpoints(killed)  # pruned: the run finished
    assert (REPO_ROOT / "dvc.yaml").read_text().count("--resume auto") == 1


@pytest.mark.slow
def test_a_failing_dvc_run_leaves_a_model_trained_by_hand_as_the_docs_say(tmp_path):
    """docs/training.md ("A model trained by hand"): every output of train is ``persist``, so a ``dvc repro`` that
    fails changes nothing; ``dvc exp run`` first checks out the outputs dvc.lock records, so a folder trained by hand
    and never committed loses its cached files (model.pt, vocab.json) and keeps the rest; after ``dvc commit``
    a failing ``dvc exp run`` changes nothing either."""
    repo = _train_repo(tmp_path, "hand")
    folder = repo / "models/names-char/lstm"
    params = repo / "params.yaml"
    good = params.read_text()
    typo = yaml.safe_load(good)
    typo["train"]["defaults"]["lr"] = "abc"
    error = "seqlab: error: params.yaml: train.defaults.lr: expected a number, got 'abc'"
    assert _run(BY_HAND, repo).returncode == 0
    trained = contents(folder)
    assert {"model.pt", "vocab.json", "metrics.json", "epochs.csv", "mlflow_run.json"} <= {p.name for p in trained}

    params.write_text(yaml.safe_dump(typo, sort_keys=False))
    failed = _run(REPRO, repo)
    assert failed.returncode != 0 and error in failed.stdout + failed.stderr
    assert contents(folder) == trained
    params.write_text(good)

    failed = _run([*EXP_RUN[:-1], "-S", "train.defaults.lr=abc", EXP_RUN[-1]], repo)
    assert failed.returncode != 0 and error in failed.stdout + failed.stderr
    left = contents(folder)
    assert {p.name for p in set(trained) - set(left)} == {"model.pt", "vocab.json"}
    assert all(trained[p] == left[p] for p in left)

    params.write_text(good)
    assert _run(BY_HAND, repo).returncode == 0
    assert _run([sys.executable, "-m", "dvc", "commit", "-f", "train@names-char-lstm"], repo).returncode == 0
    committed = contents(folder)
    failed = _run([*EXP_RUN[:-1], "-S", "train.defaults.lr=abc", EXP_RUN[-1]], repo)
    assert failed.returncode != 0 and error in failed.stdout + failed.stderr
    assert contents(folder) == committed
