"""A folder of MIDI files -> a token dataset (vocabulary, train/val/test ids, stats, skipped files).

Each file is one job for a process pool (:func:`pipeline.midi.pool.pool_map`): read it with
music21's fast reader, drop drums, check its length, quantize, optionally keep the top voice
and move the key to C major / A minor, then encode it, in every transposition asked for.  A
file that cannot be used is *skipped* with a reason, never a crash.  Jobs are independent
and results are gathered in file order, so the output is byte-identical for any number of
workers.  Only token strings travel back (pickling note records costs more than encoding them).

Files are split by piece afterwards (seeded, see :func:`assign_splits`); transposed copies
are kept for the training pieces only, and the vocabulary is built on the training tokens,
so val/test measure real ``<unk>``s.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import EncodeMidiConfig, SplitConfig
from pipeline.errors import UserError
from pipeline.midi.codec import Codec, make_codec
from pipeline.midi.events import Note, Piece, QuantizeStats, drop_drums, quantize, top_voice, transpose
from pipeline.midi.io import MidiParseError, key_shift_to_c, read_midi  # music21 loads before workers fork
from pipeline.midi.pool import pool_map
from pipeline.vocab import EOS, EOS_ID, UNK_ID, Vocabulary

SPLITS = ("train", "val", "test")
MIDI_SUFFIXES = (".mid", ".midi")
QPM = 120  # tempo of decoded files (the grid counts quarter notes, not seconds)


class MidiCorpusError(UserError):
    """A MIDI corpus that yields no usable dataset; the message says why and what to change.

    ``skipped`` holds every file that could not be used, with its reason, for the stage to write out.
    """

    def __init__(self, message: str, skipped: list[Skipped] | None = None) -> None:
        super().__init__(message)
        self.skipped = list(skipped or [])


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One usable piece after pass 1: quantized notes and what happened on the way."""

    file: str
    notes: tuple[Note, ...]
    quantize: QuantizeStats
    drums_dropped: int
    key_shift: int


@dataclasses.dataclass(frozen=True)
class Skipped:
    file: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One usable file's tokens, one sequence per transposition (the piece as it is first)."""

    file: str
    notes: int
    tokens: tuple[tuple[str, ...], ...]
    quantize: QuantizeStats
    drums_dropped: int
    key_shift: int


@dataclasses.dataclass(frozen=True)
class EncodedCorpus:
    vocab: Vocabulary
    ids: dict[str, np.ndarray]  # split -> flat ids, every piece closed by <eos>
    stats: dict[str, Any]
    skipped: list[Skipped]


