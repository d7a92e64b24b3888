"""Key finding: pipeline.midi.keys gives the key music21's KrumhanslSchmuckler analysis gives, on the same
durations (real chorales, random and degenerate distributions, Fraction lengths, ties)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.midi.events import Note
from pipeline.midi.io import estimate_key
from pipeline.midi.keys import krumhansl_schmuckler


def music21_key(weights: list[int], resolution: int) -> tuple[int, str] | None:
    """The key as music21 finds it: one note per pitch class, as long as all its notes together."""
    from music21 import analysis, note, stream

    if not any(weights):
        return None
    s = stream.Stream()
    for pc, ticks in enumerate(weights):
        if ticks:
            s.append(note.Note(60 + pc, quarterLength=ticks / resolution))
    key = analysis.discrete.KrumhanslSchmuckler().getSolution(s)
    return key.tonic.pitchClass, key.mode


def notes_of(weights: list[int]) -> list[Note]:
    return [Note(0, ticks, 60 + pc, 80, 1, 0, 0) for pc, ticks in enumerate(weights) if ticks]


EDGE_CASES = [
    [0] * 12,  # no notes
    [4] + [0] * 11,  # one pitch class
    [1] * 12,  # flat: every coefficient 0, the tie goes to the highest tonic
    [2, 0] * 6,  # whole-tone: ties between keys
    [3, 0, 0, 0, 3, 0, 0, 3, 0, 0, 0, 0],  # a C major triad
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
    [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]


@pytest.mark.parametrize("weights", EDGE_CASES)
@pytest.mark.parametrize("resolution", [1, 3, 4, 480])
def test_edge_cases_give_music21s_key(weights, resolution):
    assert estimate_key(notes_of(weights), resolution) == music21_key(weights, resolution)


def test_random_distributions_with_float_and_fraction_lengths_give_music21s_key():
    rng = np.random.default_rng(7)
    for trial in range(150):
        resolution = int(rng.choice([1, 3, 4, 6, 7, 12, 96, 480]))
        weights = [int(w) if rng.random() < 0.7 else 0 for w in rng.integers(1, 5 * resolution, size=12)]
        assert estimate_key(notes_of(weights), resolution) == music21_key(weights, resolution), (trial, weights)


def test_bach_chorales_give_music21s_key(tmp_path):
    from music21 import corpus

    from pipeline.midi.events import pitch_class_durations
    from pipeline.midi.io import read_midi

    paths = sorted(corpus.getComposer("bach", fileExtensions=("mxl",)), key=str)[:6]
    for i, path in enumerate(paths):
        midi_path = corpus.parse(path, forceSource=True).write("midi", fp=str(tmp_path / f"{i}.mid"))
        piece = read_midi(midi_path)
        weights = pitch_class_durations(piece.notes)
        assert estimate_key(piece.notes, piece.resolution) == music21_key(weights, piece.resolution), path


def test_a_distribution_has_twelve_bins():
    with pytest.raises(ValueError, match="12 bins"):
        krumhansl_schmuckler([1.0] * 11)
