"""Token files are read memory-mapped end to end: training and evaluation never hold a whole split in memory.

The train and evaluate stages run as real subprocesses on a generated dataset whose training split is a few
hundred MB; their peak resident memory (``VmHWM`` of the child, which counts the pages of the mapped file they
touched; see bench/peak_rss.py for why not ``ru_maxrss``) is compared with the same stages on a tiny dataset.  A whole-split copy of the training file
(uint8 as stored: 256 MB; as int64: 2 GB) would show in the difference; reading only the batches does not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.format import open_memmap

from bench.peak_rss import run_measured
from pipeline.files import read_json, read_tokens
from pipeline.vocab import EOS_ID, Vocabulary
from tests.conftest import REPO_ROOT
from tests.train_helpers import tiny_params, tiny_run

BIG_TRAIN = 256 << 20  # tokens (= bytes, uint8) of the large training split
VOCAB = Vocabulary([*("<pad>", "<unk>", "<eos>"), *"abcdefghijklmnopqrstuvwxyz .,"], {"kind": "text", "level": "char"})


def _write_split(path: Path, n: int, seed: int) -> None:
    """``n`` random ids with an ``<eos>`` about every 60 tokens, written in chunks straight into the .npy."""
    out = open_memmap(path, mode="w+", dtype=np.uint8, shape=(n,))
    rng, chunk = np.random.default_rng(seed), 1 << 24
    for first in range(0, n, chunk):
        part = rng.integers(3, len(VOCAB), size=min(chunk, n - first), dtype=np.uint8)
        part[rng.random(len(part)) < 1 / 60] = EOS_ID
        out[first : first + len(part)] = part
    out.flush()
    del out


def _dataset(folder: Path, train: int, held_out: int) -> Path:
    folder.mkdir(parents=True)
    VOCAB.save(folder / "vocab.json")
    for i, (split, n) in enumerate((("train", train), ("val", held_out), ("test", held_out))):
        _write_split(folder / f"{split}.npy", n, seed=i)
    return folder


def _run(args: list[str], cwd: Path) -> tuple[int, float]:
    """Run ``python -m <args>`` in ``cwd``; (exit status, peak RSS in MiB of that child alone)."""
    done = run_measured([sys.executable, "-m", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.output
    return done.returncode, done.peak_rss_mb


def _train_and_evaluate(root: Path, name: str) -> tuple[float, float, dict]:
    data, model = f"data/tokens/{name}", f"models/{name}/lstm"
    _, train_rss = _run(["stages.train", "--run", name, "--data", data, "--out", model], root)
    _, eval_rss = _run(["stages.evaluate", "--run", name, "--data", data, "--model", model,
                        "--metrics", f"metrics/{name}.json", "--samples", f"samples/{name}"], root)
    return train_rss, eval_rss, read_json(root / f"metrics/{name}.json")


@pytest.mark.slow
def test_train_and_evaluate_read_a_large_split_without_copying_it(tmp_path):
    overrides = {"max_steps": 6, "val_every_steps": 3, "val_tokens": 4096, "batch_size": 8, "bptt": 32,
                 "eval_batch_size": 4, "tracking": "none", "checkpoint_every_steps": 3}
    runs = {name: tiny_run(dataset=name, overrides=overrides) for name in ("small", "big")}
    evaluate = {"evaluate": {"device": "cpu", "bptt": 128, "lanes_above_tokens": 100_000, "lanes": 32,
                             "samples": {"n": 1, "max_length": 10}}}
    (tmp_path / "params.yaml").write_text(tiny_params(runs, evaluate, sample={"n": 0, "max_length": 10}))
    _dataset(tmp_path / "data/tokens/small", 20_000, 2_000)
    _dataset(tmp_path / "data/tokens/big", BIG_TRAIN, 400_000)
    assert read_tokens(tmp_path / "data/tokens/big/train.npy").dtype == np.uint8  # mapped as stored

    small_train, small_eval, small = _train_and_evaluate(tmp_path, "small")
    big_train, big_eval, big = _train_and_evaluate(tmp_path, "big")

    file_mb = BIG_TRAIN / (1 << 20)
    assert big_train - small_train < 0.1 * file_mb, (small_train, big_train)  # a copy would add >= 256 MB
    assert big_eval - small_eval < 0.1 * file_mb, (small_eval, big_eval)
    assert read_json(tmp_path / "models/big/lstm/metrics.json")["steps"] == 6
    # The long held-out splits were scored whole, in parallel lanes; the short ones as one stream.
    assert big["test"]["tokens"] == 400_000 and big["test"]["lanes"] == 32
    assert small["test"]["tokens"] == 2_000 and small["test"]["lanes"] == 1
