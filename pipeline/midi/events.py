"""Notes as plain records, and what happens to them between reading a MIDI file and encoding it.

Pure Python (no music21): a :class:`Note` has integer times in some unit, and the
:class:`Piece` that holds notes says how many units make a quarter note
(``resolution``: the file's ticks per quarter when read, ``steps_per_quarter``
once quantized).  Working in integers keeps quantization exact and comparable.

What the grid does to notes (:func:`quantize`), all counted in :class:`QuantizeStats`:

- onsets and offsets are rounded to the nearest grid step (half a step rounds up);
  a note whose onset or offset changed is *moved*; a note that rounds to zero length
  keeps one step;
- two notes of the same pitch that overlap on the grid cannot both be played on one
  keyboard (nor told apart by the encodings), so: the same onset, or a note inside
  another, is *merged* into it (longest end, loudest velocity); a later note that
  outlasts an earlier one cuts the earlier one at its onset (*truncated*: a re-attack).

Instrument, channel and track are kept on each note but the encodings drop them:
decoded music is one piano part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import NamedTuple

DRUM_CHANNEL = 10  # General MIDI percussion channel (1-based, as music21 reports it)
DEFAULT_VELOCITY = 80


class Note(NamedTuple):
    """One note; ``start``/``end`` are in the owning :class:`Piece`'s units (end > start once quantized)."""

    start: int
    end: int
    pitch: int
    velocity: int = DEFAULT_VELOCITY
    channel: int = 1  # 1-16; 10 is drums
    program: int = 0  # General MIDI program (instrument), 0 = piano
    track: int = 0


@dataclasses.dataclass(frozen=True)
class Piece:
    """Notes sorted by (start, pitch, end) and the number of time units per quarter note."""

    notes: tuple[Note, ...]
    resolution: int

    @property
    def quarters(self) -> float:
        """Length in quarter notes (to the last note's end)."""
        return max((n.end for n in self.notes), default=0) / self.resolution


@dataclasses.dataclass
class QuantizeStats:
    """What the grid did: notes in, notes moved off their exact time, merged away, truncated."""

    notes: int = 0
    moved: int = 0
    merged: int = 0
    truncated: int = 0

    def add(self, other: QuantizeStats) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def sort_notes(notes: Iterable[Note]) -> list[Note]:
    return sorted(notes, key=lambda n: (n.start, n.pitch, n.end))


def _round_div(num: int, den: int) -> int:
    """Round ``num / den`` to the nearest integer, halves up, in exact integer arithmetic."""
    return (2 * num + den) // (2 * den)


def quantize(piece: Piece, steps_per_quarter: int) -> tuple[Piece, QuantizeStats]:
    """Snap every note to a grid of ``steps_per_quarter`` steps per quarter note (see module docstring)."""
    res, spq = piece.resolution, steps_per_quarter
    stats = QuantizeStats(notes=len(piece.notes))
    snapped = []
    for n in piece.notes:
        start, end = _round_div(n.start * spq, res), _round_div(n.end * spq, res)
        end = max(end, start + 1)
        if start * res != n.start * spq or end * res != n.end * spq:
            stats.moved += 1
        snapped.append(n._replace(start=start, end=end))
    return Piece(tuple(resolve_overlaps(snapped, stats)), spq), stats


def resolve_overlaps(notes: Iterable[Note], stats: QuantizeStats | None = None) -> list[Note]:
    """Make same-pitch notes disjoint: merge notes starting together or contained, cut the earlier otherwise."""
    stats = stats if stats is not None else QuantizeStats()
    last: dict[int, Note] = {}  # pitch -> the latest kept note of that pitch
    done: list[Note] = []
    for n in sorted(notes, key=lambda n: (n.pitch, n.start, -n.end)):
        prev = last.get(n.pitch)
        if prev is None or n.start >= prev.end:
            if prev is not None:
                done.append(prev)
            last[n.pitch] = n
        elif n.start == prev.start or n.end <= prev.end:
            last[n.pitch] = prev._replace(end=max(prev.end, n.end), velocity=max(prev.velocity, n.velocity))
            stats.merged += 1
        else:
            done.append(prev._replace(end=n.start))
            last[n.pitch] = n
            stats.truncated += 1
    done.extend(last.values())
    return sort_notes(done)


def drop_drums(notes: Sequence[Note]) -> tuple[list[Note], int]:
    """Remove notes on the General MIDI drum channel; return (kept, number dropped)."""
    kept = [n for n in notes if n.channel != DRUM_CHANNEL]
    return kept, len(notes) - len(kept)


def top_voice(notes: Iterable[Note]) -> list[Note]:
    """Monophonic melody by the skyline rule: at each onset the highest pitch wins.

    A higher note starting while a lower one sounds cuts the lower one; a lower note
    starting under a sounding higher one is dropped.  The result never overlaps.
    """
    melody: list[Note] = []
    for n in sorted(notes, key=lambda n: (n.start, -n.pitch)):
        if not melody or n.start >= melody[-1].end:
            melody.append(n)
        elif n.start > melody[-1].start and n.pitch > melody[-1].pitch:
            melody[-1] = melody[-1]._replace(end=n.start)
            melody.append(n)
    return melody


def transpose(notes: Sequence[Note], semitones: int) -> list[Note] | None:
    """Shift every pitch; ``None`` when a pitch would leave MIDI's 0-127 range."""
    if not semitones:
        return list(notes)
    pitches = [n.pitch + semitones for n in notes]
    if pitches and (min(pitches) < 0 or max(pitches) > 127):
        return None
    return [n._replace(pitch=n.pitch + semitones) for n in notes]


def key_shift(tonic_pitch_class: int, mode: str) -> int:
    """Semitones in [-6, 5] that move a key's tonic to C (major) or A (minor), the smallest move."""
    target = 9 if mode == "minor" else 0
    return (target - tonic_pitch_class + 6) % 12 - 6


def pitch_class_durations(notes: Iterable[Note]) -> list[int]:
    """Total duration (in the notes' units) per pitch class: what key-finding algorithms weigh."""
    weights = [0] * 12
    for n in notes:
        weights[n.pitch % 12] += n.end - n.start
    return weights


def cap_lengths(notes: Iterable[Note], max_length: int) -> tuple[list[Note], int]:
    """Close every note longer than ``max_length`` units at ``start + max_length``; return the notes and how many.

    Sampled music can hold a note for ever (a note-on never switched off); a keyboard player lets go.
    """
    capped, closed = [], 0
    for n in notes:
        if n.end - n.start > max_length:
            n, closed = n._replace(end=n.start + max_length), closed + 1
        capped.append(n)
    return capped, closed
