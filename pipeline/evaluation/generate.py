"""``seqlab sample``: load a trained variant, turn a prime into ids, sample, render.

A model directory (``models/<dataset>/<variant>/``) holds ``model.pt`` and a copy of its dataset's
``vocab.json`` (so the folder stands alone on another machine); ``--vocab`` points elsewhere.  The
vocabulary is read, never rebuilt from a corpus.  A prime is text (tokenized like the dataset: characters or words, lowercased when it was) or, for
a music dataset, a MIDI file encoded like the dataset.  Tokens the vocabulary lacks become ``<unk>`` and
are reported, so the caller can warn.

Music is decoded with a note-length cap (``max_note_quarters``), can be steered (no note-on for a sounding
pitch) and bounded in quarter notes after the prime (``quarters``, :mod:`pipeline.evaluation.guide`); a prime
moved to C by the dataset's ``normalize_key`` is moved back, so a continuation sounds in the piece's own key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pipeline.errors import UserError
from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.run_folder import RunFolder
from pipeline.tokenization import word
from pipeline.vocab import UNK_ID, Vocabulary


@dataclasses.dataclass
class Prime:
    ids: list[int]
    unknown: list[str]  # prime tokens that are not in the vocabulary (sampled as <unk>)
    key_shift: int = 0  # semitones the dataset's normalize_key moved a MIDI prime by (undone when writing)
    tokens: list[str] = dataclasses.field(default_factory=list)  # as encoded, unknown ones included (for MIDI output)


class PrimeError(UserError, ValueError):
    """A prime a model cannot continue: a MIDI file without notes, or one for a text model."""


@dataclasses.dataclass
class Generated:
    """Texts (text data) or written files (music, with the sampled notes closed at the note-length cap)."""

    texts: list[str]
    files: list[str]
    closed_notes: int = 0


def load_variant(model_dir: Path, vocab_path: Path | None, device: str) -> tuple[torch.nn.Module, Vocabulary]:
    folder = RunFolder(model_dir)
    if not folder.model.exists():
        raise UserError(f"{folder.model}: no trained model here; pass --model models/<dataset>/<variant>")
    payload = load_checkpoint(folder.model, map_location=device)
    vocab_path = vocab_path or folder.vocab  # the train stage copies it beside the model
    if not vocab_path.exists():
        raise UserError(f"{vocab_path}: no vocabulary for this model; pass the dataset's with --vocab PATH")
    vocab = Vocabulary.load(vocab_path)
    model = model_from_checkpoint(payload, device)
    if model.vocab_size != len(vocab):
        raise UserError(f"{model_dir}: the model has {model.vocab_size} tokens but the vocabulary {len(vocab)}; "
                        "pass the dataset's own vocab.json with --vocab")
    return model, vocab


def prime_ids(prime: str | None, vocab: Vocabulary) -> Prime:
    """Text or a MIDI file path -> ids in ``vocab`` (unknown tokens -> ``<unk>``, and listed)."""
    if not prime:
        return Prime([], [])
    if vocab.meta.get("kind") == "midi":
        if not Path(prime).is_file():
            raise UserError(f"--prime {prime!r}: a music model takes a MIDI file as its prime")
        return prime_of_midi(prime, vocab)
    else:
        text = prime.lower() if vocab.meta.get("lowercase") else prime
        if vocab.meta.get("level") == "char":
            tokens = list(text)
        else:
            tokens = word.splitter(vocab.meta.get("word_split", "punctuation"))(text)
    return _prime(tokens, vocab)


def _prime(tokens: list[str], vocab: Vocabulary, key_shift: int = 0) -> Prime:
    ids = [vocab.id(t) for t in tokens]
    unknown = [t for t, i in zip(tokens, ids, strict=True) if i == UNK_ID and t != vocab.tokens[UNK_ID]]
    return Prime(ids, unknown, key_shift, list(tokens))


def prime_of_midi(path: str | Path, vocab: Vocabulary) -> Prime:
    """A MIDI file encoded with the model's own encoding and vocabulary (unknown tokens listed, not fatal)."""
    from pipeline.midi.corpus import MidiCorpusError, encode_prime

    if vocab.meta.get("kind") != "midi":
        raise PrimeError(f"--prime-midi {path}: the model is a text model (dataset "
                         f"{vocab.meta.get('dataset', '?')!r}); give it text with --prime")
    if not Path(path).is_file():
        raise PrimeError(f"--prime-midi {path}: no such file")
    try:
        tokens, key_shift = encode_prime(path, vocab.meta)
    except MidiCorpusError as e:
        raise PrimeError(f"{e}; give a MIDI file with at least one note") from e
    if not tokens:
        raise PrimeError(f"{path}: shorter than one token of this model's encoding; give a longer piece")
    return _prime(tokens, vocab, key_shift)


