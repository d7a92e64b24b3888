"""Everything that touches music21 (the only module in seqlab that imports it).

- :func:`read_midi`: a MIDI file -> :class:`~pipeline.midi.events.Piece` in ticks, with
  music21's low-level reader ``music21.midi.MidiFile`` (a few ms per file) rather than
  ``converter.parse`` (0.1-5 s per file: it builds a whole score).  Anything wrong with
  the bytes becomes one :class:`MidiParseError` naming the file and the problem.
- :func:`write_midi` / :func:`decode_to_midi`: notes or tokens -> a ``.mid`` file,
  written with music21's MIDI writer (one track per source track, a tempo track first).
- :func:`key_shift_to_c`: music21's Krumhansl-Schmuckler key analysis -> the shift that
  moves a piece to C major / A minor.
- :func:`export_music21_corpus`: works from music21's bundled corpus -> real ``.mid`` files
  (the download stage's exporter for ``type: music21`` sources).

Decisions the issue left open: a file whose division is SMPTE frames (rare) is read
as if at 120 quarter notes per minute; a note-on never switched off ends where its
track ends; a note-off ends every sounding note-on of its channel and pitch in its
track (as music21's own reader and synthesizers do: each note-on lasts to the next
matching note-off); tempo changes are ignored (the grid counts quarter notes,
not seconds), and decoded files play at ``qpm`` (120 unless the vocabulary says otherwise).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from music21 import converter, corpus, midi, stream
from music21.common import getCorpusFilePath, opFrac

from pipeline.errors import UserError
from pipeline.files import atomic_path
from pipeline.midi.events import Note, Piece, pitch_class_durations, sort_notes
from pipeline.midi.keys import krumhansl_schmuckler
from pipeline.vocab import Vocabulary

log = logging.getLogger(__name__)

CVM, META = midi.ChannelVoiceMessages, midi.MetaEvents
WRITE_TICKS_PER_QUARTER = 480


class MidiParseError(UserError, ValueError):
    """A file that is not a usable MIDI file; the message names the file and the problem."""


class MidiExportError(UserError):
    """music21 works that could not be exported to MIDI."""


# --------------------------------------------------------------------------- reading


def _check_chunks(data: bytes) -> None:
    """Check the chunk structure music21 trusts blindly: catches non-MIDI and truncated files."""
    if data[:4] != b"MThd":
        raise ValueError(f"not a MIDI file (starts with {data[:8]!r}, expected b'MThd')")
    if len(data) < 14:
        raise ValueError(f"truncated: {len(data)} bytes, shorter than a MIDI header")
    _, _, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if division == 0:
        raise ValueError("header says 0 ticks per quarter note")
    pos, found = 8 + struct.unpack(">I", data[4:8])[0], 0
    while found < ntracks:
        if pos + 8 > len(data):
            raise ValueError(f"truncated: header declares {ntracks} tracks, the file holds {found}")
        length = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + length > len(data):
            raise ValueError(f"truncated: track {found} declares {length} bytes, only {len(data) - pos - 8} remain")
        pos, found = pos + 8 + length, found + 1


def read_midi(path: str | Path) -> Piece:
    """Read every note of a MIDI file (all tracks and channels, drums included) in ticks."""
    path = Path(path)
    try:
        data = path.read_bytes()
        _check_chunks(data)
        mf = midi.MidiFile()
        mf.readstr(data)
    except OSError as e:
        raise MidiParseError(f"{path}: cannot read ({e.strerror or e})") from e
    except Exception as e:  # noqa: BLE001 - untrusted bytes: music21 raises many kinds; each one means "unusable"
        raise MidiParseError(f"{path}: not a readable MIDI file ({str(e) or type(e).__name__})") from e
    resolution = mf.ticksPerQuarterNote if not mf.ticksPerSecond else max(1, mf.ticksPerSecond // 2)
    notes: list[Note] = []
    for index, track in enumerate(mf.tracks):
        notes += _track_notes(track, index)
    return Piece(tuple(sort_notes(notes)), resolution)


def _track_notes(track: midi.MidiTrack, index: int) -> list[Note]:
    notes: list[Note] = []
    pending: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (channel, pitch) -> note-ons (tick, velocity)
    programs: dict[int, int] = {}
    t = 0
    for ev in track.events:
        kind = ev.type
        if kind == "DeltaTime":
            t += ev.time
        elif kind is CVM.NOTE_ON and ev.parameter2:
            pending.setdefault((ev.channel, ev.parameter1), []).append((t, ev.parameter2))
        elif kind is CVM.NOTE_OFF or kind is CVM.NOTE_ON:  # one note-off ends every note-on it follows
            for start, velocity in pending.pop((ev.channel, ev.parameter1), ()):
                notes.append(Note(start, t, ev.parameter1, velocity, ev.channel, programs.get(ev.channel, 0), index))
        elif kind is CVM.PROGRAM_CHANGE:
            programs[ev.channel] = ev.data
    for (channel, pitch), ons in pending.items():  # never switched off: sound to the end of the track
        notes += [Note(start, t, pitch, vel, channel, programs.get(channel, 0), index) for start, vel in ons]
    return notes


# --------------------------------------------------------------------------- writing


def _event(track: midi.MidiTrack, kind: Any, channel: int = 1, **params: Any) -> midi.MidiEvent:
    ev = midi.MidiEvent(track, type=kind, channel=channel)
    for name, value in params.items():
        setattr(ev, name, value)
    return ev


def _track(index: int, timed: Iterable[tuple[int, int, midi.MidiEvent]]) -> midi.MidiTrack:
    """A track from (tick, order, event) triples: delta times between them, END_OF_TRACK last."""
    track = midi.MidiTrack(index)
    now = 0
    for tick, _, ev in sorted(timed, key=lambda x: (x[0], x[1])):
        ev.track = track
        track.events += [midi.DeltaTime(track, time=tick - now), ev]
        now = tick
    track.events += [midi.DeltaTime(track, time=0), _event(track, META.END_OF_TRACK, data=b"")]
    return track


def write_midi(piece: Piece, path: str | Path, qpm: float = 120.0) -> None:
    """Write notes to a type-1 MIDI file: a tempo track, then one track per ``Note.track``."""
    per_step = max(1, WRITE_TICKS_PER_QUARTER // piece.resolution)
    mf = midi.MidiFile()
    mf.ticksPerQuarterNote = piece.resolution * per_step
    tempo = _event(None, META.SET_TEMPO, data=midi.putNumber(round(60_000_000 / qpm), 3))
    mf.tracks.append(_track(0, [(0, 0, tempo)]))
    for index, track_id in enumerate(sorted({n.track for n in piece.notes}), start=1):
        notes = [n for n in piece.notes if n.track == track_id]
        timed = [(0, 0, _event(None, CVM.PROGRAM_CHANGE, ch, data=prog)) for ch, prog in sorted({(n.channel, n.program) for n in notes})]
        for n in notes:  # at one tick: offs (order 1) before ons (order 2), so a re-attack stays a re-attack
            timed.append((n.start * per_step, 2, _event(None, CVM.NOTE_ON, n.channel, pitch=n.pitch, velocity=n.velocity)))
            timed.append((n.end * per_step, 1, _event(None, CVM.NOTE_OFF, n.channel, pitch=n.pitch, velocity=0)))
        mf.tracks.append(_track(index, timed))
    with atomic_path(path, suffix=".mid") as tmp:
        tmp.write_bytes(mf.writestr())


def decode_to_midi(tokens: Sequence[str] | Sequence[int], vocab: Vocabulary, out_path: str | Path,
                   max_note_quarters: float | None = None) -> list[Note]:
    """Token strings or ids -> a playable ``.mid`` file (one piano part), using only ``vocab.json``'s meta.

    Decoding stops at the first ``<eos>``; notes held longer than ``max_note_quarters`` are closed there
    (None: none is); returns the notes written (times in grid steps).
    """
    from pipeline.midi.codec import decode_ids

    decoded = decode_ids(tokens, vocab, max_note_quarters)
    write_decoded(decoded, vocab, out_path)
    return decoded.notes


def write_decoded(decoded: Any, vocab: Vocabulary, out_path: str | Path) -> None:
    """Write a :class:`~pipeline.midi.codec.Decoded` as a ``.mid`` file at the vocabulary's tempo."""
    piece = Piece(tuple(decoded.notes), decoded.steps_per_quarter)
    write_midi(piece, out_path, qpm=float(vocab.meta.get("qpm", 120)))


