"""Hypothesis strategies shared by the MIDI property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from pipeline.midi.events import Note


def raw_notes(max_start: int, max_length: int, max_size: int) -> st.SearchStrategy[list[Note]]:
    """Lists of notes at any start, length (zero allowed), pitch and velocity: what a MIDI file may hold."""
    return st.lists(
        st.builds(lambda start, length, pitch, vel: Note(start, start + length, pitch, vel),
                  st.integers(0, max_start), st.integers(0, max_length), st.integers(0, 127), st.integers(1, 127)),
        max_size=max_size,
    )
