"""What scoring one model yields, and the two ways a stage passes it on: a flat metrics dict and one line of text.

:class:`Figures` is the result of :func:`pipeline.evaluation.evaluate.evaluate_variant` (a trained variant) and
:func:`pipeline.evaluation.baseline.evaluate_baseline` (the n-gram).  Its ``values`` are exactly what
``metrics/<dataset>/<variant>.json`` holds (nested per split, plus ``interpolated`` and ``music`` when there are
such figures); :func:`figures_to_metrics` is the one flattening of them into tracker metrics, and
:func:`summary_line` the one sentence a stage prints about them.  Pure Python: no torch, no tracking.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Figures:
    """The figures of one evaluated model and the sample files drawn from it.

    ``tracked_splits``: the splits whose figures become ``<split>_<figure>`` metrics (a trained variant's
    validation figures are already in its training run, so its evaluation adds ``test`` only)."""

    values: dict[str, Any]
    model: str = ""  # how the summary names the model, e.g. "Kneser-Ney 4-gram"; "" for a trained variant
    sample_dir: Path | None = None
    samples: tuple[str, ...] = ()  # the names of the files written into sample_dir
    tracked_splits: tuple[str, ...] = ("test",)

    @property
    def sample_files(self) -> list[Path]:
        return [self.sample_dir / name for name in self.samples] if self.sample_dir is not None else []


def figures_to_metrics(figures: Figures) -> dict[str, float]:
    """The figures as one flat dict of tracker metrics: ``<split>_<figure>`` for the tracked splits,
    ``interpolated_model_weight`` and ``interpolated_<split>_<figure>`` for a mixture with an n-gram, and
    ``music_<figure>`` for the numeric top-level music figures (the nested reference and floor stay in the JSON)."""
    values = figures.values
    out = {f"{split}_{k}": v for split in figures.tracked_splits for k, v in values.get(split, {}).items()}
    if mixed := values.get("interpolated"):
        out["interpolated_model_weight"] = mixed["model_weight"]
        out.update({f"interpolated_{split}_{k}": v for split in ("val", "test") for k, v in mixed.get(split, {}).items()})
    out.update({f"music_{k}": float(v) for k, v in values.get("music", {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
    return out


def summary_line(figures: Figures) -> str:
    """The sentence a stage prints about one model: its test perplexity (val without a test split), bpc, the
    mixture with an n-gram, the sample files and the sampled notes, each where there is one."""
    values = figures.values
    test = values.get("test", values.get("val", {}))
    parts = [f"{figures.model}, " if figures.model else "", f"test perplexity {test.get('perplexity', math.nan):.3f}"]
    if "bpc" in test:
        parts.append(f", {test['bpc']:.3f} bpc")
    parts.append(_mixture_words(values.get("interpolated")))
    if figures.sample_dir is not None:
        parts.append(f", {len(figures.samples)} sample files in {figures.sample_dir}")
    parts.append(_music_words(values.get("music")))
    return "".join(parts)


def _mixture_words(mixed: dict[str, Any] | None) -> str:
    if not mixed:
        return ""
    split = mixed.get("test", mixed["val"])
    return (f"; mixed with a Kneser-Ney {mixed['ngram_order']}-gram (weight {mixed['model_weight']:.3f} on the model, "
            f"fitted on val): {split['perplexity']:.3f}")


def _music_words(music: dict[str, Any] | None) -> str:
    if not music:
        return ""
    cap = music["max_note_quarters"]
    closed = f"{music['closed_notes']} held longer than {cap:g} quarters closed" if cap is not None else "no cap"
    return f", {music['notes']} sampled notes ({closed})"
