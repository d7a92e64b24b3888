"""`seqlab compare`: the workspace and every DVC experiment side by side, variants as rows (what `make compare` runs)."""

from __future__ import annotations

import argparse


def _compare(args: argparse.Namespace) -> int:
    import json
    import shutil
    import subprocess
    import sys

    from pipeline.evaluation.compare import ComparisonError, comparison_table, experiments

    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["-A"] if args.all_commits else [])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ComparisonError(f"compare: `dvc exp show --json` failed ({said}); run it inside the project")
    columns = experiments(json.loads(done.stdout or "[]"), args.summary)
    width = args.width or min(200, shutil.get_terminal_size((200, 24)).columns)
    print(f"{args.summary}, lower is better; `dvc exp show` lists each experiment's params")
    print(comparison_table(columns, width), end="")
    return 0


DESCRIPTION = (
    "Read `dvc exp show --json` and print reports/metrics.json (the report stage's summary: test perplexity and bpc "
    "of every variant and n-gram baseline, music distances) with variants as rows and one column per experiment "
    "(the workspace, the commit, each `dvc exp run`), in blocks no wider than the terminal (at most 200 characters).")


def add(sub: argparse._SubParsersAction) -> None:
    help_ = "the test figures of the workspace and every DVC experiment in one table"
    p = sub.add_parser("compare", help=help_, description=DESCRIPTION)
    p.add_argument("--summary", default="reports/metrics.json", help="the summary metrics file (as dvc.yaml names it)")
    p.add_argument("--width", type=int, help="widest line (default: the terminal's width, at most 200)")
    p.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    p.set_defaults(func=_compare)
