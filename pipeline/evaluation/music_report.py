"""The report's music table: every variant's samples, the n-gram's, and real music, per MIDI dataset.

Reads the ``music`` figures the evaluate and baseline stages wrote into ``metrics/<dataset>/<variant>.json``
(see :mod:`pipeline.evaluation.music`).  Rows: each trained variant, ``ngram``, then two rows of real music:
``test split`` (the reference's own values: its distances are 0 by definition) and ``val vs test`` (the val
split judged against the test split: the floor no sample set can be expected to beat, and the val split's own
values).  In the markdown, the sampled row closest to real music is bold on every column: the lowest distance,
or the value nearest the test split's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import files
from pipeline.config import NgramConfig, TrainRunConfig

DISTANCES = ["pitch_class_histogram_distance", "note_length_histogram_distance", "ioi_histogram_distance",
             "polyphony_histogram_distance"]
VALUES = ["pitch_range", "polyphony", "note_density", "in_key_share", "repetition"]
COLUMNS = ["dataset", "variant", *DISTANCES, *VALUES, "notes", "closed_notes"]
REFERENCE, FLOOR = "test split", "val vs test"
HEADERS = {"pitch_class_histogram_distance": "pitch class", "note_length_histogram_distance": "note length",
           "ioi_histogram_distance": "onset interval", "polyphony_histogram_distance": "polyphony hist.",
           "pitch_range": "pitch range", "polyphony": "polyphony", "note_density": "notes/quarter",
           "in_key_share": "in key", "repetition": "repetition", "notes": "notes", "closed_notes": "closed"}


def _music(path: Path) -> dict[str, Any]:
    return (files.read_json(path).get("music") or {}) if path.exists() else {}


def collect_music(runs: dict[str, TrainRunConfig], baselines: dict[str, NgramConfig], metrics: Path) -> pd.DataFrame:
    """One row per sampled variant with music figures, plus the two real-music rows per dataset."""
    variants: dict[str, list[str]] = {}
    for run in runs.values():
        variants.setdefault(run.dataset, []).append(run.variant)
    for dataset in baselines:
        variants.setdefault(dataset, []).append("ngram")
    rows = []
    for dataset, names in sorted(variants.items()):
        found = {v: m for v in names if (m := _music(Path(metrics) / dataset / f"{v}.json"))}
        if not found:
            continue
        rows += [{"dataset": dataset, "variant": v, **{c: m.get(c) for c in COLUMNS[2:]}} for v, m in found.items()]
        any_music = next(iter(found.values()))
        if reference := any_music.get("reference"):
            rows.append({"dataset": dataset, "variant": REFERENCE, **{c: 0.0 for c in DISTANCES},
                         **{c: reference.get(c) for c in VALUES}, "notes": None, "closed_notes": None})
        if floor := any_music.get("floor"):
            rows.append({"dataset": dataset, "variant": FLOOR, **{c: floor.get(c) for c in DISTANCES + VALUES},
                         "notes": None, "closed_notes": None})
    return pd.DataFrame(rows, columns=COLUMNS)


def closest(group: pd.DataFrame) -> dict[str, str]:
    """Per column, the sampled variant closest to real music (lowest distance, value nearest the test split's)."""
    sampled = group[~group["variant"].isin([REFERENCE, FLOOR])]
    reference = group[group["variant"] == REFERENCE]
    out = {}
    for col in DISTANCES + VALUES:
        values = pd.to_numeric(sampled[col], errors="coerce")
        if col in VALUES:
            target = pd.to_numeric(reference[col], errors="coerce")
            if target.empty or target.isna().all():
                continue
            values = (values - float(target.iloc[0])).abs()
        if values.notna().any():
            out[col] = str(sampled.loc[values.idxmin(), "variant"])
    return out


def music_markdown(table: pd.DataFrame) -> str:
    """A "music" section per MIDI dataset ("" when there is none)."""
    if table.empty:
        return ""
    parts = ["", "# Music: samples against real pieces", "",
             "Distances: Jensen-Shannon divergence (bits, 0 = same distribution) between the samples' and the "
             "held-out test split's histograms of pitch class, note length, onset interval and notes sounding "
             "at once. Values: pitch range (semitones), mean polyphony, notes per quarter note, share of notes in "
             "the piece's key (music21's estimate), repetition (bars that repeat an earlier bar, 0-1). "
             f"`{REFERENCE}` is the reference's own values; `{FLOOR}` is real music against real music, the floor. "
             "Bold: the sampled row closest to real music. `closed`: sampled notes held longer than "
             "`evaluate.samples.max_note_quarters`, closed there by decoding.", ""]
    for dataset, group in table.groupby("dataset", sort=True):
        best = closest(group)
        shown = group.drop(columns=["dataset"]).astype(object)
        for col in COLUMNS[2:]:
            shown[col] = [_cell(v, col, variant == best.get(col)) for v, variant in zip(group[col], group["variant"],
                                                                                         strict=True)]
        shown = shown.rename(columns=HEADERS)
        parts += [f"## {dataset}", "", shown.to_markdown(index=False, missingval="", disable_numparse=True), ""]
    return "\n".join(parts)


def _cell(value: Any, col: str, bold: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{float(value):,.0f}" if col in ("notes", "closed_notes") else f"{float(value):.3f}"
    return f"**{text}**" if bold else text