# --------------------------------------------------------------------------- key analysis


def estimate_key(notes: Sequence[Note], resolution: int) -> tuple[int, str] | None:
    """The key of a piece as (tonic pitch class, "major" | "minor") by music21's Krumhansl-Schmuckler analysis;
    None without notes.

    The analysis weighs pitch classes by duration only: :mod:`pipeline.midi.keys` runs music21's arithmetic on
    the pitch-class durations as the quarter lengths music21's Notes would hold (``opFrac``: a float, or a
    Fraction such as 1/3; a length that rounds to 0 is a quarter, as in ``note.Note``), ~100x faster than
    analysing a Stream, with the same key.
    """
    weights = pitch_class_durations(notes)
    if not any(weights):
        return None
    return krumhansl_schmuckler([(opFrac(ticks / resolution) or 1.0) if ticks else 0 for ticks in weights])


def key_shift_to_c(notes: Sequence[Note], resolution: int) -> int:
    """Semitones in [-6, 5] that take the piece to C major or A minor (music21's key analysis)."""
    from pipeline.midi.events import key_shift

    key = estimate_key(notes, resolution)
    return 0 if key is None else key_shift(*key)


# --------------------------------------------------------------------------- music21 corpus export


def _work_paths(source: Any) -> list[Path]:
    """The works a ``Music21Source`` names, in a deterministic order."""
    exts = tuple(e.lstrip(".") for e in source.file_extensions)
    found: list[Path] = []
    if source.composer:
        works = sorted(corpus.getComposer(source.composer, fileExtensions=exts), key=lambda p: str(p))
        if not works:
            raise MidiExportError(f"music21's corpus has no {'/'.join(exts)} works by composer {source.composer!r}")
        found += works
    for name in source.paths:
        try:
            work = corpus.getWork(name, fileExtensions=exts)
        except Exception as e:  # noqa: BLE001 - music21 raises a bare CorpusException subclass family
            raise MidiExportError(f"music21's corpus has no work {name!r} ({e})") from e
        found += sorted(work) if isinstance(work, list) else [work]
    unique = list(dict.fromkeys(Path(p) for p in found))
    return unique[: source.limit] if source.limit is not None else unique


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def _export_one(job: tuple[str, str]) -> tuple[int, str | None]:
    """Export one corpus file (runs in a worker): (MIDI files written, why something was skipped or None).

    A file holding several works (an ABC opus) gives one ``.mid`` per work: ``name-001.mid``, ...
    """
    src, dest = job
    try:
        parsed = converter.parse(src, forceSource=True)  # forceSource: no pickle cache in the temp folder
    except Exception as e:  # noqa: BLE001 - any failure on one work skips that work only
        return 0, _reason(e)
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    base = Path(dest)
    targets = [base] if len(scores) == 1 else [base.with_name(f"{base.stem}-{i:03d}.mid") for i in range(1, len(scores) + 1)]
    base.parent.mkdir(parents=True, exist_ok=True)
    written, why = 0, None
    for score, target in zip(scores, targets, strict=True):
        try:
            score.write("midi", fp=str(target))
            _check_chunks(target.read_bytes())
            written += 1
        except Exception as e:  # noqa: BLE001 - one work that music21 cannot write is skipped
            target.unlink(missing_ok=True)
            why = why or _reason(e)
    return written, why


def export_music21_corpus(source: Any, dest: Path, workers: int = 0) -> None:
    """Write one ``.mid`` per work of a ``Music21Source`` into ``dest`` (``bach/bwv66.6.mxl`` -> ``bach/bwv66.6.mid``).

    Works music21 cannot export are skipped with a warning; none left is an error.
    """
    from pipeline.midi.pool import pool_map

    root = getCorpusFilePath()
    works = _work_paths(source)
    if not works:
        raise MidiExportError("the music21 source names no works (check composer, paths and limit)")
    names = [(p.relative_to(root) if p.is_relative_to(root) else Path(p.name)).with_suffix(".mid") for p in works]
    jobs = [(str(p), str(Path(dest) / name)) for p, name in zip(works, names, strict=True)]
    results = pool_map(_export_one, jobs, workers)
    for name, (_, why) in zip(names, results, strict=True):
        if why:
            log.warning("music21 work %s skipped: %s", name, why)
    if not sum(n for n, _ in results):
        first = next(why for _, why in results if why)
        raise MidiExportError(f"none of the {len(works)} music21 works could be exported to MIDI ({names[0]}: {first})")
