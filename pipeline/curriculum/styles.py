"""One-to-many: music generation conditioned on an integer, the style id.

Several MIDI token datasets encoded the same way (by default ``chorales-note``: Bach chorales, four voices,
and ``folk-note``: fiddle tunes, one line) become one training set: the vocabularies are merged, every piece
is cut into rows of ``chunk`` tokens, and each row carries the index of its dataset as its style.  The model
(:class:`pipeline.models.ConditionedLM`) computes its initial state a<0> (and c<0>) from the style alone
(the one-to-many picture: the input is the style, fed once) and then generates as any causal LM.  So
"play a chorale" and "play a folk tune" come from one set of weights: ``model.conditioned(style)``.

How much the condition matters is measured two ways: the validation loss with each row's own style against
the loss with a wrong style (``condition_gain`` = wrong - own, nats per token), and the polyphony (notes per
onset) of samples drawn under each style.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import StylesConfig
from pipeline.curriculum import plots
from pipeline.curriculum.batches import RandomBatches, in_chunks, pad_rows
from pipeline.curriculum.outputs import ExperimentRuns, write_csv, write_metrics
from pipeline.data.windows import split_records
from pipeline.errors import UserError
from pipeline.models import build_head_model
from pipeline.models.sampling import sample
from pipeline.runtime import set_seed
from pipeline.training.supervised import train_supervised
from pipeline.vocab import EOS_ID, PAD_ID, Vocabulary

#: Meta keys that may differ between the merged datasets (they name the data, not how tokens decode).
NAMING_KEYS = ("corpus", "dataset", "transpose", "normalize_key")


def merge_vocabularies(names: Sequence[str], vocabs: Sequence[Vocabulary]) -> Vocabulary:
    """One vocabulary holding every token of ``vocabs`` (the first one's order, then new tokens in order).

    The datasets must decode alike (same encoding, grid, chord naming, ...): a token must mean one thing.
    """
    first = vocabs[0].meta
    for name, vocab in zip(names[1:], vocabs[1:], strict=True):
        for key in sorted(set(first) | set(vocab.meta)):
            if key not in NAMING_KEYS and first.get(key) != vocab.meta.get(key):
                raise UserError(f"curriculum.styles: datasets {names[0]} and {name} differ in {key!r} "
                                f"({first.get(key)!r} vs {vocab.meta.get(key)!r}); encode them alike in encode_midi")
    tokens = list(dict.fromkeys(t for vocab in vocabs for t in vocab.tokens))
    return Vocabulary(tokens, {**first, "dataset": "+".join(names), "styles": list(names)})


def remap(ids: np.ndarray, source: Vocabulary, target: Vocabulary) -> np.ndarray:
    """Ids of ``source`` -> the same tokens' ids in ``target``."""
    table = np.array([target.index[t] for t in source.tokens], dtype=np.int64)
    return table[np.asarray(ids, dtype=np.int64)]


def chunk_rows(ids: np.ndarray, chunk: int) -> list[np.ndarray]:
    """Every piece (``<eos>``-closed) as rows of ``chunk + 1`` ids (inputs and targets), ``<eos>`` first."""
    rows = []
    for record in split_records(ids):
        seq = np.concatenate([[EOS_ID], record])
        rows += [seq[s : s + chunk + 1] for s in range(0, len(seq) - 1, chunk)]
    return rows


def style_dataset(rows_by_style: Sequence[list[np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs (N, T), targets (N, T), styles (N,)) with ``<pad>`` targets past each row's end."""
    rows = [row for rows in rows_by_style for row in rows]
    styles = torch.tensor([s for s, rows in enumerate(rows_by_style) for _ in rows])
    padded, _ = pad_rows(rows)  # (N, T + 1)
    return padded[:, :-1], padded[:, 1:], styles


def lm_nll(model, inputs: torch.Tensor, targets: torch.Tensor, styles: torch.Tensor) -> tuple[float, int]:
    """Summed NLL of the targets given the styles, and the token count (``<pad>`` ignored)."""
    total, count = 0.0, 0
    for x, y, s in in_chunks((inputs, targets, styles), 256):
        logits, _ = model(x, conditions=s)  # (B, T, V)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD_ID,
                                       reduction="sum"))
        count += int((y != PAD_ID).sum())
    return total, count


def condition_figures(model, data: tuple[torch.Tensor, ...], num_styles: int) -> dict[str, float]:
    """Validation loss with each row's own style, with the next style instead, and the difference."""
    inputs, targets, styles = data
    own, count = lm_nll(model, inputs, targets, styles)
    wrong, _ = lm_nll(model, inputs, targets, (styles + 1) % num_styles)
    return {"loss": own / count, "loss_wrong_style": wrong / count, "condition_gain": (wrong - own) / count}


def polyphony(sequences: list[list[int]], vocab: Vocabulary) -> float:
    """Mean notes per onset over decoded samples (1 for a melody, ~2 for a four-voice chorale: a note held while
    other voices move is one note)."""
    from pipeline.midi.codec import codec_from_meta

    codec, ratios = codec_from_meta(vocab.meta), []
    for seq in sequences:
        notes = codec.decode([vocab.tokens[i] for i in seq])
        if notes:
            ratios.append(len(notes) / len({n.start for n in notes}))
    return float(np.mean(ratios)) if ratios else 0.0


@dataclasses.dataclass
class StylesResult:
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    vocab: Vocabulary
    samples: dict[str, list[list[int]]]  # style (dataset name) -> sampled ids


def run_styles(cfg: StylesConfig, datasets: dict[str, tuple[Vocabulary, dict[str, np.ndarray]]], runs: ExperimentRuns,
               device: str = "cpu") -> StylesResult:
    """Train one conditioned LM over ``datasets`` (name -> (vocab, {train, val} ids)), then sample every style."""
    names = list(cfg.datasets)
    vocab = merge_vocabularies(names, [datasets[n][0] for n in names])
    data = {split: tuple(t.to(device) for t in style_dataset(
        [chunk_rows(remap(datasets[n][1][split], datasets[n][0], vocab), cfg.chunk) for n in names]))
        for split in ("train", "val")}
    tracker = runs.open(cfg.model.cell, {"styles": cfg}, {"cell": cfg.model.cell})
    set_seed(cfg.train.seed)
    model = build_head_model("conditioned_lm", cfg.model, len(vocab), len(names))
    draw = RandomBatches(data["train"], cfg.train.batch_size, cfg.train.seed)
    result = train_supervised(model, draw, _loss, cfg.train, device=device, tracker=tracker,
                              evaluate=lambda m: condition_figures(m, data["val"], len(names)))
    samples, metrics = {}, {k: result.metrics[k] for k in ("loss", "loss_wrong_style", "condition_gain", "steps",
                                                           "train_seconds", "parameters")}
    for style, name in enumerate(names):
        s = cfg.samples
        samples[name] = sample(model.conditioned(style), n=s.n, max_length=s.max_length, temperature=s.temperature,
                               top_k=s.top_k, top_p=s.top_p, seed=cfg.train.seed + style, device=device)
        metrics[f"sample_polyphony_{name}"] = polyphony(samples[name], vocab)
        pieces = [remap(r[:-1], datasets[name][0], vocab).tolist() for r in split_records(datasets[name][1]["val"])]
        metrics[f"data_polyphony_{name}"] = polyphony(pieces, vocab)
    tracker.log_metrics({k: v for k, v in metrics.items() if k not in ("steps", "parameters")}, step=cfg.train.steps)
    return StylesResult(metrics, result.history, vocab, samples)


def render_samples(result: StylesResult, folder: Path) -> list[Path]:
    """Every sample as ``<style>_<i>.mid`` plus its piano roll (music21 writes the MIDI)."""
    from pipeline.evaluation.render import render_music

    files = []
    for name, sequences in result.samples.items():
        files += render_music(result.vocab, sequences, folder, stem=name)
    return files


def _loss(model, batch) -> torch.Tensor:
    inputs, targets, styles = batch
    logits, _ = model(inputs, conditions=styles)  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD_ID)


def write_styles(out: Path, result: StylesResult) -> list[Path]:
    """``history.csv``, ``metrics.json`` and ``styles.png`` (the first sample of every style as a piano roll)."""
    from pipeline.midi.codec import codec_from_meta

    codec = codec_from_meta(result.vocab.meta)
    rolls = {name: [(n.start, n.end, n.pitch) for n in codec.decode(result.vocab.decode(seqs[0]))]
             for name, seqs in result.samples.items() if seqs}
    write_csv(out / "history.csv", result.history)
    return [out / "history.csv", write_metrics(out / "metrics.json", result.metrics),
            plots.plot_piano_rolls(rolls, out / "styles.png", "one model, style id")]
