"""The n-gram baseline of one dataset, scored and sampled like the trained variants: the row a user would pick
instead of a neural model.

:func:`fit_baseline` fits an interpolated Kneser-Ney model (:mod:`pipeline.evaluation.ngram`) on the training
split, or on its first ``max_train_tokens`` when the dataset's ``evaluate.baselines`` entry sets a cap (then
recorded as ``train_tokens``).  :func:`evaluate_baseline` scores val and test with it (every token, ``<eos>``
included, reported as the networks' figures are) and, when given a folder, samples it with the networks'
settings (``evaluate.samples``, ``evaluate.seed``) and judges music samples against the held-out pieces.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import files
from pipeline.config import ConfigError, EvaluateConfig, NgramConfig
from pipeline.evaluation.judge import draw_ngram_and_judge
from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.evaluation.results import Figures
from pipeline.figures import reported_figures, summarize
from pipeline.vocab import Vocabulary


def baseline_config(cfg: EvaluateConfig, dataset: str, where: str) -> NgramConfig:
    """The ``evaluate.baselines`` entry of ``dataset``; one line naming the valid datasets otherwise."""
    if dataset not in cfg.baselines:
        valid = ", ".join(cfg.baselines) or "none"
        raise ConfigError(f"{where}: evaluate.baselines: no dataset {dataset!r} (valid: {valid})")
    return cfg.baselines[dataset]


def fit_baseline(ngram: NgramConfig, vocab_size: int, train: np.ndarray) -> tuple[KneserNeyLM, dict[str, Any]]:
    """The fitted n-gram and its figures: ``order``, ``ngrams``, ``fit_seconds`` and, with a cap, ``train_tokens``."""
    train = train[: ngram.max_train_tokens]  # a view of the memory map: None keeps every token
    start = time.perf_counter()
    lm = KneserNeyLM(ngram.order, vocab_size).fit(train)
    values: dict[str, Any] = {"order": ngram.order, "ngrams": lm.num_ngrams(ngram.order),
                              "fit_seconds": round(time.perf_counter() - start, 3)}
    if ngram.max_train_tokens is not None:  # recorded only when capped, so an uncapped file keeps its keys
        values["train_tokens"] = len(train)
    return lm, values


def evaluate_baseline(ngram: NgramConfig, cfg: EvaluateConfig, data_dir: Path, samples: Path | None) -> Figures:
    """Fit the n-gram on ``data_dir/train.npy``, score val and test, and with ``samples`` draw and judge its samples
    there (the folder replaced as a whole).  Both splits' figures are tracked: no training run holds them."""
    vocab = Vocabulary.load(data_dir / "vocab.json")
    splits = {s: files.read_tokens(data_dir / f"{s}.npy", len(vocab)) for s in ("train", "val", "test")}
    lm, values = fit_baseline(ngram, len(vocab), splits["train"])
    char_level = vocab.meta.get("level") == "char"
    for split in ("val", "test"):
        if splits[split].size:
            nll, n = lm.nll(splits[split])
            values[split] = reported_figures(summarize([nll], [n], ("forward",)), char_level)
    drawn: list[Path] = []
    if samples is not None:
        with files.atomic_dir(samples) as tmp:
            drawn, music = draw_ngram_and_judge(lm, vocab, cfg, tmp, splits)
        values.update(music)  # music: the samples judged against the held-out pieces
    return Figures(values, model=f"Kneser-Ney {ngram.order}-gram", sample_dir=samples,
                   samples=tuple(f.name for f in drawn), tracked_splits=("val", "test"))
