"""Encode one MIDI file and decode it again, so a user can hear what an encoding keeps (``seqlab midi roundtrip``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config import EncodeMidiConfig
from pipeline.midi.corpus import MidiCorpusError, Skipped, codec_for, prepare_piece
from pipeline.midi.events import Piece


@dataclasses.dataclass(frozen=True)
class RoundTrip:
    """Note counts along the way: read, drums dropped, on the grid (after voice/key), tokens, written, read back."""

    notes_in: int
    drums_dropped: int
    moved: int
    merged: int
    truncated: int
    notes_encoded: int
    tokens: int
    distinct_tokens: int
    notes_out: int
    notes_read_back: int
    exact: bool  # decoded notes == the encoded ones (always true for the event encoding)

    def lines(self, in_path: str, out_path: str, cfg: EncodeMidiConfig) -> list[str]:
        return [
            f"{in_path}: {self.notes_in} notes read ({self.drums_dropped} drum notes dropped)",
            f"grid of {cfg.steps_per_quarter} steps per quarter: {self.moved} moved, {self.merged} merged, "
            f"{self.truncated} truncated; voices {cfg.voices}: {self.notes_encoded} notes encoded",
            f"encoding {cfg.encoding}: {self.tokens} tokens ({self.distinct_tokens} distinct)",
            f"{out_path}: {self.notes_out} notes written, {self.notes_read_back} read back; "
            + ("identical to the encoded notes" if self.exact else "differs from the encoded notes (the encoding is lossy)"),
        ]


def roundtrip_file(in_path: str | Path, out_path: str | Path, cfg: EncodeMidiConfig) -> RoundTrip:
    """Read ``in_path`` as the encode_midi stage would (``cfg``), encode, decode, write ``out_path`` and read it back."""
    from pipeline.midi.io import read_midi, write_midi

    prepared = prepare_piece((str(in_path), str(in_path), cfg))
    if isinstance(prepared, Skipped):
        raise MidiCorpusError(f"{in_path}: cannot be encoded: {prepared.reason}")
    codec = codec_for(cfg)
    tokens = codec.encode(prepared.notes)
    decoded = codec.decode(tokens)
    write_midi(Piece(tuple(decoded), codec.steps_per_quarter), out_path)
    back = read_midi(out_path)
    encoded_keys = sorted(n[:3] for n in prepared.notes)
    return RoundTrip(
        notes_in=prepared.quantize.notes + prepared.drums_dropped,
        drums_dropped=prepared.drums_dropped,
        moved=prepared.quantize.moved,
        merged=prepared.quantize.merged,
        truncated=prepared.quantize.truncated,
        notes_encoded=len(prepared.notes),
        tokens=len(tokens),
        distinct_tokens=len(set(tokens)),
        notes_out=len(decoded),
        notes_read_back=len(back.notes),
        exact=sorted(n[:3] for n in decoded) == encoded_keys,
    )
