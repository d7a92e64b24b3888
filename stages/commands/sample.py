"""`seqlab sample`: sample novel sequences from a trained variant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _sample(args: argparse.Namespace) -> int:
    from pipeline import io
    from pipeline.evaluation.generate import generate, load_variant, prime_ids
    from pipeline.runtime import resolve_device

    model, vocab = load_variant(Path(args.model), Path(args.vocab) if args.vocab else None, resolve_device(args.device))
    prime = prime_ids(args.prime, vocab)
    if prime.unknown:
        shown = ", ".join(repr(t) for t in dict.fromkeys(prime.unknown))
        print(f"seqlab: warning: the prime has tokens the vocabulary lacks, sampled as <unk>: {shown}", file=sys.stderr)
    results = generate(model, vocab, prime, n=args.n, max_length=args.max_length, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed, out=Path(args.out) if args.out else None,
                       forward_direction=args.forward_direction)
    if vocab.meta.get("kind") == "midi":
        print("\n".join(results))
    elif args.out:
        io.write_text(args.out, "\n\n".join(results) + "\n")
        print(f"wrote {len(results)} samples to {args.out}")
    else:
        print("\n\n".join(results))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample novel sequences from a trained variant",
                       description="Sample N sequences (batched: one forward call per step) from "
                       "models/<dataset>/<variant>/model.pt. Text is printed (or written with --out); music is "
                       "written as MIDI plus a piano-roll PNG per sample. Works on a CPU for a model trained on a GPU.")
    p.add_argument("--model", required=True, help="models/<dataset>/<variant>")
    p.add_argument("--vocab", help="vocab.json (default: the one stored with the model)")
    p.add_argument("--prime", help="text to continue, or a MIDI file for a music model")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0)")
    p.add_argument("--top-k", type=int, default=None, help="sample from the K most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: the smallest set with mass >= P")
    p.add_argument("--n", type=int, default=4, help="number of samples (default 4)")
    p.add_argument("--max-length", type=int, default=300, help="tokens per sample at most; stops at <eos>")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    p.add_argument("--out", help="write samples here (text file; for music FILE.mid, numbered when --n > 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--forward-direction", action="store_true",
                   help="for a bidirectional model: sample from its forward direction (a causal LM on its own)")
    p.set_defaults(func=_sample)