def list_midi_files(raw_dir: Path) -> list[Path]:
    """Every ``.mid``/``.midi`` file under ``raw_dir`` (any case), sorted by relative path."""
    return sorted(p for p in Path(raw_dir).rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


# --------------------------------------------------------------------------- one file


def prepare_piece(job: tuple[str, str, EncodeMidiConfig]) -> Prepared | Skipped:
    """Read and quantize one file (runs in a worker); a file that cannot be used comes back as :class:`Skipped`."""
    path, rel, cfg = job
    try:
        piece = read_midi(path)
    except MidiParseError as e:
        return Skipped(rel, str(e).removeprefix(f"{path}: "))
    if not piece.notes:
        return Skipped(rel, "no notes")
    notes, drums = (list(piece.notes), 0) if cfg.keep_drums else drop_drums(piece.notes)
    if not notes:
        return Skipped(rel, f"drums only ({drums} notes on channel 10; set keep_drums: true to use them)")
    kept = Piece(tuple(notes), piece.resolution)
    if kept.quarters > cfg.max_quarters:
        return Skipped(
            rel, f"absurd tick values: notes reach quarter note {kept.quarters:.0f} (> max_quarters {cfg.max_quarters:g})"
        )
    q, stats = quantize(kept, cfg.steps_per_quarter)
    out = top_voice(q.notes) if cfg.voices == "top" else list(q.notes)
    shift = key_shift_to_c(out, cfg.steps_per_quarter) if cfg.normalize_key else 0
    moved = transpose(out, shift)
    if moved is None:  # the key change would leave 0..127: keep the piece as it is
        moved, shift = out, 0
    return Prepared(rel, tuple(moved), stats, drums, shift)


def encode_piece(notes: tuple[Note, ...], shifts: tuple[int, ...], codec: Codec) -> tuple[tuple[str, ...], ...]:
    """Tokens of a piece in each transposition (0 = as is); a shift out of MIDI's range is left out."""
    out = []
    for s in shifts:
        moved = transpose(notes, s)
        if moved is not None:
            out.append(tuple(codec.encode(moved)))
    return tuple(out)


def encode_file(job: tuple[str, str, EncodeMidiConfig]) -> Encoded | Skipped:
    """Prepare and encode one file (runs in a worker)."""
    cfg = job[2]
    p = prepare_piece(job)
    if isinstance(p, Skipped):
        return p
    tokens = encode_piece(p.notes, augmentation(cfg), codec_for(cfg))
    return Encoded(p.file, len(p.notes), tokens, p.quantize, p.drums_dropped, p.key_shift)


def augmentation(cfg: EncodeMidiConfig) -> tuple[int, ...]:
    """Transpositions to encode: 0 (the piece as it is) first, then the others ascending."""
    return (0, *sorted(set(cfg.transpose) - {0}))


def assign_splits(n: int, split: SplitConfig) -> list[str]:
    """Split name per piece: a seeded shuffle (``random``) or train, val, test in order (``contiguous``).

    Shares are rounded; a split asked for (share > 0) gets at least one piece while
    at least one piece stays in train.
    """
    counts = {}
    for name, share in (("val", split.val), ("test", split.test)):
        counts[name] = max(round(n * share), 1 if share > 0 else 0)
    while counts["val"] + counts["test"] >= n and counts["val"] + counts["test"] > 0:
        counts["test" if counts["test"] >= counts["val"] else "val"] -= 1
    order = list(range(n))
    if split.method == "random":
        random.Random(split.seed).shuffle(order)
        val, test = set(order[: counts["val"]]), set(order[counts["val"] : counts["val"] + counts["test"]])
    else:
        n_train = n - counts["val"] - counts["test"]
        val, test = set(range(n_train, n_train + counts["val"])), set(range(n_train + counts["val"], n))
    return ["val" if i in val else "test" if i in test else "train" for i in range(n)]


# --------------------------------------------------------------------------- the whole corpus


def codec_for(cfg: EncodeMidiConfig) -> Codec:
    return make_codec(cfg.encoding, cfg.steps_per_quarter, cfg.max_steps, cfg.velocity_bins, cfg.chords)


def vocab_meta(cfg: EncodeMidiConfig, codec: Codec, name: str) -> dict[str, Any]:
    """Everything decoding needs (the codec's settings, tempo) plus how the data was made."""
    return {
        **codec.meta(),
        "qpm": QPM,
        "dataset": name,
        "corpus": cfg.corpus,
        "voices": cfg.voices,
        "keep_drums": cfg.keep_drums,
        "normalize_key": cfg.normalize_key,
        "transpose": list(cfg.transpose),
    }


def encode_corpus(raw_dir: Path, cfg: EncodeMidiConfig, name: str = "midi", workers: int = 0) -> EncodedCorpus:
    """Encode every MIDI file under ``raw_dir`` as ``cfg`` (params ``encode_midi.<name>``) says."""
    raw_dir = Path(raw_dir)
    files = list_midi_files(raw_dir)
    if not files:
        raise MidiCorpusError(f"{raw_dir}: no .mid/.midi files (run the download stage, or check the corpus)")
    results = pool_map(encode_file, [(str(p), p.relative_to(raw_dir).as_posix(), cfg) for p in files], workers)
    pieces = [r for r in results if isinstance(r, Encoded)]
    skipped = [r for r in results if isinstance(r, Skipped)]
    _check_skipped(raw_dir, len(files), skipped, cfg.max_skipped_share, f"encode_midi.{name}")
    splits = assign_splits(len(pieces), cfg.split)
    seqs: dict[str, list[tuple[str, ...]]] = {s: [] for s in SPLITS}
    for piece, split in zip(pieces, splits, strict=True):
        seqs[split] += piece.tokens if split == "train" else piece.tokens[:1]  # transposed copies: training only
    counts = Counter(t for seq in seqs["train"] for t in seq)
    codec = codec_for(cfg)
    vocab = Vocabulary.build(counts, cfg.min_freq, cfg.max_size, vocab_meta(cfg, codec, name))
    ids = {s: _ids(vocab, seqs[s]) for s in SPLITS}
    stats = _stats(files, pieces, skipped, splits, ids, vocab)
    return EncodedCorpus(vocab, ids, stats, skipped)


def _check_skipped(raw_dir: Path, n_files: int, skipped: list[Skipped], max_share: float, where: str) -> None:
    examples = "; ".join(f"{s.file}: {s.reason}" for s in skipped[:3])
    if len(skipped) > 3:
        examples += f"; and {len(skipped) - 3} more"
    if len(skipped) == n_files:
        raise MidiCorpusError(f"{raw_dir}: none of the {n_files} MIDI files is usable ({examples})", skipped)
    if len(skipped) / n_files > max_share:
        raise MidiCorpusError(
            f"{raw_dir}: {len(skipped)} of {n_files} MIDI files skipped ({len(skipped) / n_files:.0%} > "
            f"{where}.max_skipped_share {max_share:.0%}); e.g. {examples}", skipped
        )


def _ids(vocab: Vocabulary, sequences: list[tuple[str, ...]]) -> np.ndarray:
    flat = [t for seq in sequences for t in (*seq, EOS)]
    return vocab.encode(flat)


def _stats(files, pieces, skipped, splits, ids, vocab) -> dict[str, Any]:  # noqa: ANN001 - private helper
    q = QuantizeStats()
    for p in pieces:
        q.add(p.quantize)
    stats: dict[str, Any] = {
        "vocab_size": len(vocab),
        "files": len(files),
        "skipped": len(skipped),
        "skipped_share": round(len(skipped) / len(files), 6),
        "quantization": dataclasses.asdict(q),
        "drum_notes_dropped": sum(p.drums_dropped for p in pieces),
        "key_shifted_pieces": sum(1 for p in pieces if p.key_shift),
    }
    for s in SPLITS:
        mine = [i for i, sp in enumerate(splits) if sp == s]
        n, unk = int(ids[s].size), int(np.count_nonzero(ids[s] == UNK_ID))
        stats[s] = {
            "pieces": len(mine),
            "records": int(np.count_nonzero(ids[s] == EOS_ID)),  # pieces + transposed copies
            "notes": sum(pieces[i].notes for i in mine),
            "tokens": n,
            "unk_tokens": unk,
            "unk_rate": round(unk / n, 6) if n else 0.0,
        }
    return stats


def tokens_of_file(path: str | Path, meta: dict[str, Any]) -> list[str]:
    """Encode one MIDI file exactly as the dataset whose vocabulary ``meta`` describes (a prime for sampling)."""
    return encode_prime(path, meta)[0]


def encode_prime(path: str | Path, meta: dict[str, Any]) -> tuple[list[str], int]:
    """:func:`tokens_of_file`, and the semitones its key was moved by (``normalize_key``; 0 otherwise)."""
    fields = {f.name for f in dataclasses.fields(EncodeMidiConfig)}
    settings = {k: v for k, v in meta.items() if k in fields and k not in ("transpose", "split")}
    cfg = EncodeMidiConfig(**{**settings, "corpus": str(meta.get("corpus", "prime"))})
    prepared = prepare_piece((str(path), str(path), cfg))
    if isinstance(prepared, Skipped):
        raise MidiCorpusError(f"{path}: cannot be used as a prime: {prepared.reason}")
    return codec_for(cfg).encode(prepared.notes), prepared.key_shift
