"""MIDI files made inside the tests: with music21's score writer, or as raw bytes for broken files."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from music21 import chord, instrument, note, stream


def vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def raw_midi(tracks: Sequence[bytes], ticks_per_quarter: int = 480, declared_tracks: int | None = None) -> bytes:
    """A type-1 MIDI file from raw track bodies (each body: delta-time + event bytes, END_OF_TRACK added)."""
    n = len(tracks) if declared_tracks is None else declared_tracks
    out = b"MThd" + struct.pack(">IHHH", 6, 1, n, ticks_per_quarter)
    for body in tracks:
        body = body + b"\x00\xff\x2f\x00"
        out += b"MTrk" + struct.pack(">I", len(body)) + body
    return out


def note_bytes(pitch: int, start_delta: int, length: int, channel: int = 0, velocity: int = 90) -> bytes:
    """A note-on after ``start_delta`` ticks and its note-off ``length`` ticks later (0-based channel)."""
    return vlq(start_delta) + bytes([0x90 | channel, pitch, velocity]) + vlq(length) + bytes([0x80 | channel, pitch, 0])


def melody(pitches: Sequence[int | str], quarter_lengths: Sequence[float] | float = 1.0) -> stream.Part:
    part = stream.Part()
    part.insert(0, instrument.Piano())
    lengths = [quarter_lengths] * len(pitches) if isinstance(quarter_lengths, (int, float)) else quarter_lengths
    for p, ql in zip(pitches, lengths, strict=True):
        part.append(note.Rest(quarterLength=ql) if p == "r" else note.Note(p, quarterLength=ql))
    return part


def write_score(path: Path, *parts: stream.Part) -> Path:
    score = stream.Score()
    for part in parts:
        score.insert(0, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.write("midi", fp=str(path))
    return path


def drum_part(hits: int = 8, ql: float = 0.5) -> stream.Part:
    """A hi-hat part; music21 writes unpitched percussion on channel 10."""
    part = stream.Part()
    part.insert(0, instrument.HiHatCymbal())
    for _ in range(hits):
        n = note.Unpitched(displayName="F#2")
        n.quarterLength = ql
        part.append(n)
    return part


def jazz_combo(path: Path, bars: int = 4) -> Path:
    """Walking bass, piano comping (chords with rests) and a hi-hat on channel 10."""
    bass, piano = stream.Part(), stream.Part()
    bass.insert(0, instrument.AcousticBass())
    piano.insert(0, instrument.Piano())
    for _ in range(bars):
        for p in ("C2", "E2", "G2", "A2"):
            bass.append(note.Note(p, quarterLength=1))
        piano.append(chord.Chord(["C4", "E4", "G4", "B-4"], quarterLength=1.5))
        piano.append(note.Rest(quarterLength=0.5))
        piano.append(chord.Chord(["F4", "A4", "C5", "E-5"], quarterLength=2))
    return write_score(path, bass, piano, drum_part(8 * bars))


SCALE_G_MAJOR = ["G4", "A4", "B4", "C5", "D5", "E5", "F#5", "G5", "D5", "B4", "G4"]


def small_corpus(folder: Path, n: int = 6) -> list[Path]:
    """``n`` short two-part pieces that differ from one another (pitches shift with the index)."""
    files = []
    for i in range(n):
        top = melody([60 + i, 62 + i, 64 + i, 65 + i, "r", 67 + i, 65 + i, 64 + i], [1, 1, 0.5, 0.5, 1, 1, 1, 2])
        low = melody([48 + i, 43 + i, 48 + i], [3, 3, 2])
        files.append(write_score(folder / f"piece{i:02d}.mid", top, low))
    return files
