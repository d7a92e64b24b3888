"""Stop signals in a stage process: SIGTERM becomes :class:`Terminated`, and a checkpoint write holds it back until
the file is whole (torch's writer would otherwise report the interruption as a write error)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from pipeline.errors import Terminated
from pipeline.models.checkpoint import checkpoint_payload, load_checkpoint, save_checkpoint
from pipeline.process import install_stop_signals, signals_deferred
from tests.train_helpers import tiny_model


@pytest.fixture
def stop_signals():
    restore = install_stop_signals()
    yield
    restore()


def test_sigterm_raises_terminated(stop_signals):
    with pytest.raises(Terminated) as raised:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
    assert raised.value.exit_code == 128 + signal.SIGTERM


def test_a_signal_inside_a_deferred_block_stops_the_stage_after_the_block(stop_signals):
    reached_the_end = False
    with pytest.raises(Terminated), signals_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        reached_the_end = True
    assert reached_the_end


def test_a_checkpoint_interrupted_by_sigterm_is_written_whole_then_the_stop_follows(stop_signals, tmp_path,
                                                                                     monkeypatch):
    model = tiny_model(12)
    payload = checkpoint_payload(model)
    real_save = torch.save

    def save_and_get_signalled(obj, f, *args, **kwargs):  # the signal lands in the middle of torch's writer
        os.kill(os.getpid(), signal.SIGTERM)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_get_signalled)
    with pytest.raises(Terminated):
        save_checkpoint(tmp_path / "checkpoint.pt", payload)
    monkeypatch.undo()
    restored = load_checkpoint(tmp_path / "checkpoint.pt")
    assert restored["model_state"].keys() == payload["model_state"].keys()
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_stage_process_ends_after_its_threads_atexit_handlers_and_buffered_output(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    script = (
        "import atexit, threading, time\n"
        "from pipeline.process import exit_now\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "print('buffered', end=' ')\n"
        "exit_now(3)\n"
        "print('never')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    assert result.returncode == 3
    assert result.stdout.split() == ["buffered", "thread", "done", "atexit", "ran"]


def test_stage_main_returns_when_called_in_process(tmp_path):
    from stages._common import stage_main

    (tmp_path / "x.yaml").write_text("{}\n")
    assert stage_main(["--params", str(tmp_path / "x.yaml")], None, "tokenize", lambda params: 7) == 7


def test_stage_main_reads_the_params_once_and_stops_on_bad_ones_before_the_stage_runs(tmp_path, capsys):
    from stages._common import option, stage_main

    seen = []
    params = tmp_path / "params.yaml"
    params.write_text("retrain: {max_regression: 0.1}\n")
    argv = ["--params", str(params), "--out", "o"]
    assert stage_main(argv, None, "report", lambda **kw: seen.append(kw), option("--out"), requires=("retrain",)) == 0
    assert seen[0]["out"] == "o" and seen[0]["params"].retrain.max_regression == 0.1 and set(seen[0]) == {"params", "out"}
    for text, message in (("retrain: {max_regresion: 0.1}\n", "retrain: unknown key 'max_regresion' (valid: "),
                          ("{}\n", "missing section 'retrain'")):
        params.write_text(text)
        assert stage_main(argv, None, "report", seen.append, option("--out"), requires=("retrain",)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"seqlab: error: {params}: ") and message in err and err.count("\n") == 1
    assert len(seen) == 1
