"""Steering music while it is sampled: a :class:`~pipeline.models.sampling.Guide` that reads tokens as music.

Used by the RNN sampler and the n-gram baseline's alike (numpy only).

:class:`MusicGuide` follows every row through its codec (what sounds, and the time in grid steps) and

- with ``forbid_sounding_note_on``, bans a note-on for a pitch already sounding: in the ``event`` encoding
  ``on_P`` while P is on (and younger than the note-length cap, past which decoding closes it anyway); in the
  ``note`` encoding, where a pitch in consecutive slices is one held note, the only way to strike a sounding
  pitch again is to repeat the previous slice after a boundary that is not a chunk split, so that is banned;
- with ``max_quarters``, makes a row's generated part (the prime not counted) last that many quarter notes:
  ``<eos>`` is banned before and the row ends once it gets there; the last token may overshoot,
  :func:`clip_notes` cuts the decoded notes at the bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.midi.codec import Codec, EventCodec, NoteCodec, codec_from_meta
from pipeline.midi.events import Note
from pipeline.vocab import EOS_ID, SPECIALS, Vocabulary


class MusicGuide:
    """Per-row musical state of ``n`` rows sampled over a MIDI ``vocab`` (see the module docstring)."""

    def __init__(self, vocab: Vocabulary, n: int, *, forbid_sounding_note_on: bool = False,
                 max_quarters: float | None = None, max_note_quarters: float | None = None) -> None:
        self.codec: Codec = codec_from_meta(vocab.meta)
        spq = self.codec.steps_per_quarter
        self.forbid = forbid_sounding_note_on
        self.limit = None if max_quarters is None else max(1, round(max_quarters * spq))
        self.note_cap = None if max_note_quarters is None else max(1, round(max_note_quarters * spq))
        self.vocab_size = len(vocab)
        self._read_vocabulary(vocab.tokens)
        self.time = [0] * n  # steps generated so far per row (the prime not counted)
        self.clock = [0] * n  # steps so far per row, the prime included
        self.sounding: list[dict[int, int]] = [{} for _ in range(n)]  # event: pitch -> onset step
        self.previous: list[tuple[frozenset[int], int] | None] = [None] * n  # note: last slice and its length

    def _read_vocabulary(self, tokens: Iterable[str]) -> None:
        self.advance: list[int] = []
        self.on: list[int | None] = []  # event: the pitch an id switches on / off
        self.off: list[int | None] = []
        self.slice: list[tuple[frozenset[int], int] | None] = []  # note: the pitches and steps of an id
        self.on_id: dict[int, int] = {}
        self.ids_of_slice: dict[frozenset[int], list[int]] = {}
        for i, tok in enumerate(tokens):
            advance, on, off, piece = 0, None, None, None
            if tok not in SPECIALS and isinstance(self.codec, EventCodec):
                kind, _, value = tok.partition("_")
                if kind == "shift":
                    advance = int(value)
                elif kind in ("on", "off"):
                    on, off = (int(value), None) if kind == "on" else (None, int(value))
                    if on is not None:
                        self.on_id[on] = i
            elif tok not in SPECIALS and isinstance(self.codec, NoteCodec):
                piece = self.codec.pitches_of(tok)
                advance = piece[1]
                self.ids_of_slice.setdefault(piece[0], []).append(i)
            self.advance.append(advance)
            self.on.append(on)
            self.off.append(off)
            self.slice.append(piece)

    def update(self, tokens: Sequence[int], generated: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        steer = self.forbid or self.limit is not None
        banned = np.zeros((len(self.time), self.vocab_size), dtype=bool) if steer else None
        for row, token in enumerate(tokens):
            self._follow(row, int(token), generated)
            if self.forbid:
                banned[row, self._banned(row)] = True
            if self.limit is not None and self.time[row] < self.limit:
                banned[row, EOS_ID] = True  # a bounded continuation lasts its length: no end before
        done = None if self.limit is None else np.array([t >= self.limit for t in self.time])
        return banned, done

    def _follow(self, row: int, token: int, generated: bool) -> None:
        self.clock[row] += self.advance[token]
        if generated:
            self.time[row] += self.advance[token]
        now, sounding = self.clock[row], self.sounding[row]
        if self.on[token] is not None:
            sounding[self.on[token]] = now
        elif self.off[token] is not None:
            sounding.pop(self.off[token], None)
        elif self.advance[token] and self.note_cap is not None:  # past the cap decoding closes the note
            for pitch in [p for p, onset in sounding.items() if now - onset >= self.note_cap]:
                del sounding[pitch]
        if self.slice[token] is not None:
            self.previous[row] = self.slice[token]

    def _banned(self, row: int) -> list[int]:
        if isinstance(self.codec, EventCodec):
            return [self.on_id[p] for p in self.sounding[row] if p in self.on_id]
        previous = self.previous[row]
        if previous is None or not previous[0] or previous[1] >= self.codec.max_steps:
            return []
        return self.ids_of_slice.get(previous[0], [])


def guide_for(vocab: Vocabulary, n: int, forbid_sounding_note_on: bool, max_note_quarters: float | None,
              max_quarters: float | None = None) -> MusicGuide | None:
    """The guide these sampling options need for ``n`` rows, or None (text, or nothing to steer)."""
    if vocab.meta.get("kind") != "midi" or not (forbid_sounding_note_on or max_quarters is not None):
        return None
    return MusicGuide(vocab, n, forbid_sounding_note_on=forbid_sounding_note_on, max_quarters=max_quarters,
                      max_note_quarters=max_note_quarters)


def clip_notes(notes: Iterable[Note], end: int) -> list[Note]:
    """The notes up to step ``end``: later ones dropped, the ones sounding at ``end`` cut there."""
    return [n._replace(end=min(n.end, end)) for n in notes if n.start < end]
