"""`seqlab sample`: sample novel sequences from a trained variant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import files
from pipeline.evaluation.generate import generate, load_variant, prime_ids, prime_of_midi
from pipeline.runtime import resolve_device


def _sample(args: argparse.Namespace) -> int:
    model, vocab = load_variant(Path(args.model), Path(args.vocab) if args.vocab else None, resolve_device(args.device))
    prime = prime_of_midi(args.prime_midi, vocab) if args.prime_midi else prime_ids(args.prime, vocab)
    if prime.unknown:
        print(f"seqlab: warning: {_unknown_note(prime.unknown, len(prime.ids))}", file=sys.stderr)
    max_length = args.max_length
    if max_length is None:  # --quarters bounds a sample in musical time: leave room for many tokens per step
        steps = vocab.meta.get("steps_per_quarter", 4)
        max_length = max(300, 8 * round(args.quarters * steps)) if args.quarters else 300
    result = generate(model, vocab, prime, n=args.n, max_length=max_length, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, seed=args.seed, out=Path(args.out) if args.out else None,
                      forward_direction=args.forward_direction, max_note_quarters=args.max_note_quarters,
                      forbid_sounding_note_on=args.forbid_sounding_note_on, quarters=args.quarters)
    if vocab.meta.get("kind") == "midi":
        print("\n".join(result.files))
        if result.closed_notes:
            print(f"seqlab: {result.closed_notes} notes held longer than {args.max_note_quarters:g} quarter notes "
                  "were closed there (--max-note-quarters)", file=sys.stderr)
    elif args.out:
        files.write_text(args.out, "\n\n".join(result.texts) + "\n")
        print(f"wrote {len(result.texts)} samples to {args.out}")
    else:
        print("\n\n".join(result.texts))
    return 0


def _unknown_note(unknown: list[str], total: int, shown: int = 5) -> str:
    """One line on the prime's tokens the vocabulary lacks: how many, their share, and a few of them."""
    distinct = list(dict.fromkeys(unknown))
    examples = ", ".join(repr(t) for t in distinct[:shown])
    more = f" and {len(distinct) - shown} more distinct" if len(distinct) > shown else ""
    return (f"{len(unknown)} of the prime's {total} tokens ({len(unknown) / total:.0%}) are not in the model's "
            f"vocabulary and are sampled as <unk>, e.g. {examples}{more}")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _cap(text: str) -> float | None:
    return None if text.lower() in ("none", "0") else _positive(text)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample novel sequences from a trained variant",
                       description="Sample N sequences (batched: one forward call per step) from "
                       "models/<dataset>/<variant>/model.pt. Text is printed (or written with --out); music is "
                       "written as MIDI plus a piano-roll PNG per sample. Works on a CPU for a model trained on a GPU.")
    p.add_argument("--model", required=True, help="models/<dataset>/<variant>")
    p.add_argument("--vocab", help="vocab.json (default: the one stored with the model)")
    prime = p.add_mutually_exclusive_group()
    prime.add_argument("--prime", help="text to continue, or a MIDI file for a music model")
    prime.add_argument("--prime-midi", metavar="PIECE.mid",
                       help="a MIDI piece to continue, encoded with the model's own encoding and vocabulary "
                       "(tokens it lacks are reported and sampled as <unk>)")
    p.add_argument("--quarters", type=_positive, metavar="N",
                   help="music: continue for N quarter notes after the prime (no end before; the last note is "
                   "cut there)")
    p.add_argument("--max-note-quarters", type=_cap, default=4.0, metavar="Q",
                   help="music: close any note held longer than Q quarter notes (default 4; none: never)")
    p.add_argument("--forbid-sounding-note-on", action="store_true",
                   help="music: never strike a pitch that is still sounding")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the K most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: the smallest set with mass >= P")
    p.add_argument("--n", type=int, default=4, help="number of samples (default 4)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per sample at most (default 300, more with --quarters); stops at <eos>")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    p.add_argument("--out", help="write samples here (text file; for music FILE.mid, numbered when --n > 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--forward-direction", action="store_true",
                   help="for a bidirectional model: sample from its forward direction (a causal LM on its own)")
    p.set_defaults(func=_sample)
