"""Quantized notes <-> token strings: the ``note`` and ``event`` encodings.

Both take the notes of one quantized piece (times in grid steps, same-pitch notes
disjoint, see :mod:`pipeline.midi.events`) and give token strings; the
:class:`~pipeline.vocab.Vocabulary` turns those into ids.  Everything decoding needs
is in :meth:`Codec.meta`, which the encode stage stores in ``vocab.json`` so that
sampled ids become music again from the vocabulary alone (:func:`codec_from_meta`).

``note`` (music21 LSTM tutorials, deeplearning.ai jazz): the piece is cut at every
onset and offset, and each slice becomes ONE token naming everything that sounds in
it and for how long: ``60_4`` (a note, MIDI pitch 60, 4 steps), ``55.60.64_2`` (a
chord, ascending pitches), ``r_8`` (a rest).  It keeps what sounds when, not the
articulation (nor velocity), so decoding decides: a pitch sounding in consecutive slices
is ONE held note (a bass under a moving melody is not struck at every melody note), but
a slice that repeats the previous one after a boundary only a re-attack explains (the
previous token is not a full ``max_steps`` chunk) is struck again, all of it.
With ``chords="pitch_classes"`` a chord keeps only its pitch classes, ``c0.4.7_4``
(the tutorials' "0.4.7"; decoded in the octave above middle C), which makes the
vocabulary of a four-part corpus about 7x smaller; single notes keep their octave.

``event`` (Magenta's performance encoding): ``on_60`` / ``off_60`` (note-on/off),
``shift_4`` (advance 4 grid steps) and, with ``velocity_bins > 0``, ``vel_3`` (the
velocity bin for the note-ons that follow; emitted only when it changes).  Lossless at
the grid: ``decode(encode(notes)) == canonical(notes)``.  At one time step the offs
come first, then the ons, each in ascending pitch.

Durations and shifts longer than ``max_steps`` take several tokens (largest first), so
the vocabulary stays finite.  A token sequence is *valid* when it is what ``encode``
writes for some piece; for every valid sequence ``encode(decode(tokens)) == tokens``.
Decoding is lenient with other sequences (sampled music): ``<pad>``/``<unk>`` are
skipped, decoding stops at the first ``<eos>``, an ``off`` for a silent pitch is
ignored, an ``on`` for a sounding pitch re-attacks it, notes still on at the end last
to the end (at least one step).  :func:`decode_capped` closes (and counts) every note
held longer than a limit: sampled music can hold one for ever.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol

from pipeline.errors import UserError
from pipeline.midi.events import DEFAULT_VELOCITY, Note, cap_lengths, sort_notes
from pipeline.vocab import EOS, SPECIALS, Vocabulary

REST = "r"
PC_CHORD = "c"  # prefix of a pitch-class chord token: c0.4.7_4
PC_OCTAVE = 60  # decoded pitch-class chords sound at C4..B4
CHORD_MODES = ("pitches", "pitch_classes")


class CodecError(UserError, ValueError):
    """A token that does not belong to the encoding, or encoding settings that cannot work."""


class Codec(Protocol):
    name: ClassVar[str]
    steps_per_quarter: int
    max_steps: int

    def encode(self, notes: Sequence[Note]) -> list[str]: ...

    def decode(self, tokens: Iterable[str]) -> list[Note]: ...

    def meta(self) -> dict[str, Any]: ...


def _split(steps: int, max_steps: int) -> list[int]:
    """``steps`` as chunks of at most ``max_steps``, largest first: 37, 16 -> [16, 16, 5]."""
    full, rest = divmod(steps, max_steps)
    return [max_steps] * full + ([rest] if rest else [])


def _body(tokens: Iterable[str]) -> Iterable[str]:
    """The tokens of one piece: specials skipped, stopping at the first ``<eos>``."""
    for tok in tokens:
        if tok == EOS:
            return
        if tok not in SPECIALS:
            yield tok


def _int(text: str, tok: str, low: int, high: int) -> int:
    """The number ``text`` inside token ``tok``, checked to lie in ``low..high``."""
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise CodecError(f"token {tok!r}: {text!r} is not a number in {low}..{high}")
    return int(text)


@dataclasses.dataclass(frozen=True)
class _Base:
    steps_per_quarter: int = 4
    max_steps: int = 16

    def __post_init__(self) -> None:
        if self.steps_per_quarter < 1 or self.max_steps < 1:
            raise CodecError(f"steps_per_quarter and max_steps must be >= 1, got {self.steps_per_quarter}, {self.max_steps}")

    def meta(self) -> dict[str, Any]:
        return {"kind": "midi", "encoding": self.name, **dataclasses.asdict(self)}  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class NoteCodec(_Base):
    """One token per slice of constant sound: a note, a chord or a rest, with its length in steps."""

    name: ClassVar[str] = "note"
    chords: str = "pitches"  # or "pitch_classes": chords as pitch-class sets (the tutorials' "0.4.7")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chords not in CHORD_MODES:
            raise CodecError(f"chords {self.chords!r} is not valid (choose one of: {', '.join(CHORD_MODES)})")

    def encode(self, notes: Sequence[Note]) -> list[str]:
        starts: dict[int, list[int]] = defaultdict(list)
        ends: dict[int, list[int]] = defaultdict(list)
        for n in notes:
            starts[n.start].append(n.pitch)
            ends[n.end].append(n.pitch)
        times = sorted(starts.keys() | ends.keys())
        tokens: list[str] = []
        silence = times[0] if times else 0  # steps of rest not yet written (one run -> canonical split)
        sounding: dict[int, int] = defaultdict(int)  # pitch -> notes sounding (1 for canonical input)
        for a, b in zip(times, times[1:], strict=False):
            for p in ends.get(a, ()):
                sounding[p] -= 1
                if sounding[p] <= 0:
                    del sounding[p]
            for p in starts.get(a, ()):
                sounding[p] += 1
            pitches = tuple(sorted(p for p, c in sounding.items() if c > 0))
            if not pitches:
                silence += b - a
                continue
            if silence:
                tokens += self._tokens((), silence)
                silence = 0
            tokens += self._tokens(pitches, b - a)
        return tokens

    def _tokens(self, pitches: tuple[int, ...], steps: int) -> list[str]:
        if not pitches:
            head = REST
        elif self.chords == "pitches" or len(pitches) == 1:
            head = ".".join(map(str, pitches))
        else:
            classes = sorted({p % 12 for p in pitches})
            # octave doublings of one pitch class are a note, not a chord: keep the lowest
            head = str(pitches[0]) if len(classes) == 1 else PC_CHORD + ".".join(map(str, classes))
        return [f"{head}_{d}" for d in _split(steps, self.max_steps)]

    def pitches_of(self, tok: str) -> tuple[frozenset[int], int]:
        """The pitches a token sounds and its length in steps: ``"c0.4.7_4"`` -> ({60, 64, 67}, 4)."""
        head, _, dur = tok.rpartition("_")
        steps = _int(dur, tok, 1, 1 << 30)
        if head.startswith(PC_CHORD):  # pitch classes sound in the octave above middle C
            return frozenset(PC_OCTAVE + _int(p, tok, 0, 11) for p in head[len(PC_CHORD) :].split(".")), steps
        if head != REST:
            return frozenset(_int(p, tok, 0, 127) for p in head.split(".")), steps
        return frozenset(), steps

    def decode(self, tokens: Iterable[str]) -> list[Note]:
        notes: list[Note] = []
        sounding: dict[int, int] = {}  # pitch -> onset of the note still held
        t, previous, previous_steps = 0, frozenset(), self.max_steps
        for tok in _body(tokens):
            pitches, steps = self.pitches_of(tok)
            restrike = pitches == previous and previous_steps < self.max_steps
            notes += [Note(sounding.pop(p), t, p) for p in [p for p in sounding if restrike or p not in pitches]]
            for p in pitches:
                sounding.setdefault(p, t)
            t, previous, previous_steps = t + steps, pitches, steps
        notes += [Note(start, t, p) for p, start in sounding.items()]
        return sort_notes(notes)


@dataclasses.dataclass(frozen=True)
class EventCodec(_Base):
    """note-on / note-off / time-shift (/ velocity) events, lossless at the grid."""

    name: ClassVar[str] = "event"
    velocity_bins: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.velocity_bins <= 127:
            raise CodecError(f"velocity_bins must be in 0..127, got {self.velocity_bins}")

    def velocity_bin(self, velocity: int) -> int:
        return 1 + (min(max(velocity, 1), 127) - 1) * self.velocity_bins // 127

    def bin_velocity(self, b: int) -> int:
        """The smallest velocity in bin ``b`` (so that ``velocity_bin(bin_velocity(b)) == b``)."""
        return -(-(b - 1) * 127 // self.velocity_bins) + 1

    def canonical(self, notes: Iterable[Note]) -> list[Note]:
        """What this encoding keeps of quantized notes: times, pitch, binned velocity (or the default)."""
        vel = (lambda v: self.bin_velocity(self.velocity_bin(v))) if self.velocity_bins else (lambda v: DEFAULT_VELOCITY)
        return sort_notes(Note(n.start, n.end, n.pitch, vel(n.velocity)) for n in notes)

    def encode(self, notes: Sequence[Note]) -> list[str]:
        # (time, 0 = off before 1 = on, pitch, velocity bin)
        events = [(n.end, 0, n.pitch, 0) for n in notes]
        events += [(n.start, 1, n.pitch, self.velocity_bin(n.velocity) if self.velocity_bins else 0) for n in notes]
        events.sort()
        tokens: list[str] = []
        t, current_bin = 0, 0
        for time, is_on, pitch, vbin in events:
            if time > t:
                tokens += [f"shift_{d}" for d in _split(time - t, self.max_steps)]
                t = time
            if is_on and vbin != current_bin:
                tokens.append(f"vel_{vbin}")
                current_bin = vbin
            tokens.append(f"on_{pitch}" if is_on else f"off_{pitch}")
        return tokens

    def decode(self, tokens: Iterable[str]) -> list[Note]:
        notes: list[Note] = []
        active: dict[int, tuple[int, int]] = {}  # pitch -> (start, velocity)
        t, velocity = 0, DEFAULT_VELOCITY
        for tok in _body(tokens):
            kind, _, value = tok.partition("_")
            if kind == "shift":
                t += _int(value, tok, 1, 1 << 30)
            elif kind == "vel" and self.velocity_bins:
                velocity = self.bin_velocity(_int(value, tok, 1, self.velocity_bins))
            elif kind in ("on", "off"):
                pitch = _int(value, tok, 0, 127)
                if pitch in active:
                    start, vel = active.pop(pitch)
                    if t > start:
                        notes.append(Note(start, t, pitch, vel))
                if kind == "on":
                    active[pitch] = (t, velocity)
            else:
                raise CodecError(f"token {tok!r} is not an {self.name} token (on_P, off_P, shift_N, vel_B)")
        notes += [Note(start, max(t, start + 1), p, vel) for p, (start, vel) in active.items()]
        return sort_notes(notes)


CODECS: dict[str, type[NoteCodec] | type[EventCodec]] = {"note": NoteCodec, "event": EventCodec}


@dataclasses.dataclass(frozen=True)
class Decoded:
    """Notes decoded from tokens, times in grid steps."""

    notes: list[Note]
    closed: int  # notes cut at the limit
    steps_per_quarter: int


def decode_capped(codec: Codec, tokens: Iterable[str], max_note_quarters: float | None) -> Decoded:
    """Decode, then close every note held longer than ``max_note_quarters`` (None: keep every length)."""
    notes, closed = codec.decode(tokens), 0
    if max_note_quarters is not None:
        notes, closed = cap_lengths(notes, max(1, round(max_note_quarters * codec.steps_per_quarter)))
    return Decoded(notes, closed, codec.steps_per_quarter)


def decode_ids(tokens: Sequence[str | int], vocab: Vocabulary, max_note_quarters: float | None = None) -> Decoded:
    """Token strings and/or ids of ``vocab`` (a MIDI vocabulary: its meta names the codec) -> :class:`Decoded`."""
    strings = [t if isinstance(t, str) else vocab.tokens[int(t)] for t in tokens]
    return decode_capped(codec_from_meta(vocab.meta), strings, max_note_quarters)


def make_codec(
    encoding: str,
    steps_per_quarter: int = 4,
    max_steps: int | None = None,
    velocity_bins: int = 0,
    chords: str = "pitches",
) -> Codec:
    """Build a codec by name; ``max_steps`` defaults to one 4/4 bar (``4 * steps_per_quarter``)."""
    if encoding not in CODECS:
        raise CodecError(f"unknown MIDI encoding {encoding!r} (choose one of: {', '.join(CODECS)})")
    max_steps = max_steps or 4 * steps_per_quarter
    if encoding == "event":
        return EventCodec(steps_per_quarter, max_steps, velocity_bins)
    return NoteCodec(steps_per_quarter, max_steps, chords)


def codec_from_meta(meta: dict[str, Any]) -> Codec:
    """The codec a vocabulary's ``meta`` describes (what the encode stage stored in vocab.json)."""
    if meta.get("kind") != "midi":
        raise CodecError(f"vocabulary is not a MIDI vocabulary (meta kind {meta.get('kind')!r}); use one from encode_midi")
    try:
        return make_codec(
            meta["encoding"],
            meta["steps_per_quarter"],
            meta["max_steps"],
            meta.get("velocity_bins", 0),
            meta.get("chords", "pitches"),
        )
    except KeyError as e:
        raise CodecError(f"MIDI vocabulary meta lacks {e}; rerun the encode_midi stage") from e
