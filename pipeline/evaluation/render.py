"""Sampled ids -> files a person can read or hear: text for text datasets, MIDI plus a piano roll for music.

:func:`sample_renderer` picks the rendering from the vocabulary's ``meta`` (written by the tokenize or
encode_midi stage), so the training loop, which only sees ids, can log samples of any dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline import io
from pipeline.tokenization import detokenize
from pipeline.vocab import EOS_ID, Vocabulary

Renderer = Callable[[list[list[int]], Path], list[Path]]


def is_music(vocab: Vocabulary) -> bool:
    return vocab.meta.get("kind") == "midi"


def render_text(vocab: Vocabulary, sequences: list[list[int]], folder: Path, stem: str = "samples") -> list[Path]:
    """All samples in one UTF-8 text file, a blank line between them."""
    texts = [detokenize(list(seq) + [EOS_ID], vocab).rstrip("\n") for seq in sequences]
    path = folder / f"{stem}.txt"
    io.write_text(path, "\n\n".join(texts) + "\n")
    return [path]


def render_music(vocab: Vocabulary, sequences: list[list[int]], folder: Path, stem: str = "sample") -> list[Path]:
    """One ``.mid`` file and one piano-roll ``.png`` per sample."""
    from pipeline.midi.io import decode_to_midi
    from pipeline.midi.pianoroll import render_piano_roll

    paths: list[Path] = []
    for i, seq in enumerate(sequences):
        midi_path = folder / f"{stem}_{i:02d}.mid"
        decode_to_midi(list(seq), vocab, midi_path)
        paths.append(midi_path)
        paths.append(render_piano_roll(midi_path, None, folder / f"{stem}_{i:02d}.png", title=midi_path.name))
    return paths


def sample_renderer(vocab: Vocabulary) -> Renderer:
    """A function ``(sequences, folder) -> files`` for this vocabulary's kind of data."""
    if is_music(vocab):
        return lambda sequences, folder: render_music(vocab, sequences, folder)
    return lambda sequences, folder: render_text(vocab, sequences, folder)
