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

from stages._common import run_main


def _version(args: argparse.Namespace) -> int:
    import pipeline

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
    for add in (add_version,):
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
