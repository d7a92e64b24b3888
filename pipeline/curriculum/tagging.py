"""Many-to-many with Tx = Ty, where bidirectionality matters: restore the spaces removed from a text.

From a character dataset (``data/tokens/<dataset>``) every space and every ``<eos>`` (a line break) is removed,
and each remaining character is tagged 1 if a word starts there (a space or line break preceded it), else 0:
``"thecatsat" -> 1 0 0 1 0 0 1 0 0``.  Self-supervised: the labels come from the text itself.

A unidirectional tagger decides at character t having read only x<1..t>: whether "the" ends a word depends
on what follows ("the|cat" vs "the|re"), so it must guess.  The bidirectional tagger (the standard
concatenated BRNN) also reads x<t..T>.  Both get the same model size per direction, steps and batches
(the BRNN has about twice the recurrent parameters); the report gives F1 of the "word starts" tag and the
tag perplexity exp(mean NLL per character), which is 2 for a coin flip and 1 for certainty.
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
from pipeline.config import TaggingConfig
from pipeline.curriculum import plots
from pipeline.curriculum.batches import in_chunks
from pipeline.curriculum.metrics import binary_scores, label_nll
from pipeline.curriculum.outputs import ExperimentRuns, write_csv, write_metrics
from pipeline.curriculum.parallel import Job, run_jobs
from pipeline.errors import UserError
from pipeline.figures import perplexity
from pipeline.models import build_head_model
from pipeline.runtime import set_seed
from pipeline.tracking import Tracker
from pipeline.training.supervised import train_supervised
from pipeline.vocab import EOS_ID, Vocabulary

SPACE = " "


def remove_spaces(ids: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(characters without spaces and ``<eos>``, tags: 1 where a word starts) from a flat id stream."""
    if SPACE not in vocab:
        raise UserError("the tagging dataset's vocabulary has no ' ' (space): use a character-level text dataset")
    ids = np.asarray(ids, dtype=np.int64)
    boundary = (ids == vocab.id(SPACE)) | (ids == EOS_ID)
    after_boundary = np.concatenate([[True], boundary[:-1]])  # the stream starts a word
    keep = ~boundary
    return ids[keep], after_boundary[keep].astype(np.int64)


def restore(chars: np.ndarray, tags: np.ndarray, vocab: Vocabulary) -> str:
    """Characters with a space before every tagged word start (but the first)."""
    out = []
    for i, (char, tag) in enumerate(zip(vocab.decode(chars), tags, strict=True)):
        out.append(SPACE + char if tag and i else char)
    return "".join(out)


