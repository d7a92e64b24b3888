"""Music that can be judged: features of a set of decoded pieces, compared with real music.

Following Yang & Lerch (2018, "On the evaluation of generative models in music"), a set of samples is judged by
how far the distribution of each musical feature lies from the same feature over real pieces: here the held-out
split, decoded with the same codec, so that what the encoding loses is lost on both sides.  Distances are the
Jensen-Shannon divergence of two histograms in bits, 0 (the same distribution) to 1 (nothing in common).  How far
two sets of real pieces lie from each other (the val split against the test split) is the floor: a sample set
closer than that is as close as real music gets.

Features (times in quarter notes, whatever a piece's resolution):

- pitch-class histogram: notes per pitch class (C, C#, ... B), pooled over the pieces;
- note-length histogram and inter-onset-interval histogram (time between successive distinct onsets), binned at
  :data:`LENGTH_EDGES`: 1/4, 1/2, 3/4, 1, 3/2, 2, 3, 4 quarters and longer;
- polyphony: notes sounding at once, weighted by time while anything sounds (histogram 1..8+, and the mean);
- pitch range (highest minus lowest pitch, mean per piece) and note density (notes per quarter note);
- in-key share: notes whose pitch class is in the diatonic scale of the piece's key (natural minor for minor
  keys), the key estimated per piece by a ``key_of(notes, resolution)`` function (music21's, through
  :func:`pipeline.midi.io.estimate_key`);
- repetition: for every bar (4 quarter notes: decoded files carry no metre) after the first, its best Jaccard
  overlap, over (onset in the bar, pitch), with an earlier bar of the same piece; the mean over the bars that
  hold notes (1: every bar repeats an earlier one, 0: none shares a note).

Pure numpy over :class:`~pipeline.midi.events.Piece` records; only :func:`judge` reaches music21 (lazily).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.midi.events import Note, Piece

LENGTH_EDGES = (0.375, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 4.5)  # bins: 1/4 1/2 3/4 1 3/2 2 3 4 longer
MAX_POLYPHONY = 8  # the last polyphony bin holds 8 or more
BAR_QUARTERS = 4
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
HISTOGRAMS = ("pitch_class", "note_length", "ioi", "polyphony")
SCALARS = ("pitch_range", "polyphony", "note_density", "in_key_share", "repetition")

KeyOf = Callable[[Sequence[Note], int], "tuple[int, str] | None"]


def pitch_class_histogram(pieces: Sequence[Piece]) -> np.ndarray:
    counts = np.zeros(12)
    for piece in pieces:
        for n in piece.notes:
            counts[n.pitch % 12] += 1
    return counts


def _length_bins(quarters: Sequence[float]) -> np.ndarray:
    return np.bincount(np.searchsorted(LENGTH_EDGES, quarters), minlength=len(LENGTH_EDGES) + 1).astype(float)


def note_length_histogram(pieces: Sequence[Piece]) -> np.ndarray:
    return _length_bins([(n.end - n.start) / p.resolution for p in pieces for n in p.notes])


def ioi_histogram(pieces: Sequence[Piece]) -> np.ndarray:
    gaps = []
    for p in pieces:
        onsets = sorted({n.start for n in p.notes})
        gaps += [(b - a) / p.resolution for a, b in zip(onsets, onsets[1:], strict=False)]
    return _length_bins(gaps)


def polyphony_histogram(pieces: Sequence[Piece]) -> np.ndarray:
    """Quarter notes spent with 1, 2, ..., 8+ notes sounding."""
    time = np.zeros(MAX_POLYPHONY)
    for p in pieces:
        changes = sorted([(n.start, 1) for n in p.notes] + [(n.end, -1) for n in p.notes])
        sounding = 0
        for (t, delta), (t_next, _) in zip(changes, changes[1:], strict=False):
            sounding += delta
            if sounding and t_next > t:
                time[min(sounding, MAX_POLYPHONY) - 1] += (t_next - t) / p.resolution
    return time


def mean_polyphony(pieces: Sequence[Piece]) -> float:
    """Notes sounding at once, on average over the time anything sounds (1 for a melody)."""
    time = polyphony_histogram(pieces)
    sounding = sum((n.end - n.start) / p.resolution for p in pieces for n in p.notes)
    return sounding / time.sum() if time.sum() else math.nan


def pitch_range(pieces: Sequence[Piece]) -> float:
    ranges = [max(n.pitch for n in p.notes) - min(n.pitch for n in p.notes) for p in pieces if p.notes]
    return float(np.mean(ranges)) if ranges else math.nan


def note_density(pieces: Sequence[Piece]) -> float:
    quarters = sum(p.quarters for p in pieces)
    return sum(len(p.notes) for p in pieces) / quarters if quarters else math.nan


def in_key_share(pieces: Sequence[Piece], key_of: KeyOf) -> float:
    inside = total = 0
    for p in pieces:
        key = key_of(p.notes, p.resolution)
        if key is None:
            continue
        tonic, mode = key
        scale = {(tonic + step) % 12 for step in (MINOR if mode == "minor" else MAJOR)}
        inside += sum(1 for n in p.notes if n.pitch % 12 in scale)
        total += len(p.notes)
    return inside / total if total else math.nan


def bar_overlaps(piece: Piece, bar_quarters: float = BAR_QUARTERS) -> list[float]:
    """Per bar after the first that holds notes: its best Jaccard overlap with an earlier bar of the piece."""
    width = bar_quarters * piece.resolution
    bars: dict[int, set[tuple[int, int]]] = {}
    for n in piece.notes:
        bars.setdefault(int(n.start // width), set()).add((int(n.start % width), n.pitch))
    seen: list[set[tuple[int, int]]] = []
    overlaps = []
    for index in sorted(bars):
        content = bars[index]
        if seen:
            overlaps.append(max(len(content & e) / len(content | e) for e in seen))
        seen.append(content)
    return overlaps


def repetition(pieces: Sequence[Piece]) -> float:
    overlaps = [o for p in pieces for o in bar_overlaps(p)]
    return float(np.mean(overlaps)) if overlaps else math.nan


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits of two histograms (normalised here); nan when either is empty."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, (kl(p) + kl(q)) / 2)


_HISTOGRAM_OF = {"pitch_class": pitch_class_histogram, "note_length": note_length_histogram,
                 "ioi": ioi_histogram, "polyphony": polyphony_histogram}


def features(pieces: Sequence[Piece], key_of: KeyOf) -> dict[str, float]:
    """The scalar features of a set of pieces (see the module docstring)."""
    return {"pitch_range": pitch_range(pieces), "polyphony": mean_polyphony(pieces),
            "note_density": note_density(pieces), "in_key_share": in_key_share(pieces, key_of),
            "repetition": repetition(pieces)}


def distances(pieces: Sequence[Piece], reference: Sequence[Piece]) -> dict[str, float]:
    """``<feature>_histogram_distance`` of every histogram feature: Jensen-Shannon divergence in bits."""
    return {f"{name}_histogram_distance": js_divergence(fn(pieces), fn(reference)) for name, fn in _HISTOGRAM_OF.items()}


def _rounded(figures: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(float(v), 6) if v is not None and math.isfinite(v) else None) for k, v in figures.items()}


def judge(samples: Sequence[Piece], closed: int, max_note_quarters: float | None, splits: dict[str, Sequence[Piece]],
          key_of: KeyOf | None = None) -> dict:
    """The ``music`` figures of a sample set against ``splits["test"]`` (the floor: ``val`` against ``test``).

    ``closed`` counts the sampled notes closed at ``max_note_quarters``.  Without a test split the val split is
    the reference and there is no floor.
    """
    if key_of is None:
        from pipeline.midi.io import estimate_key as key_of
    names = [s for s in ("test", "val") if splits.get(s)]
    reference = splits[names[0]] if names else []
    out: dict = {"pieces": len(samples), "notes": sum(len(p.notes) for p in samples), "closed_notes": closed,
                 "max_note_quarters": max_note_quarters}
    out.update(_rounded({**distances(samples, reference), **features(samples, key_of)}))
    if names:
        out["reference"] = {"split": names[0], "pieces": len(reference), **_rounded(features(reference, key_of))}
    if len(names) == 2:
        floor = {**distances(splits["val"], reference), **features(splits["val"], key_of)}
        out["floor"] = {"splits": "val-test", **_rounded(floor)}
    return out

