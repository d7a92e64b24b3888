"""The evaluate stage's measures of one trained variant: its figures on every split, and its samples drawn and judged.

:func:`evaluate_variant` is the stage's one call: it loads the best checkpoint of a run folder, scores val and
test, mixes the model with an n-gram where ``evaluate.interpolate`` asks for it, and draws (and for music judges)
the samples, returning the :class:`~pipeline.evaluation.results.Figures`.

The figures follow one protocol for every model: perplexity = exp(mean NLL per predicted token), with
``<eos>`` predicted and counted and ``<pad>`` never; streams are scored with the state carried across the
whole split (``EvaluateConfig.batch_size: 1``), records (names) one by one from an ``<eos>`` context.
A bidirectional LM is scored per direction; its samples come from its forward direction, which is a causal
LM on its own (the model as a whole still refuses to generate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline import files
from pipeline.config import EvaluateConfig, SampleConfig
from pipeline.evaluation.guide import guide_for
from pipeline.evaluation.judge import render_and_judge
from pipeline.evaluation.mixture import interpolate_dataset
from pipeline.evaluation.render import sample_renderer
from pipeline.evaluation.results import Figures
from pipeline.figures import reported_figures
from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.models.sampling import sample
from pipeline.models.scoring import evaluate_split, evaluate_windows
from pipeline.run_folder import RunFolder
from pipeline.runtime import resolve_device, set_seed
from pipeline.vocab import Vocabulary


def evaluate_variant(folder: RunFolder, data_dir: Path, cfg: EvaluateConfig, *, dataset: str, batching: str,
                     samples: Path, where: str) -> Figures:
    """Score ``folder``'s model on ``data_dir``'s val and test splits as it was batched in training (``batching``)
    and draw its samples into ``samples`` (the folder replaced as a whole); ``dataset`` picks the
    ``evaluate.interpolate`` entry, ``where`` names the params file in errors."""
    vocab = Vocabulary.load(data_dir / "vocab.json")
    device = resolve_device(cfg.device)
    model = model_from_checkpoint(load_checkpoint(folder.model, map_location=device), device)
    splits = {split: files.read_tokens(data_dir / f"{split}.npy", len(vocab)) for split in ("val", "test")}
    char_level = vocab.meta.get("level") == "char"
    mixed = interpolate_dataset(generator_of(model), cfg, dataset, data_dir, splits, where=where,
                                vocab_size=len(vocab), mode=batching, batch_size=cfg.batch_size, bptt=cfg.bptt,
                                device=device, char_level=char_level)
    values = score_splits(model, splits, cfg, mode=batching, char_level=char_level, device=device)
    if mixed is not None:  # the model mixed with an n-gram fitted on train (evaluate.interpolate)
        values["interpolated"] = mixed
    set_seed(cfg.seed)
    with files.atomic_dir(samples) as tmp:
        drawn, music = draw_and_judge(model, vocab, cfg, tmp, splits, device=device)
    values.update(music)  # music: the samples judged against the held-out pieces
    return Figures(values, sample_dir=samples, samples=tuple(f.name for f in drawn))


def score_splits(model: nn.Module, splits: dict[str, np.ndarray], cfg: EvaluateConfig, *, mode: str,
                 char_level: bool, device: str) -> dict[str, dict[str, float]]:
    """``{split: {loss, perplexity, bits_per_token, tokens, lanes, [bpc], [forward_/backward_...]}}``; ``lanes``:
    the parallel streams (or records per batch) the split was scored with (:func:`scoring_lanes`)."""
    out = {}
    for name, ids in splits.items():
        if ids.size < 2:
            continue  # an empty split (e.g. test: 0.0) has nothing to score
        lanes = scoring_lanes(cfg, len(ids))
        figures = evaluate_split(model, ids, mode=mode, batch_size=lanes, bptt=cfg.bptt, device=device)
        if cfg.windows is not None and getattr(model, "causal", True):
            windows = evaluate_windows(model, ids, length=cfg.windows.length, count=cfg.windows.count,
                                       seed=cfg.seed, device=device)
            figures.update({f"window_{k}": v for k, v in windows.items() if k != "tokens"})
        out[name] = {**reported_figures(figures, char_level), "lanes": lanes}
    return out


def scoring_lanes(cfg: EvaluateConfig, tokens: int) -> int:
    """``cfg.batch_size``, or ``cfg.lanes`` for a split longer than ``cfg.lanes_above_tokens`` tokens."""
    if cfg.lanes_above_tokens is not None and tokens > cfg.lanes_above_tokens:
        return max(cfg.batch_size, cfg.lanes)
    return cfg.batch_size


def generator_of(model: nn.Module) -> nn.Module:
    """The causal model to sample from: the model itself, or a bidirectional LM's forward direction."""
    if getattr(model, "causal", True):
        return model
    return model.forward_lm()


def sample_sequences(model: nn.Module, vocab: Vocabulary, cfg: SampleConfig, *, seed: int,
                     device: str) -> list[list[int]]:
    """``cfg.n`` sequences in one batch; music with ``forbid_sounding_note_on`` is steered by a ``MusicGuide``."""
    if cfg.n < 1:
        return []
    guide = guide_for(vocab, cfg.n, cfg.forbid_sounding_note_on, cfg.max_note_quarters)
    return sample(generator_of(model), n=cfg.n, max_length=cfg.max_length, temperature=cfg.temperature,
                  top_k=cfg.top_k, top_p=cfg.top_p, seed=seed, device=torch.device(device), guide=guide)


def draw_samples(model: nn.Module, vocab: Vocabulary, cfg: SampleConfig, folder: Path, *, seed: int,
                 device: str) -> list[Path]:
    """Sample ``cfg.n`` sequences in one batch and render them (text, or MIDI + piano roll) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sequences = sample_sequences(model, vocab, cfg, seed=seed, device=device)
    return sample_renderer(vocab, cfg.max_note_quarters)(sequences, folder) if sequences else []


def draw_and_judge(model: nn.Module, vocab: Vocabulary, cfg: EvaluateConfig, folder: Path,
                   splits: dict[str, np.ndarray], *, device: str) -> tuple[list[Path], dict]:
    """:func:`draw_samples`, and for music the figures that compare the samples with ``splits`` (``{"music": ...}``)."""
    sequences = sample_sequences(model, vocab, cfg.samples, seed=cfg.seed, device=device)
    return render_and_judge(vocab, sequences, cfg.samples, folder, splits)
