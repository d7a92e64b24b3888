"""The ``seqlab`` command: what users run outside DVC.

Each subcommand lives in ``stages/commands/<name>.py`` as ``add(subparsers)``,
which registers its parser and sets ``func``.  Errors that users can fix (bad files, bad
values) are printed as one line and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pipeline
from stages._common import run_main
from stages.commands import compare, gradcheck, midi, retrain, sample
from stages.commands.gradcheck import GRADCHECK_CELLS

__all__ = ["GRADCHECK_CELLS", "build_parser", "main"]


def _version(args: argparse.Namespace) -> int:
    print(f"seqlab {pipeline.__version__}")
    return 0


def add_version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print seqlab's version")
    p.set_defaults(func=_version)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="seqlab: a reproducible lab for recurrent sequence models. "
        "The pipeline itself runs with `dvc repro`; these commands are for everything around it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_version, gradcheck.add, sample.add, midi.add, retrain.add, compare.add):
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
