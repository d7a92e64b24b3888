"""The ``seqlab`` command: what users run outside DVC.

Each subcommand is a small ``add_<name>(subparsers)`` function that registers
its parser and sets ``func``; handlers import the library lazily so that
``seqlab --help`` stays fast.  Errors that users can fix (bad files, bad
values) are printed as one line and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stages._common import run_main


def _version(args: argparse.Namespace) -> int:
    import pipeline

    print(f"seqlab {pipeline.__version__}")
    return 0


def add_version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print seqlab's version")
    p.set_defaults(func=_version)


# Spelled out (not read from pipeline.reference.CELLS) so that `seqlab --help` imports no library code;
# tests/test_reference.py checks the two lists agree.
GRADCHECK_CELLS = ("rnn", "gru", "gru_minimal", "lstm", "lstm_peephole")


def _gradcheck(args: argparse.Namespace) -> int:
    from pipeline.reference.gradcheck import format_table, run_checks

    cells = GRADCHECK_CELLS if args.cell == "all" else (args.cell,)
    results = run_checks(cells, seed=args.seed)
    print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


def add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check the NumPy reference's hand-written gradients against finite differences and torch autograd",
        description="For each cell, compare every gradient of the NumPy reference (pipeline/reference) with "
        "central finite differences (float64, relative error < 1e-7) and with torch autograd on the matching "
        "torch module (< 1e-10). Prints one row per parameter and check; exits 1 if any check fails.",
    )
    p.add_argument("--cell", choices=(*GRADCHECK_CELLS, "all"), default="all", help="which cell (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random weights and data (default: 0)")
    p.set_defaults(func=_gradcheck)


def _midi_roundtrip(args: argparse.Namespace) -> int:
    from pipeline.config import EncodeMidiConfig, parse_dataclass
    from pipeline.midi.roundtrip import roundtrip_file

    options = {
        "corpus": "-",
        "encoding": args.encoding,
        "steps_per_quarter": args.steps_per_quarter,
        "voices": args.voices,
        "keep_drums": args.keep_drums,
        "normalize_key": args.normalize_key,
        "velocity_bins": args.velocity_bins,
    }
    if args.chords:
        options["chords"] = args.chords
    cfg = parse_dataclass(EncodeMidiConfig, options, "seqlab midi roundtrip")
    report = roundtrip_file(args.input, args.output, cfg)
    print("\n".join(report.lines(args.input, args.output, cfg)))
    if args.png:
        from pipeline.midi.pianoroll import render_piano_roll

        print(f"piano roll: {render_piano_roll(args.output, None, args.png)}")
    return 0


def add_midi(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("midi", help="MIDI tools: hear what an encoding keeps")
    midi_sub = p.add_subparsers(dest="midi_command", metavar="MIDI_COMMAND", required=True)
    r = midi_sub.add_parser(
        "roundtrip",
        help="encode one MIDI file and decode it again; print note counts before and after",
        description="Read IN.mid as the encode_midi stage does (drums dropped unless --keep-drums, notes on a grid), "
        "encode it, decode the tokens and write OUT.mid (one piano track), then read OUT.mid back.",
    )
    r.add_argument("input", metavar="IN.mid")
    r.add_argument("output", metavar="OUT.mid")
    r.add_argument("--encoding", choices=("note", "event"), default="note")
    r.add_argument("--steps-per-quarter", type=int, default=4, help="grid resolution (default: 4)")
    r.add_argument("--chords", choices=("pitches", "pitch_classes"), help="note encoding: how chords are named")
    r.add_argument("--voices", choices=("all", "top"), default="all", help="top: keep the melody (highest note)")
    r.add_argument("--velocity-bins", type=int, default=0, help="event encoding: velocity bins (default 0: none)")
    r.add_argument("--keep-drums", action="store_true", help="keep channel-10 drums (encoded as pitches)")
    r.add_argument("--normalize-key", action="store_true", help="move the piece to C major / A minor first")
    r.add_argument("--png", metavar="PATH", help="also draw OUT.mid as a piano roll")
    r.set_defaults(func=_midi_roundtrip)


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


def add_sample(sub: argparse._SubParsersAction) -> None:
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


def _retrain(args: argparse.Namespace) -> int:
    import os

    from pipeline.config import RetrainConfig, load_params
    from pipeline.retrain import retrain

    cfg = load_params(args.params).sections.get("retrain", RetrainConfig())
    summary = args.summary or os.environ.get("GITHUB_STEP_SUMMARY") or None
    return retrain(cfg, base=args.base, pull=not args.no_pull, push=not args.no_push, summary=summary)


def add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain", help="what CI runs: dvc pull, dvc repro, dvc push, then fail on a metric regression",
        description="Run `dvc pull --allow-missing`, `dvc repro` and `dvc push`, then compare params.yaml's "
        "retrain.metric in every DVC metrics file with the base revision (`dvc metrics diff`) and with the "
        "registered seqlab-<dataset>@champion. Prints a Markdown table (appended to $GITHUB_STEP_SUMMARY when set) "
        "and exits 1 when a value is more than retrain.max_regression worse. .github/workflows/retrain.yml runs this.")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--base", help="git revision to compare with (default: retrain.base, e.g. HEAD or origin/main)")
    p.add_argument("--no-pull", action="store_true", help="skip `dvc pull` (the data is already here)")
    p.add_argument("--no-push", action="store_true", help="skip `dvc push` (nothing is shared)")
    p.add_argument("--summary", help="append the table to this file (default: $GITHUB_STEP_SUMMARY if set)")
    p.set_defaults(func=_retrain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="seqlab: a reproducible lab for recurrent sequence models. "
        "The pipeline itself runs with `dvc repro`; these commands are for everything around it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_version, add_gradcheck, add_sample, add_midi, add_retrain):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return run_main(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
