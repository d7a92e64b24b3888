"""Exact resume after a real ``kill -9`` of the training process between two checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.models.checkpoint import load_checkpoint
from pipeline.run_folder import WorkFolder
from tests.conftest import REPO_ROOT
from tests.test_training_fit import assert_same_run

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.tracking import NullTracker
    from pipeline.training.loop import fit
    from tests.train_helpers import char_dataset, tiny_model, tiny_settings

    out, mode = Path(sys.argv[1]), sys.argv[2]

    class PauseAt(NullTracker):
        # At step 16 (checkpoints at 12 and 18) say so, then wait to be killed.
        def log_metrics(self, metrics, step):
            if mode == "kill" and step == 16:
                (out / "at-step-16").write_text("")
                time.sleep(120)
            super().log_metrics(metrics, step)

    vocab, train, val = char_dataset()
    settings = tiny_settings(epochs=3, checkpoint_every_steps=6, log_every_steps=4, schedule="plateau")
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(len(vocab), num_layers=2, dropout=0.2, seed=11 if mode == "resume" else 3)
    fit(model, train, val, settings, out, tracker=PauseAt(), resume=mode == "resume")
""")


def _child(tmp_path, out, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(out), mode], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output


def test_kill_9_between_checkpoints_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = _child(tmp_path, whole, "whole")
    victim = _child(tmp_path, killed, "kill")
    deadline = time.monotonic() + 120
    while not (killed / "at-step-16").exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the child never reached step 16"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert load_checkpoint(WorkFolder(killed).checkpoint)["loop"]["step"] == 12  # the last one before the kill
    _finish(uninterrupted)
    _finish(_child(tmp_path, killed, "resume"))
    assert_same_run(whole, killed)
