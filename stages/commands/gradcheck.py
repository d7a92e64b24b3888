"""`seqlab gradcheck`: the NumPy reference's gradients against finite differences and torch autograd."""

from __future__ import annotations

import argparse

from pipeline.reference.gradcheck import format_table, run_checks

GRADCHECK_CELLS = ("rnn", "gru", "gru_minimal", "lstm", "lstm_peephole")


def _gradcheck(args: argparse.Namespace) -> int:
    cells = GRADCHECK_CELLS if args.cell == "all" else (args.cell,)
    results = run_checks(cells, seed=args.seed)
    print(format_table(results))
    return 0 if all(r.passed for r in results) else 1


def add(sub: argparse._SubParsersAction) -> None:
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
