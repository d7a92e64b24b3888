"""``seqlab sample``: load a trained variant, turn a prime into ids, sample, render.

A model directory (``models/<dataset>/<variant>/``) holds ``model.pt`` and a copy of its dataset's
``vocab.json`` (so the folder stands alone on another machine); ``--vocab`` points elsewhere.  The
vocabulary is read, never rebuilt from a corpus.  A prime is text (tokenized like the dataset: characters or words, lowercased when it was) or, for
a music dataset, a MIDI file encoded like the dataset.  Tokens the vocabulary lacks become ``<unk>`` and
are reported, so the caller can warn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pipeline.errors import UserError
from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.tokenization import word
from pipeline.vocab import UNK_ID, Vocabulary


@dataclasses.dataclass
class Prime:
    ids: list[int]
    unknown: list[str]  # prime tokens that are not in the vocabulary (sampled as <unk>)


def load_variant(model_dir: Path, vocab_path: Path | None, device: str) -> tuple[torch.nn.Module, Vocabulary]:
    model_dir = Path(model_dir)
    if not (model_dir / "model.pt").exists():
        raise UserError(f"{model_dir / 'model.pt'}: no trained model here; pass --model models/<dataset>/<variant>")
    payload = load_checkpoint(model_dir / "model.pt", map_location=device)
    vocab_path = vocab_path or model_dir / "vocab.json"  # the train stage copies it beside the model
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
        from pipeline.midi.corpus import tokens_of_file

        if not Path(prime).is_file():
            raise UserError(f"--prime {prime!r}: a music model takes a MIDI file as its prime")
        tokens = tokens_of_file(prime, vocab.meta)
    else:
        text = prime.lower() if vocab.meta.get("lowercase") else prime
        if vocab.meta.get("level") == "char":
            tokens = list(text)
        else:
            tokens = word.splitter(vocab.meta.get("word_split", "punctuation"))(text)
    ids = [vocab.id(t) for t in tokens]
    unknown = [t for t, i in zip(tokens, ids, strict=True) if i == UNK_ID and t != vocab.tokens[UNK_ID]]
    return Prime(ids, unknown)


def generate(model: torch.nn.Module, vocab: Vocabulary, prime: Prime, *, n: int, max_length: int,
             temperature: float, top_k: int | None, top_p: float | None, seed: int | None,
             out: Path | None, forward_direction: bool = False) -> list[str]:
    """Sample ``n`` continuations of ``prime`` in one batch; return text, or write MIDI (+ piano rolls) to ``out``.

    Returns the texts (text data) or the written file paths (music).  A bidirectional model is refused
    unless ``forward_direction`` asks for its forward direction, a causal LM on its own.
    """
    from pipeline.evaluation.evaluate import generator_of
    from pipeline.models.sampling import sample
    from pipeline.tokenization import detokenize

    if forward_direction:
        model = generator_of(model)
    elif not getattr(model, "causal", True):
        from pipeline.models import ensure_causal

        ensure_causal(model, "generate", "sample its forward direction with --forward-direction, "
                      "or train a direction: uni variant")
    device = next(model.parameters()).device
    sequences = sample(model, n=n, max_length=max_length, prime=prime.ids or None, temperature=temperature,
                       top_k=top_k, top_p=top_p, seed=seed, device=device)
    full = [prime.ids + seq for seq in sequences]
    if vocab.meta.get("kind") != "midi":
        return [detokenize(seq, vocab).rstrip("\n") for seq in full]
    if out is None:
        raise UserError("a music model writes MIDI: pass --out FILE.mid")
    from pipeline.midi import decode_to_midi, render_piano_roll

    written = []
    for i, seq in enumerate(full):
        path = Path(out) if n == 1 else Path(out).with_name(f"{Path(out).stem}_{i:02d}{Path(out).suffix or '.mid'}")
        decode_to_midi(seq, vocab, path)
        written += [str(path), str(render_piano_roll(path, None, path.with_suffix(".png")))]
    return written