def windows(chars: np.ndarray, tags: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive non-overlapping windows (N, width) of characters and tags (the tail is dropped)."""
    n = len(chars) // width
    if n == 0:
        raise UserError(f"the split has {len(chars)} characters, fewer than tagging.window = {width}")
    shape = (n, width)
    return torch.from_numpy(chars[: n * width].reshape(shape)), torch.from_numpy(tags[: n * width].reshape(shape))


def require_training_window(chars: np.ndarray, width: int) -> None:
    """A window of ``width`` must fit inside the training split (raised before any run opens)."""
    if len(chars) <= width:
        raise UserError(f"the training split has {len(chars)} characters, fewer than tagging.window = {width}")


def random_windows(chars: np.ndarray, tags: np.ndarray, width: int, batch_size: int, seed: int):
    """``draw(step)`` -> a batch of windows at random offsets of the training stream."""
    require_training_window(chars, width)
    rng = np.random.default_rng(seed)
    chars_t, tags_t = torch.from_numpy(chars), torch.from_numpy(tags)

    def draw(step: int):
        starts = torch.from_numpy(rng.integers(0, len(chars) - width, size=batch_size))
        index = starts[:, None] + torch.arange(width)[None, :]  # (B, W)
        return chars_t[index], tags_t[index]

    return draw


def evaluate_tagger(model: torch.nn.Module, chars: torch.Tensor, tags: torch.Tensor) -> dict[str, float]:
    """F1 / precision / recall / accuracy of the word-start tag and the tag perplexity over fixed windows."""
    nll, count, predicted = 0.0, 0, []
    for ids, labels in in_chunks((chars, tags), 256):
        logits = model(ids)  # (B, W, 2)
        total, n = label_nll(logits.reshape(-1, 2), labels.reshape(-1))
        nll, count = nll + total, count + n
        predicted.append(logits.argmax(-1).reshape(-1))
    scores = binary_scores(torch.cat(predicted).numpy(), tags.reshape(-1).numpy())
    return {**scores, "tag_perplexity": perplexity(nll / max(count, 1))}


@dataclasses.dataclass
class TaggingResult:
    metrics: dict[str, dict[str, float]]  # direction -> test figures and training facts
    history: list[dict[str, Any]]  # direction, step, train_loss, val figures
    examples: dict[str, str]  # "input" / "truth" / direction -> restored text


def run_tagging(cfg: TaggingConfig, vocab: Vocabulary, splits: dict[str, np.ndarray], runs: ExperimentRuns,
                device: str = "cpu", workers: int = 1) -> TaggingResult:
    """Train one tagger per direction with the same budget; score them on the test split.  Up to ``workers``
    train at once (:func:`pipeline.curriculum.parallel.run_jobs`; 0: one per CPU): the same figures."""
    data = {name: remove_spaces(ids, vocab) for name, ids in splits.items()}
    scored = windows(*data["val"], cfg.window), windows(*data["test"], cfg.window)  # raise before any run opens
    require_training_window(data["train"][0], cfg.window)
    example = slice(0, min(3 * cfg.window, len(data["test"][0])))
    shown = data["test"][0][example]
    examples = {"input": "".join(vocab.decode(shown)), "truth": restore(shown, data["test"][1][example], vocab)}
    jobs = [Job(direction, functools.partial(_open, cfg, direction, runs),
                functools.partial(_train_direction, cfg, direction, vocab, data["train"], scored, shown, device=device))
            for direction in cfg.directions]
    metrics, history = {}, []
    for direction, (figures, rows, restored) in zip(cfg.directions, run_jobs(jobs, workers, device), strict=True):
        metrics[direction] = figures
        history += rows
        examples[direction] = restored
    return TaggingResult(metrics, history, examples)


def _open(cfg: TaggingConfig, direction: str, runs: ExperimentRuns) -> Tracker:
    return runs.open(direction, {"tagging": cfg, "model": dataclasses.replace(cfg.model, direction=direction)},
                     {"direction": direction})


def _train_direction(cfg: TaggingConfig, direction: str, vocab: Vocabulary, train: tuple[np.ndarray, np.ndarray],
                     scored: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                     shown: np.ndarray, tracker: Tracker, device: str
                     ) -> tuple[dict[str, float], list[dict[str, Any]], str]:
    """One tagger: its test figures, its history rows, and ``shown`` (test characters) restored by it;
    ``scored`` holds the validation and the test windows."""
    val, test = scored
    model_cfg = dataclasses.replace(cfg.model, direction=direction)
    set_seed(cfg.train.seed)
    model = build_head_model("tagger", model_cfg, len(vocab), 2)
    draw = random_windows(*train, cfg.window, cfg.train.batch_size, cfg.train.seed)
    result = train_supervised(model, draw, _loss, cfg.train, device=device, tracker=tracker,
                              evaluate=lambda m: evaluate_tagger(m, *_to(val, device)))
    model.eval()
    with torch.no_grad():
        figures = evaluate_tagger(model, *_to(test, device))
        restored = restore(shown, model(torch.from_numpy(shown)[None].to(device)).argmax(-1)[0].cpu().numpy(), vocab)
    tracker.log_metrics({f"test_{k}": v for k, v in figures.items()}, step=cfg.train.steps)
    metrics = {**{f"test_{k}": v for k, v in figures.items()}, "steps": result.metrics["steps"],
               "train_seconds": result.metrics["train_seconds"], "parameters": result.metrics["parameters"]}
    return metrics, [{"direction": direction, **row} for row in result.history], restored


def _to(tensors: tuple[torch.Tensor, ...], device: str) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in tensors)


def _loss(model: torch.nn.Module, batch) -> torch.Tensor:
    chars, tags = batch
    logits = model(chars)  # (B, W, 2)
    return F.cross_entropy(logits.reshape(-1, 2), tags.reshape(-1))


def write_tagging(out: Path, result: TaggingResult) -> list[Path]:
    """``history.csv``, ``tagging.png``, ``metrics.json`` and ``examples.txt`` (restored text) in ``out``."""
    write_csv(out / "history.csv", result.history)
    files.write_text(out / "examples.txt", "".join(f"{k}:\n{v}\n\n" for k, v in result.examples.items()))
    return [out / "history.csv", plots.plot_tagging(result.history, result.metrics, out / "tagging.png"),
            write_metrics(out / "metrics.json", result.metrics), out / "examples.txt"]
