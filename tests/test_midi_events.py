"""Pure note handling: quantization to the grid, overlaps, top voice, transposition, key shifts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.midi.events import (
    Note,
    Piece,
    drop_drums,
    key_shift,
    pitch_class_durations,
    quantize,
    resolve_overlaps,
    top_voice,
    transpose,
)
from tests import note_strategies

TPQ = 480


def test_quantize_rounds_to_nearest_step_and_counts_moved():
    # 16th grid at 480 ticks per quarter: one step = 120 ticks
    notes = (Note(0, 480, 60), Note(130, 235, 62), Note(60, 65, 64))
    q, stats = quantize(Piece(notes, TPQ), 4)
    assert q.resolution == 4
    assert [(n.start, n.end, n.pitch) for n in q.notes] == [(0, 4, 60), (1, 2, 62), (1, 2, 64)]
    assert stats.notes == 3 and stats.moved == 2  # the first note sits exactly on the grid


def test_quantize_half_step_rounds_up_and_tiny_notes_keep_one_step():
    q, stats = quantize(Piece((Note(60, 61, 60), Note(59, 59, 72)), TPQ), 4)
    # 60 ticks = exactly half a step: rounds up to step 1; the 0-length note keeps one step
    assert sorted((n.start, n.end, n.pitch) for n in q.notes) == [(0, 1, 72), (1, 2, 60)]
    assert stats.moved == 2


def test_same_pitch_same_onset_is_merged_with_longest_end_and_loudest_velocity():
    notes = (Note(0, 480, 60, velocity=50), Note(10, 960, 60, velocity=100))
    q, stats = quantize(Piece(notes, TPQ), 4)
    assert q.notes == (Note(0, 8, 60, velocity=100),)
    assert stats.merged == 1 and stats.truncated == 0


def test_contained_note_is_merged_and_outlasting_note_truncates_the_earlier():
    contained = resolve_overlaps([Note(0, 16, 60), Note(4, 6, 60)])
    assert contained == [Note(0, 16, 60)]
    cut = resolve_overlaps([Note(0, 8, 60), Note(4, 12, 60)])
    assert cut == [Note(0, 4, 60), Note(4, 12, 60)]  # a re-attack at step 4
    other_pitch = resolve_overlaps([Note(0, 8, 60), Note(4, 12, 61)])
    assert len(other_pitch) == 2 and other_pitch[0].end == 8


raw_notes = note_strategies.raw_notes(4000, 2000, 40)


@settings(max_examples=200, deadline=None)
@given(raw_notes, st.sampled_from([1, 2, 3, 4, 12]))
def test_quantized_notes_are_canonical_and_quantizing_twice_changes_nothing(notes, spq):
    q, stats = quantize(Piece(tuple(notes), TPQ), spq)
    assert all(n.end > n.start >= 0 for n in q.notes)
    by_pitch: dict[int, list[Note]] = {}
    for n in q.notes:
        by_pitch.setdefault(n.pitch, []).append(n)
    for same in by_pitch.values():
        same.sort()
        assert all(a.end <= b.start for a, b in zip(same, same[1:], strict=False))  # same pitch never overlaps
    assert len(q.notes) == len(notes) - stats.merged
    again, stats2 = quantize(q, spq)
    assert again == q and stats2.moved == stats2.merged == stats2.truncated == 0


def test_top_voice_keeps_the_highest_note_at_each_onset():
    chord_then_runs = [
        Note(0, 8, 48), Note(0, 8, 64), Note(0, 4, 67),  # chord: 67 wins
        Note(4, 6, 60),  # the next onset: only onsets compete, so the held (dropped) 64 does not come back
        Note(8, 10, 72), Note(9, 12, 76),  # a higher note cuts the lower one
    ]
    melody = top_voice(chord_then_runs)
    assert [(n.start, n.end, n.pitch) for n in melody] == [(0, 4, 67), (4, 6, 60), (8, 9, 72), (9, 12, 76)]


@settings(max_examples=150, deadline=None)
@given(raw_notes)
def test_top_voice_is_monophonic_and_made_of_input_pitches(notes):
    q, _ = quantize(Piece(tuple(notes), TPQ), 4)
    melody = top_voice(q.notes)
    assert all(a.end <= b.start for a, b in zip(melody, melody[1:], strict=False))
    assert {n.pitch for n in melody} <= {n.pitch for n in q.notes}
    assert bool(melody) == bool(q.notes)


def test_transpose_and_its_range():
    notes = [Note(0, 1, 60), Note(1, 2, 120)]
    assert [n.pitch for n in transpose(notes, 7)] == [67, 127]
    assert transpose(notes, 8) is None
    assert transpose([Note(0, 1, 3)], -4) is None
    assert transpose(notes, 0) == notes


def test_key_shift_moves_tonic_to_c_major_or_a_minor_by_the_smallest_step():
    assert key_shift(7, "major") == 5  # G -> C up a fourth
    assert key_shift(2, "major") == -2  # D -> C
    assert key_shift(6, "major") == -6  # F# -> C: the tie goes down
    assert key_shift(9, "minor") == 0
    assert key_shift(2, "minor") == -5  # D minor -> A minor
    assert key_shift(4, "minor") == 5  # E minor -> A minor


def test_drop_drums_and_pitch_class_weights():
    notes = [Note(0, 4, 60), Note(0, 2, 36, channel=10), Note(4, 6, 72)]
    kept, dropped = drop_drums(notes)
    assert kept == [notes[0], notes[2]] and dropped == 1
    weights = pitch_class_durations(kept)
    assert weights[0] == 6 and sum(weights) == 6
