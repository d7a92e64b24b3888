"""MIDI <-> tokens for seqlab's music models.

Modules: ``events`` (pure note records: quantization, top voice, transposition),
``codec`` (the ``note`` and ``event`` encodings), ``io`` (the only module that imports
music21: fast reading, writing, key analysis, corpus export), ``pool`` (worker-count
independent process pool), ``corpus`` (a folder of MIDI files -> token dataset, used by
the ``encode_midi`` stage), ``roundtrip`` (``seqlab midi roundtrip``) and ``pianoroll``
(the only module of pipeline.midi that imports matplotlib).

The two functions sampling and evaluation call on generated music are re-exported here
and imported lazily, so ``import pipeline.midi`` loads neither music21 nor matplotlib:

- ``decode_to_midi(token_strings_or_ids, vocab, out_path) -> list[Note]``
- ``render_piano_roll(tokens_or_midi_path, vocab_or_None, out_png) -> Path``
"""

from __future__ import annotations

from typing import Any

__all__ = ["decode_to_midi", "render_piano_roll"]


def __getattr__(name: str) -> Any:
    if name == "decode_to_midi":
        from pipeline.midi.io import decode_to_midi

        return decode_to_midi
    if name == "render_piano_roll":
        from pipeline.midi.pianoroll import render_piano_roll

        return render_piano_roll
    raise AttributeError(f"module 'pipeline.midi' has no attribute {name!r}")
