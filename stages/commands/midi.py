"""`seqlab midi roundtrip`: encode one MIDI file and decode it again, printing the note counts."""

from __future__ import annotations

import argparse

from pipeline.config import EncodeMidiConfig, parse_dataclass
from pipeline.midi.pianoroll import render_piano_roll
from pipeline.midi.roundtrip import roundtrip_file


def _midi_roundtrip(args: argparse.Namespace) -> int:
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
        print(f"piano roll: {render_piano_roll(args.output, None, args.png)}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
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
