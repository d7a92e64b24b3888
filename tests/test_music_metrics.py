"""The music metrics on hand-made note lists whose answers are known, one table per metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation import music
from pipeline.evaluation.results import Figures, figures_to_metrics
from pipeline.midi.events import Note, Piece


def piece(*notes: tuple[int, int, int], resolution: int = 4) -> Piece:
    """Notes as (start, end, pitch) in steps of a quarter / ``resolution``."""
    return Piece(tuple(Note(s, e, p) for s, e, p in notes), resolution)


# C D E G, one quarter note each
MELODY = piece((0, 4, 60), (4, 8, 62), (8, 12, 64), (12, 16, 67))
# a C major triad for two quarters, then C5 for two
CHORD_THEN_NOTE = piece((0, 8, 60), (0, 8, 64), (0, 8, 67), (8, 16, 72))
# the same at 480 ticks per quarter: every metric counts in quarter notes
CHORD_THEN_NOTE_TICKS = piece((0, 960, 60), (0, 960, 64), (0, 960, 67), (960, 1920, 72), resolution=480)
# bar A (C, D), bar B (C, E), bar A again; a bar is 4 quarters = 16 steps
ABA = piece((0, 4, 60), (4, 8, 62), (16, 20, 60), (20, 24, 64), (32, 36, 60), (36, 40, 62))
TWO_EQUAL_BARS = piece((0, 4, 60), (4, 8, 62), (16, 20, 60), (20, 24, 62))
TWO_OTHER_BARS = piece((0, 4, 60), (16, 20, 61))
EIGHTHS_AND_WHOLE = piece((0, 2, 60), (2, 4, 62), (4, 20, 64), (20, 22, 65), (24, 26, 67))


def _hist(**bins: float) -> list[float]:
    out = [0.0] * (len(music.LENGTH_EDGES) + 1)
    labels = ["q1_4", "q1_2", "q3_4", "q1", "q3_2", "q2", "q3", "q4", "longer"]
    for label, value in bins.items():
        out[labels.index(label)] = value
    return out


@pytest.mark.parametrize(("pieces", "expected"), [
    ([MELODY], {0: 1, 2: 1, 4: 1, 7: 1}),
    ([CHORD_THEN_NOTE], {0: 2, 4: 1, 7: 1}),
    ([MELODY, CHORD_THEN_NOTE], {0: 3, 2: 1, 4: 2, 7: 2}),
    ([], {}),
])
def test_pitch_class_histogram(pieces, expected):
    want = np.zeros(12)
    for pc, n in expected.items():
        want[pc] = n
    assert music.pitch_class_histogram(pieces).tolist() == want.tolist()


@pytest.mark.parametrize(("pieces", "expected"), [
    ([MELODY], _hist(q1=4)),
    ([CHORD_THEN_NOTE], _hist(q2=4)),
    ([CHORD_THEN_NOTE_TICKS], _hist(q2=4)),
    ([EIGHTHS_AND_WHOLE], _hist(q1_2=4, q4=1)),
    ([piece((0, 1, 60), (1, 3, 60), (3, 30, 60))], _hist(q1_4=1, q1_2=1, longer=1)),
])
def test_note_length_histogram(pieces, expected):
    assert music.note_length_histogram(pieces).tolist() == expected


@pytest.mark.parametrize(("pieces", "expected"), [
    ([MELODY], _hist(q1=3)),  # 3 gaps between 4 onsets
    ([CHORD_THEN_NOTE], _hist(q2=1)),  # a chord is one onset
    ([EIGHTHS_AND_WHOLE], _hist(q1_2=2, q1=1, q4=1)),  # onsets 0 2 4 20 24 (steps): 1/2 1/2 4 1
    ([piece((0, 4, 60))], _hist()),
])
def test_inter_onset_interval_histogram(pieces, expected):
    assert music.ioi_histogram(pieces).tolist() == expected


@pytest.mark.parametrize(("pieces", "histogram", "mean"), [
    ([MELODY], [4, 0, 0], 1.0),
    ([CHORD_THEN_NOTE], [2, 0, 2], 2.0),  # 2 quarters of 3 notes, 2 of 1: (3*2 + 1*2) / 4
    ([CHORD_THEN_NOTE_TICKS], [2, 0, 2], 2.0),
    ([piece((0, 8, 60), (4, 12, 64))], [2, 1, 0], 4 / 3),  # 1, 2, 1 notes for 1 quarter each
    ([piece((0, 4, 60), (8, 12, 62))], [2, 0, 0], 1.0),  # silence does not count
])
def test_polyphony(pieces, histogram, mean):
    got = music.polyphony_histogram(pieces)
    assert got[:3].tolist() == histogram and got[3:].sum() == 0
    assert music.mean_polyphony(pieces) == pytest.approx(mean)


def test_polyphony_of_nine_notes_lands_in_the_last_bin():
    nine = piece(*[(0, 4, 60 + i) for i in range(9)])
    assert music.polyphony_histogram([nine]).tolist() == [0] * 7 + [1.0]


@pytest.mark.parametrize(("pieces", "pitch_range", "density"), [
    ([MELODY], 7.0, 1.0),  # 4 notes in 4 quarters
    ([CHORD_THEN_NOTE], 12.0, 1.0),
    ([MELODY, CHORD_THEN_NOTE], 9.5, 1.0),  # range: mean per piece
    ([EIGHTHS_AND_WHOLE], 7.0, 5 / 6.5),  # 5 notes, last ends at 26 steps = 6.5 quarters
    ([], math.nan, math.nan),
])
def test_pitch_range_and_note_density(pieces, pitch_range, density):
    assert music.pitch_range(pieces) == pytest.approx(pitch_range, nan_ok=True)
    assert music.note_density(pieces) == pytest.approx(density, nan_ok=True)


def _fixed_key(key):
    return lambda notes, resolution: key


@pytest.mark.parametrize(("pieces", "key", "share"), [
    ([MELODY], (0, "major"), 1.0),
    ([piece((0, 4, 60), (4, 8, 61), (8, 12, 62), (12, 16, 66))], (0, "major"), 0.5),  # C# and F# outside
    ([piece((0, 4, 69), (4, 8, 71), (8, 12, 72), (12, 16, 68))], (9, "minor"), 0.75),  # natural minor: G# outside
    # A C F G in A minor, C# outside (under A major it would be the other way round: 2 of 5)
    ([piece((0, 4, 69), (4, 8, 72), (8, 12, 77), (12, 16, 79), (16, 20, 73))], (9, "minor"), 0.8),
    ([piece((0, 4, 66), (4, 8, 67))], (7, "major"), 1.0),  # G major holds F#
    ([MELODY], None, math.nan),
])
def test_in_key_share(pieces, key, share):
    assert music.in_key_share(pieces, _fixed_key(key)) == pytest.approx(share, nan_ok=True)


def test_in_key_share_with_music21s_key_estimate():
    from pipeline.midi.io import estimate_key

    c_major = piece(*[(4 * i, 4 * i + 4, p) for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 62, 65, 71, 60])])
    assert estimate_key(c_major.notes, 4) == (0, "major")
    assert music.in_key_share([c_major], estimate_key) == 1.0
    with_blue_note = piece(*(n[:3] for n in c_major.notes[:-1]), (44, 48, 63), (48, 52, 60))  # E-flat once
    assert music.in_key_share([with_blue_note], estimate_key) == pytest.approx(11 / 12)
    assert estimate_key((), 4) is None


@pytest.mark.parametrize(("p", "overlaps", "score"), [
    (TWO_EQUAL_BARS, [1.0], 1.0),
    (TWO_OTHER_BARS, [0.0], 0.0),
    (ABA, [1 / 3, 1.0], 2 / 3),  # B shares C with A: 1 of 3 (onset, pitch) pairs; the second A repeats A
    (MELODY, [], math.nan),  # one bar: nothing earlier to repeat
    (piece((0, 4, 60), (32, 36, 60)), [1.0], 1.0),  # an empty bar between is not counted
])
def test_repetition(p, overlaps, score):
    assert music.bar_overlaps(p) == pytest.approx(overlaps)
    assert music.repetition([p]) == pytest.approx(score, nan_ok=True)


@pytest.mark.parametrize(("p", "q", "divergence"), [
    ([1, 2, 3], [2, 4, 6], 0.0),  # the same distribution
    ([1, 0], [0, 1], 1.0),  # nothing in common
    ([1, 0], [1, 1], 0.311278),  # 1/2 KL([1,0] || [3/4,1/4]) + 1/2 KL([1/2,1/2] || [3/4,1/4])
    ([0, 0], [1, 1], math.nan),  # an empty histogram
])
def test_jensen_shannon_divergence(p, q, divergence):
    assert music.js_divergence(p, q) == pytest.approx(divergence, abs=1e-6, nan_ok=True)
    assert music.js_divergence(q, p) == pytest.approx(divergence, abs=1e-6, nan_ok=True)  # symmetric


def test_judge_compares_samples_with_the_test_split_and_real_music_with_itself():
    key = _fixed_key((0, "major"))
    splits = {"val": [MELODY, CHORD_THEN_NOTE], "test": [MELODY, TWO_EQUAL_BARS]}
    figures = music.judge([MELODY, TWO_EQUAL_BARS], closed=3, max_note_quarters=4.0, splits=splits, key_of=key)
    assert figures["pieces"] == 2 and figures["notes"] == 8 and figures["closed_notes"] == 3
    assert figures["max_note_quarters"] == 4.0
    for name in music.HISTOGRAMS:  # the samples ARE the test split: distance 0
        assert figures[f"{name}_histogram_distance"] == 0.0
    assert figures["polyphony"] == 1.0 and figures["in_key_share"] == 1.0 and figures["repetition"] == 1.0
    assert figures["reference"] == {"split": "test", "pieces": 2, **{k: figures[k] for k in music.SCALARS}}
    floor = figures["floor"]
    assert floor["splits"] == "val-test" and floor["pitch_class_histogram_distance"] > 0
    assert floor["polyphony"] == pytest.approx(music.mean_polyphony(splits["val"]))
    tracked = figures_to_metrics(Figures({"music": figures}))
    assert tracked["music_closed_notes"] == 3.0 and tracked["music_polyphony"] == 1.0
    assert not any(k.startswith(("music_reference", "music_floor")) for k in tracked)  # nested: left to the JSON


def test_judge_without_a_test_split_uses_val_and_has_no_floor():
    figures = music.judge([MELODY], 0, None, {"val": [MELODY], "test": []}, key_of=_fixed_key(None))
    assert figures["reference"]["split"] == "val" and "floor" not in figures
    assert figures["in_key_share"] is None  # no key: no share (JSON null, never NaN)
