"""Tiny datasets and settings shared by the training tests (sizes chosen so a fit takes well under a second)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from torch import nn

from pipeline import files
from pipeline.config import ModelConfig, SampleConfig, TrainSettings
from pipeline.models import build_model
from pipeline.runtime import set_seed
from pipeline.vocab import Vocabulary

WORDS = ["the", "little", "hill", "of", "monks", "glen", "boys", "fair", "child", "woman", "dark"]


def names(n: int, seed: int = 0) -> list[str]:
    """Tune-name-like records ("the dark glen of the boys"): learnable structure, variable lengths."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(n)]


def char_dataset(n_train: int = 120, n_val: int = 20) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """A character vocabulary and <eos>-closed id arrays for train and val."""
    train, val = names(n_train, 0), names(n_val, 1)
    chars = sorted({c for text in train + val for c in text})
    vocab = Vocabulary.build({c: 1 for c in chars}, meta={"kind": "text", "level": "char"})

    def encode(records: list[str]) -> np.ndarray:
        return np.concatenate([np.append(vocab.encode(r), 2) for r in records]).astype(np.int64)

    return vocab, encode(train), encode(val)


def write_dataset(folder: Path) -> Vocabulary:
    """``folder/{vocab.json,train.npy,val.npy,test.npy}`` as the tokenize stage writes them."""
    vocab, train, val = char_dataset()
    vocab.save(folder / "vocab.json")
    for split, ids in (("train", train), ("val", val), ("test", val)):
        files.write_tokens(folder / f"{split}.npy", ids, len(vocab))
    return vocab


class TrainingClock:
    """A clock that moves only while the model trains: ``seconds_per_step`` per training forward pass
    (validation and sampling run the model in eval mode and take no time), so the budget is met at a known step."""

    def __init__(self, model: nn.Module, seconds_per_step: float) -> None:
        self.now = 0.0
        model.register_forward_pre_hook(lambda module, args: self._tick(module.training, seconds_per_step))

    def _tick(self, training: bool, seconds: float) -> None:
        if training:
            self.now += seconds

    def __call__(self) -> float:
        return self.now


def tiny_settings(**overrides) -> TrainSettings:
    base = TrainSettings(seed=3, device="cpu", threads=1, batch_size=4, bptt=16, epochs=2, lr=0.01,
                         log_every_steps=5, checkpoint_every_steps=7, layer_norms_every_steps=4,
                         eval_batch_size=2, eval_bptt=32, tracking="none", progress=False,
                         sample=SampleConfig(n=2, max_length=20))
    return dataclasses.replace(base, **overrides)


def tiny_model(vocab_size: int, cell: str = "lstm", direction: str = "uni", seed: int = 3, **fields):
    set_seed(seed)
    config = dict(cell=cell, embedding_size=8, hidden_size=16, direction=direction)
    config.update(fields)
    return build_model(ModelConfig(**config), vocab_size)


def complete_params(text: str) -> str:
    """A params file's text with every shared ``train.defaults`` key written out (defaults where the text has
    none), as a real params.yaml must have them."""
    import yaml

    from pipeline.config import to_plain

    raw = yaml.safe_load(text)
    if isinstance(raw.get("train"), dict):
        given = raw["train"].get("defaults") or {}
        raw["train"] = {"defaults": {**to_plain(TrainSettings()), **given},
                        **{k: v for k, v in raw["train"].items() if k != "defaults"}}
    return yaml.safe_dump(raw, sort_keys=False)


#: Shared train settings of the tiny stage tests: a few dozen steps of a 16-unit model on the CPU.
TINY_TRAIN = {"device": "cpu", "threads": 1, "batch_size": 4, "bptt": 16, "epochs": 2, "log_every_steps": 5,
              "checkpoint_every_steps": 10, "eval_batch_size": 2, "progress": False}


def tiny_run(variant: str = "lstm", cell: str = "lstm", dataset: str = "names-char", hidden_size: int = 16,
             overrides: dict | None = None, **model) -> dict:
    """One ``train.runs`` entry: a tiny model of ``cell`` on ``dataset``."""
    run = {"dataset": dataset, "variant": variant,
           "model": {"cell": cell, "embedding_size": 8, "hidden_size": hidden_size, **model}}
    return {**run, "overrides": overrides} if overrides else run


def tiny_params(runs: dict[str, dict], sections: dict | None = None, **train) -> str:
    """A complete params file: ``train.defaults`` of :data:`TINY_TRAIN` with ``train`` on top, ``runs``, and
    other ``sections``."""
    import yaml

    text = yaml.safe_dump({"train": {"defaults": {**TINY_TRAIN, **train}, "runs": runs}, **(sections or {})},
                          sort_keys=False)
    return complete_params(text)


@contextlib.contextmanager
def stopped_after_checkpoint(step: int) -> Iterator[None]:
    """Within the block, a training stops as on Ctrl-C (KeyboardInterrupt) right after writing the checkpoint of
    ``step`` or later: a run that keeps its checkpoint for ``--resume``, reached at a known step."""
    import pytest

    from pipeline.training import checkpoints

    save = checkpoints.save_training_checkpoint

    def save_then_stop(path, model, training):
        save(path, model, training)
        if training["loop"]["step"] >= step:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoints, "save_training_checkpoint", save_then_stop)
        yield


def work_checkpoints(root: Path) -> list[Path]:
    """The checkpoints of the trainings in progress under project root ``root`` (``.seqlab/runs/``)."""
    return sorted((root / ".seqlab/runs").glob("**/checkpoint.pt"))


def contents(*folders: Path) -> dict[Path, bytes]:
    """Every file under ``folders`` and its bytes."""
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}
