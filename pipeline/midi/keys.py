"""Krumhansl-Schmuckler key finding on a pitch-class distribution: music21's ``KrumhanslSchmuckler`` analysis,
its arithmetic copied step for step, without building a Stream, Notes and 24 Key objects per call.

music21 (``analysis.discrete.KeyWeightKeyAnalysis``) correlates the distribution with the major and the minor
profile rotated to each of the 12 tonics and keeps the best of the 24 (ties: the higher tonic, then minor).
The sums below run in music21's order over the same numbers (floats, or Fractions for lengths such as 1/3 of
a quarter), so every coefficient, and hence every key, is the one music21 finds: the encode stage's key
normalisation and the music judge's in-key share stay exactly what they were
(``tests/test_midi_keys.py`` compares the two on real pieces and on edge cases).  Pure Python: the caller
turns note lengths into music21's quarter lengths (:func:`pipeline.midi.io.estimate_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

# Krumhansl and Kessler's probe-tone profiles, as music21 holds them
MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)

Length = float | int | Fraction


def correlations(distribution: Sequence[Length], profile: Sequence[float]) -> list[float]:
    """Pearson correlation of ``distribution`` with ``profile`` rotated to each tonic (0 where one is flat)."""
    solution = [0.0] * 12
    top = [0.0] * 12
    bottom_right = [0.0] * 12
    bottom_left = [0.0] * 12
    profile_average = sum(profile) / len(profile)
    histogram_average = sum(distribution) / len(distribution)
    for i in range(12):
        for j in range(len(profile)):
            weight = profile[(j - i) % 12] - profile_average
            top[i] = top[i] + (weight * (distribution[j] - histogram_average))
            bottom_right[i] = bottom_right[i] + (weight ** 2)
            bottom_left[i] = bottom_left[i] + ((distribution[j] - histogram_average) ** 2)
            if bottom_right[i] == 0 or bottom_left[i] == 0:
                solution[i] = 0.0
            else:
                solution[i] = float(top[i] / ((bottom_right[i] * bottom_left[i]) ** 0.5))
    return solution


def krumhansl_schmuckler(distribution: Sequence[Length]) -> tuple[int, str]:
    """The key of a 12-bin pitch-class distribution (quarter lengths per pitch class): (tonic, mode)."""
    if len(distribution) != 12:
        raise ValueError(f"a pitch-class distribution has 12 bins, not {len(distribution)}")
    candidates = [(coefficient, tonic, mode) for mode, profile in (("major", MAJOR), ("minor", MINOR))
                  for tonic, coefficient in enumerate(correlations(distribution, profile))]
    _, tonic, mode = max(candidates)
    return tonic, mode