def generate(model: torch.nn.Module, vocab: Vocabulary, prime: Prime, *, n: int, max_length: int,
             temperature: float, top_k: int | None, top_p: float | None, seed: int | None,
             out: Path | None, forward_direction: bool = False, max_note_quarters: float | None = 4.0,
             forbid_sounding_note_on: bool = False, quarters: float | None = None) -> Generated:
    """Sample ``n`` continuations of ``prime`` in one batch; return text, or write MIDI (+ piano rolls) to ``out``.

    A bidirectional model is refused unless ``forward_direction`` asks for its forward direction, a causal LM
    on its own.  Music only: ``max_note_quarters``, ``forbid_sounding_note_on`` and ``quarters`` (see the
    module docstring).
    """
    from pipeline.evaluation.evaluate import generator_of
    from pipeline.evaluation.guide import guide_for
    from pipeline.models.sampling import sample
    from pipeline.tokenization import detokenize

    if forward_direction:
        model = generator_of(model)
    elif not getattr(model, "causal", True):
        from pipeline.models import ensure_causal

        ensure_causal(model, "generate", "sample its forward direction with --forward-direction, "
                      "or train a direction: uni variant")
    music = vocab.meta.get("kind") == "midi"
    if quarters is not None and not music:
        raise UserError("--quarters bounds music in quarter notes: this is a text model (use --max-length)")
    if music and out is None:
        raise UserError("a music model writes MIDI: pass --out FILE.mid")
    device = next(model.parameters()).device
    guide = guide_for(vocab, n, forbid_sounding_note_on, max_note_quarters, quarters)
    sequences = sample(model, n=n, max_length=max_length, prime=prime.ids or None, temperature=temperature,
                       top_k=top_k, top_p=top_p, seed=seed, device=device, guide=guide)
    if not music:
        return Generated([detokenize(prime.ids + seq, vocab).rstrip("\n") for seq in sequences], [])
    return _write_music(sequences, vocab, prime, Path(out), max_note_quarters, quarters)


def _write_music(sequences: list[list[int]], vocab: Vocabulary, prime: Prime, out: Path,
                 max_note_quarters: float | None, quarters: float | None) -> Generated:
    """Decode each prime + continuation (cut ``quarters`` after the prime, moved back to the prime's key).

    The prime is written as it was encoded: its tokens the vocabulary lacks (``<unk>`` to the model) keep their
    notes and time in the file."""
    from pipeline.evaluation.guide import clip_notes
    from pipeline.midi.codec import Decoded, decode_ids
    from pipeline.midi.events import transpose
    from pipeline.midi.io import write_decoded
    from pipeline.midi.pianoroll import render_piano_roll

    head: list[str] | list[int] = prime.tokens or prime.ids  # strings: unknown tokens keep their notes
    prime_end = max((note.end for note in decode_ids(head, vocab).notes), default=0)
    result = Generated([], [])
    for i, seq in enumerate(sequences):
        path = out if len(sequences) == 1 else out.with_name(f"{out.stem}_{i:02d}{out.suffix or '.mid'}")
        decoded = decode_ids([*head, *seq], vocab, max_note_quarters)
        notes = decoded.notes
        if quarters is not None:
            notes = clip_notes(notes, prime_end + round(quarters * decoded.steps_per_quarter))
        notes = transpose(notes, -prime.key_shift) or notes  # out of MIDI's range: keep the model's key
        write_decoded(Decoded(notes, decoded.closed, decoded.steps_per_quarter), vocab, path)
        result.closed_notes += decoded.closed
        result.files += [str(path), str(render_piano_roll(path, None, path.with_suffix(".png")))]
    return result
