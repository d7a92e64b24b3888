"""DDP: the train stage under ``torchrun`` with 2 gloo processes on the CPU equals one process with the same global
batch (tolerance: 1e-4 absolute on every weight, 1e-5 relative on the validation loss; the two differ only in the
order floats are summed: measured 5e-7 at most on a weight, validation losses equal to the last digit, after 68
Adam steps); each rank's share of a batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.files import read_json
from pipeline.models.checkpoint import load_checkpoint
from pipeline.training.batching import TrainBatches
from stages import train as stage
from tests.conftest import REPO_ROOT
from tests.train_helpers import char_dataset, complete_params, write_dataset

PARAMS = """
train:
  defaults:
    device: cpu
    threads: 1
    batch_size: {batch_size}
    bptt: 16
    epochs: 2
    lr: 0.01
    log_every_steps: 5
    checkpoint_every_steps: 10
    eval_batch_size: 2
    tracking: none
    progress: false
    sample: {{n: 0}}
  runs:
    names-char-lstm:
      dataset: names-char
      variant: lstm
      model: {{cell: lstm, embedding_size: 8, hidden_size: 16}}
"""


def _argv(out: str, params: str = "params.yaml") -> list[str]:
    return ["--params", params, "--train-run", "names-char-lstm", "--data", "data/tokens/names-char", "--out", out]


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder / "model.pt")["model_state"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS.format(batch_size=4)))
    (tmp_path / "half.yaml").write_text(complete_params(PARAMS.format(batch_size=2)))
    (tmp_path / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(tmp_path / "data/tokens/names-char")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stages.train", *_argv("models/ddp")]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("train: names-char-lstm: completed") == 1  # rank 0 alone reports
    assert stage.main(_argv("models/single")) == 0
    assert stage.main(_argv("models/half", "half.yaml")) == 0  # one rank's batch alone: a different run

    ddp, single, half = (tmp_path / "models" / name for name in ("ddp", "single", "half"))
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    m_ddp, m_single, m_half = (read_json(d / "metrics.json") for d in (ddp, single, half))
    assert m_ddp["steps"] == m_single["steps"] == m_half["steps"] // 2
    assert m_ddp["val_loss"] == pytest.approx(m_single["val_loss"], rel=1e-5)
    a, b, c = _weights(ddp), _weights(single), _weights(half)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=0), key
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-2  # the tolerance is far tighter than a change


def test_streams_split_by_rank_rows_of_the_global_batch():
    _, train, _ = char_dataset()
    whole = TrainBatches(train, "stream", 4, 16)
    parts = [TrainBatches(train, "stream", 4, 16, rank=r, world_size=2) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for w, p0, p1 in zip(whole.epoch(0), parts[0].epoch(0), parts[1].epoch(0), strict=True):
        assert torch.equal(torch.cat([p0.inputs, p1.inputs]), w.inputs)


def test_records_split_every_other_record_and_drop_a_last_batch_too_small_to_share():
    records = np.concatenate([np.array([5 + i % 7] * (1 + i % 4) + [2]) for i in range(9)])  # 9 records
    whole = TrainBatches(records, "records", 4, 32, seed=1)
    parts = [TrainBatches(records, "records", 4, 32, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert len(whole) == 3 and len(parts[0]) == len(parts[1]) == 2  # the 9th record alone cannot feed 2 ranks
    for w, p0, p1 in zip(whole.epoch(0), parts[0].epoch(0), parts[1].epoch(0), strict=False):
        assert w.inputs.shape[0] == p0.inputs.shape[0] + p1.inputs.shape[0]
        def unpadded(row):
            return row[row != 0]

        assert torch.equal(unpadded(p0.inputs[0]), unpadded(w.inputs[0]))
        assert torch.equal(unpadded(p1.inputs[0]), unpadded(w.inputs[1]))
