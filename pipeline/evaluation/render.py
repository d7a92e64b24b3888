"""Sampled ids -> files a person can read or hear: text for text datasets, MIDI plus a piano roll for music.

:func:`sample_renderer` picks the rendering from the vocabulary's ``meta`` (written by the tokenize or
encode_midi stage), so the evaluate and baseline stages render samples of any dataset (training logs sampled
text only: :func:`pipeline.tokenization.samples_text`).  Sampled music can hold a note for ever (an ``on``
never switched off): decoding closes every note held longer than ``max_note_quarters`` (``SampleConfig``;
4 quarter notes unless the caller says otherwise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.tokenization import samples_text
from pipeline.vocab import Vocabulary

Renderer = Callable[[list[list[int]], Path], list[Path]]
MAX_NOTE_QUARTERS = 4.0  # sampled music: no note held longer unless the caller says otherwise (SampleConfig's default)


def is_music(vocab: Vocabulary) -> bool:
    return vocab.meta.get("kind") == "midi"


def render_text(vocab: Vocabulary, sequences: list[list[int]], folder: Path, stem: str = "samples") -> list[Path]:
    """All samples in one UTF-8 text file, a blank line between them."""
    path = folder / f"{stem}.txt"
    files.write_text(path, samples_text(vocab, sequences))
    return [path]


@dataclasses.dataclass
class MusicFiles:
    """What :func:`write_music` wrote, and the notes in each file (``Decoded``: notes, notes closed at the cap)."""

    files: list[Path]
    decoded: list[Any]


def write_music(vocab: Vocabulary, sequences: list[list[int]], folder: Path, stem: str = "sample",
                max_note_quarters: float | None = MAX_NOTE_QUARTERS) -> MusicFiles:
    """One ``.mid`` file and one piano-roll ``.png`` per sample; notes held longer than ``max_note_quarters`` closed."""
    from pipeline.midi.codec import decode_ids
    from pipeline.midi.io import write_decoded
    from pipeline.midi.pianoroll import render_piano_roll

    out = MusicFiles([], [])
    for i, seq in enumerate(sequences):
        midi_path = folder / f"{stem}_{i:02d}.mid"
        decoded = decode_ids(list(seq), vocab, max_note_quarters)
        write_decoded(decoded, vocab, midi_path)
        out.decoded.append(decoded)
        out.files += [midi_path, render_piano_roll(midi_path, None, folder / f"{stem}_{i:02d}.png", title=midi_path.name)]
    return out


def render_music(vocab: Vocabulary, sequences: list[list[int]], folder: Path, stem: str = "sample",
                 max_note_quarters: float | None = MAX_NOTE_QUARTERS) -> list[Path]:
    """One ``.mid`` file and one piano-roll ``.png`` per sample."""
    return write_music(vocab, sequences, folder, stem, max_note_quarters).files


def sample_renderer(vocab: Vocabulary, max_note_quarters: float | None = MAX_NOTE_QUARTERS) -> Renderer:
    """A function ``(sequences, folder) -> files`` for this vocabulary's kind of data."""
    if is_music(vocab):
        return lambda sequences, folder: render_music(vocab, sequences, folder, max_note_quarters=max_note_quarters)
    return lambda sequences, folder: render_text(vocab, sequences, folder)
