"""Many-to-one: which language is this line in?

One text file per language (``<raw>/<lang>.txt``; by default music21's ``languageExcerpts``: Goethe, Austen,
Voltaire, Dante, Latin hymns and a Dutch natural history).  Every line is whitespace-normalised, lines shorter
than ``min_chars`` are dropped, longer ones cut to ``max_chars``, repeats kept once; each language's lines
are shuffled (seeded) and the first ``lines.train`` / ``lines.val`` / ``lines.test`` go to the three
splits, so every split is balanced.  The character vocabulary is built on the training lines (characters
seen fewer than twice become ``<unk>``).  A classifier reads the characters and answers with the language
from its final state.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import LangIdConfig
from pipeline.curriculum import plots
from pipeline.curriculum.batches import RandomBatches, in_chunks, pad_rows
from pipeline.curriculum.metrics import argmax, confusion, label_nll
from pipeline.curriculum.outputs import ExperimentRuns, write_csv, write_metrics
from pipeline.errors import UserError
from pipeline.figures import perplexity
from pipeline.models import build_head_model
from pipeline.runtime import set_seed
from pipeline.training.supervised import train_supervised
from pipeline.vocab import Vocabulary

SPLITS = ("train", "val", "test")


def read_lines(path: Path, min_chars: int, max_chars: int) -> list[str]:
    """Distinct whitespace-normalised lines of at least ``min_chars`` characters, cut to ``max_chars``."""
    if not path.exists():
        raise UserError(f"{path}: language file not found; check curriculum.langid.languages and the download stage")
    lines = (" ".join(line.split()) for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return list(dict.fromkeys(line[:max_chars] for line in lines if len(line) >= min_chars))


def split_languages(cfg: LangIdConfig, raw: Path) -> dict[str, list[tuple[str, int]]]:
    """split -> [(line, language index)], balanced per language, seeded."""
    splits: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    need = sum(cfg.lines.values())
    for label, lang in enumerate(cfg.languages):
        lines = read_lines(raw / f"{lang}.txt", cfg.min_chars, cfg.max_chars)
        if len(lines) < need:
            raise UserError(f"curriculum.langid: {lang}.txt has {len(lines)} usable lines, fewer than the {need} "
                            "asked for (lower curriculum.langid.lines or min_chars)")
        order = np.random.default_rng([cfg.train.seed, label]).permutation(len(lines))
        start = 0
        for split in SPLITS:
            splits[split] += [(lines[i], label) for i in order[start : start + cfg.lines[split]]]
            start += cfg.lines[split]
    return splits


def encode(pairs: list[tuple[str, int]], vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, lengths = pad_rows([vocab.encode(line) for line, _ in pairs])
    return ids, lengths, torch.tensor([label for _, label in pairs])


def evaluate_classifier(model: torch.nn.Module, data: tuple[torch.Tensor, ...], classes: int) -> dict[str, Any]:
    """Accuracy, label perplexity and the confusion matrix (rows: true language)."""
    nll, predicted = 0.0, []
    for ids, lengths, labels in in_chunks(data, 512):
        logits = model(ids, lengths)
        nll += label_nll(logits, labels)[0]
        predicted.append(argmax(logits))
    predicted = np.concatenate(predicted)
    actual = data[2].cpu().numpy()
    return {"accuracy": float((predicted == actual).mean()), "label_perplexity": perplexity(nll / max(len(actual), 1)),
            "confusion": confusion(predicted, actual, classes)}


@dataclasses.dataclass
class LangIdResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    confusion: np.ndarray
    vocab_size: int


def run_langid(cfg: LangIdConfig, raw: Path, runs: ExperimentRuns, device: str = "cpu") -> LangIdResult:
    splits = split_languages(cfg, raw)
    counts = Counter(char for line, _ in splits["train"] for char in line)
    vocab = Vocabulary.build(counts, min_freq=2, meta={"kind": "text", "level": "char"})
    data = {split: tuple(t.to(device) for t in encode(pairs, vocab)) for split, pairs in splits.items()}
    classes = len(cfg.languages)
    tracker = runs.open(cfg.model.cell, {"langid": cfg}, {"cell": cfg.model.cell})
    set_seed(cfg.train.seed)
    model = build_head_model("classifier", cfg.model, len(vocab), classes)
    draw = RandomBatches(data["train"], cfg.train.batch_size, cfg.train.seed, lengths=1)

    def evaluate(m):
        return {k: v for k, v in evaluate_classifier(m, data["val"], classes).items() if k != "confusion"}

    result = train_supervised(model, draw, _loss, cfg.train, device=device, tracker=tracker, evaluate=evaluate)
    model.eval()
    with torch.no_grad():
        test = evaluate_classifier(model, data["test"], classes)
    matrix = test.pop("confusion")
    per_language = {lang: float(matrix[i, i] / max(matrix[i].sum(), 1)) for i, lang in enumerate(cfg.languages)}
    tracker.log_metrics({f"test_{k}": v for k, v in test.items()}, step=cfg.train.steps)
    tracker.log_metrics({f"test_accuracy_{k}": v for k, v in per_language.items()}, step=cfg.train.steps)
    metrics = {**{f"test_{k}": v for k, v in test.items()}, "test_accuracy_per_language": per_language,
               "vocab_size": len(vocab), **{k: result.metrics[k] for k in ("steps", "train_seconds", "parameters")}}
    return LangIdResult(metrics, result.history, matrix, len(vocab))


def _loss(model: torch.nn.Module, batch) -> torch.Tensor:
    ids, lengths, labels = batch
    return F.cross_entropy(model(ids, lengths), labels)


def write_langid(out: Path, result: LangIdResult, languages: tuple[str, ...]) -> list[Path]:
    """``history.csv``, ``confusion.png`` and ``metrics.json`` in ``out``."""
    write_csv(out / "history.csv", result.history)
    title = f"Which language? test accuracy {result.metrics['test_accuracy']:.1%}"
    return [out / "history.csv", plots.plot_confusion(result.confusion, languages, out / "confusion.png", title),
            write_metrics(out / "metrics.json", result.metrics)]
