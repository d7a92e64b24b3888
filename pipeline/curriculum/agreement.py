"""Long-range dependencies: number agreement at a controllable distance.

"The cat, which the dogs chased around the old barn, *was* full" / "The cats, which ..., *were* full": the
verb's number depends on the subject, however far back it is.  Here a sequence is ``the <subject>`` followed
by ``distance`` filler tokens, and a many-to-one classifier reads it and answers singular or plural (the
verb it would choose: was / were).  Fillers are function words, adjectives and verbs, and with probability
``attractor_rate`` a noun of either number: an attractor, so "the number of the last noun" is no shortcut.

The experiment: for every cell and every ``d`` in ``distances``, a fresh classifier (same size, same steps,
same batches for every cell) trains on distances drawn uniformly from [1, d] and is tested on fresh
sequences at exactly d.  Chance is 50%.  The accuracy against d shows how long a dependency each cell can
*learn* with that budget: the gradient from the label must reach the subject d steps back.
(Decision: with distances mixed over a wide range in one model, short examples teach the model to latch
the subject and it then generalises to any distance; with a fixed band and no short examples nothing is
learnt at all.  Training on [1, d] per d sits between the two and is what separates the cells.)
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import files
from pipeline.config import AgreementConfig, ModelConfig
from pipeline.curriculum import plots
from pipeline.curriculum.batches import in_chunks, pad_rows
from pipeline.curriculum.outputs import ExperimentRuns, write_csv, write_metrics
from pipeline.curriculum.parallel import Job, run_jobs
from pipeline.models import build_head_model
from pipeline.models.heads import set_forget_bias
from pipeline.runtime import set_seed
from pipeline.tracking import Tracker
from pipeline.training.supervised import train_supervised
from pipeline.vocab import SPECIALS

SINGULAR = ("cat", "dog", "key", "child", "author", "bird", "house", "letter")
PLURAL = ("cats", "dogs", "keys", "children", "authors", "birds", "houses", "letters")
FILLERS = ("the", "which", "that", "of", "near", "behind", "with", "old", "small", "red", "very", "saw", "liked",
           "chased", "on", "and", "a", "big", "quiet", "in")
TOKENS = (*SPECIALS, *SINGULAR, *PLURAL, *FILLERS)
ID = {token: i for i, token in enumerate(TOKENS)}
LABELS = ("was", "were")  # singular, plural


NOUN_IDS = np.array([[ID[w] for w in SINGULAR], [ID[w] for w in PLURAL]])  # (2, K)
FILLER_IDS = np.array([ID[w] for w in FILLERS])


def make_examples(distances: np.ndarray, attractor_rate: float, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], np.ndarray]:
    """One sequence per distance: ``the <subject> <filler x distance>``; labels 0 (singular) / 1 (plural).

    Every training batch is drawn here, row by row.  ``rng.integers(0, n)`` indexing an array draws exactly what
    ``rng.choice(array)`` draws (the same values, the generator left in the same state) at half the cost, so
    the examples are those of the ``choice`` formulation; the draws stay in the same order.
    """
    n_fillers, n_nouns = len(FILLER_IDS), NOUN_IDS.shape[1]
    labels = rng.integers(0, 2, size=len(distances))
    rows = []
    for label, distance in zip(labels.tolist(), np.asarray(distances).tolist(), strict=True):
        tail = FILLER_IDS[rng.integers(0, n_fillers, size=distance)]
        attract = rng.random(distance) < attractor_rate
        k = int(np.count_nonzero(attract))
        tail[attract] = NOUN_IDS[rng.integers(0, 2, k), rng.integers(0, n_nouns, k)]
        row = np.empty(distance + 2, dtype=tail.dtype)
        row[0], row[1], row[2:] = ID["the"], NOUN_IDS[label, rng.integers(0, n_nouns)], tail
        rows.append(row)
    return rows, labels


def render(row: np.ndarray, label: int) -> str:
    """A sequence as words, with the verb it calls for: ``the cats old of the dog saw -> were``."""
    return " ".join(TOKENS[i] for i in row) + f" -> {LABELS[label]}"


def accuracy_at(model: torch.nn.Module, tensors: tuple[torch.Tensor, ...], device: str | torch.device = "cpu") -> float:
    """Share of (ids, lengths, labels) the classifier gets right."""
    correct = 0
    for ids, lengths, labels in in_chunks(tensors, 512):
        correct += int((model(ids.to(device), lengths.to(device)).argmax(-1).cpu() == labels).sum())
    return correct / len(tensors[0])


@dataclasses.dataclass
class AgreementResult:
    rows: list[dict[str, Any]]  # cell, distance, accuracy, train_seconds
    metrics: dict[str, dict[str, float]]  # cell -> figures
    examples: list[str]


def run_agreement(cfg: AgreementConfig, runs: ExperimentRuns, device: str = "cpu", workers: int = 1) -> AgreementResult:
    """Train one classifier per (cell, distance); one tracked run each, named ``<cell>-d<distance>``.  Up to
    ``workers`` train at once (:func:`pipeline.curriculum.parallel.run_jobs`; 0: one per CPU): the same figures."""
    pairs = [(cell, distance) for cell in cfg.cells for distance in cfg.distances]
    # the longest first (the cells' costs differ less than the distances'), so that no core waits at the end
    longest_first = sorted(pairs, key=lambda pair: -pair[1])
    jobs = [Job(f"{cell}-d{distance:03d}", functools.partial(_open, cfg, cell, distance, runs),
                functools.partial(_one, cfg, cell, distance, device=device)) for cell, distance in longest_first]
    done = dict(zip(longest_first, run_jobs(jobs, workers, device), strict=True))
    rows = [done[pair] for pair in pairs]
    metrics = {cell: _summary(cfg, [r for r in rows if r["cell"] == cell]) for cell in cfg.cells}
    shown, labels = make_examples(np.array([4, 6, 8, 10]), cfg.attractor_rate, np.random.default_rng(cfg.train.seed))
    examples = [next((render(r, int(y)) for r, y in zip(shown, labels, strict=True) if y == label), "") for label in (0, 1)]
    return AgreementResult(rows, metrics, [e for e in examples if e])


def _model_config(cfg: AgreementConfig, cell: str) -> ModelConfig:
    return ModelConfig(cell=cell, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size)


def _open(cfg: AgreementConfig, cell: str, distance: int, runs: ExperimentRuns) -> Tracker:
    return runs.open(f"{cell}-d{distance:03d}", {"agreement": cfg, "model": _model_config(cfg, cell),
                                                 "distance": distance}, {"cell": cell, "distance": str(distance)})


def _one(cfg: AgreementConfig, cell: str, distance: int, tracker: Tracker, device: str) -> dict[str, Any]:
    model_cfg = _model_config(cfg, cell)
    set_seed(cfg.train.seed)
    model = build_head_model("classifier", model_cfg, len(TOKENS), len(LABELS))
    if cfg.forget_bias:
        set_forget_bias(model, cfg.forget_bias)
    rows, labels = make_examples(np.full(cfg.eval_examples, distance), cfg.attractor_rate,
                                 np.random.default_rng([cfg.train.seed, distance, 1]))
    test = (*pad_rows(rows), torch.from_numpy(labels))
    result = train_supervised(model, _training_batches(cfg, distance), _loss, cfg.train, device=device,
                              tracker=tracker, evaluate=lambda m: {"accuracy": accuracy_at(m, test, device)})
    tracker.log_metrics({"test_accuracy": result.metrics["accuracy"]}, step=cfg.train.steps)
    return {"cell": cell, "distance": distance, "accuracy": result.metrics["accuracy"],
            "train_seconds": result.metrics["train_seconds"]}


def _summary(cfg: AgreementConfig, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean accuracy over the distances, and the longest distance learnt (accuracy >= 95%; 0: none)."""
    learnt = [r["distance"] for r in rows if r["accuracy"] >= 0.95]
    return {"accuracy_mean": float(np.mean([r["accuracy"] for r in rows])), "longest_learnt": max(learnt, default=0),
            **{f"accuracy_d{r['distance']:03d}": r["accuracy"] for r in rows},
            "train_seconds": round(sum(r["train_seconds"] for r in rows), 3)}


def _training_batches(cfg: AgreementConfig, distance: int):
    rng = np.random.default_rng([cfg.train.seed, distance, 0])

    def draw(step: int):
        rows, labels = make_examples(rng.integers(1, distance + 1, size=cfg.train.batch_size), cfg.attractor_rate, rng)
        return (*pad_rows(rows), torch.from_numpy(labels))

    return draw


def _loss(model: torch.nn.Module, batch) -> torch.Tensor:
    ids, lengths, labels = batch
    return F.cross_entropy(model(ids, lengths), labels)


def write_agreement(out: Path, result: AgreementResult) -> list[Path]:
    """``accuracy.{csv,png}``, ``metrics.json`` and ``examples.txt`` in ``out``."""
    write_csv(out / "accuracy.csv", result.rows)
    files.write_text(out / "examples.txt", "\n".join(result.examples) + "\n")
    return [out / "accuracy.csv", plots.plot_agreement(result.rows, out / "accuracy.png"),
            write_metrics(out / "metrics.json", result.metrics), out / "examples.txt"]
