"""What scoring a split in parallel lanes changes: every trained variant's val/test figures at 1 lane and more.

    .venv/bin/python bench/bench_lanes.py --workspace . [--lanes 1,8,64] [--json bench/results/lanes-<date>.json]

``--workspace`` is a project folder after ``dvc repro`` (its ``params.yaml``, ``models/`` and ``data/tokens/``).
The evaluate stage scores a split as one stream with the state carried from the first token to the last
(``evaluate.batch_size: 1``), and a split longer than ``evaluate.lanes_above_tokens`` as ``evaluate.lanes``
streams: each lane starts from a zero state, so the tokens after each cut see less context.  This prints the
perplexity of each variant and split at each lane count, the relative change against 1 lane and the wall time,
and writes the raw figures to JSON.  Record datasets (names) are scored record by record whatever the lanes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipeline import files  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from pipeline.models.scoring import evaluate_split  # noqa: E402
from pipeline.run_folder import RunFolder  # noqa: E402


def score(workspace: Path, params_path: Path, lanes: list[int], bptt: int) -> list[dict]:
    params = load_params(params_path, required=("train", "evaluate"))
    rows = []
    for name, run in params.train.runs.items():
        model_path = RunFolder(workspace / "models" / run.dataset / run.variant).model
        mode = params.train.settings_for(name).batching
        if not model_path.exists() or mode == "records":
            continue
        model = model_from_checkpoint(load_checkpoint(model_path, map_location="cpu"), "cpu")
        for split in ("val", "test"):
            ids = files.read_tokens(workspace / "data/tokens" / run.dataset / f"{split}.npy")
            if len(ids) < 2:
                continue
            for n in lanes:
                start = time.perf_counter()
                figures = evaluate_split(model, ids, mode=mode, batch_size=n, bptt=bptt, device="cpu")
                rows.append({"run": name, "split": split, "tokens": len(ids), "lanes": n,
                             "perplexity": figures.get("forward_perplexity", figures["perplexity"]),
                             "seconds": round(time.perf_counter() - start, 3)})
                print(f"{name:28s} {split:4s} {len(ids):>9,d} tokens  lanes {n:>3d}  "
                      f"perplexity {rows[-1]['perplexity']:10.4f}  {rows[-1]['seconds']:7.2f} s", flush=True)
    return rows


def with_ratios(rows: list[dict]) -> list[dict]:
    one = {(r["run"], r["split"]): r for r in rows if r["lanes"] == 1}
    for r in rows:
        base = one.get((r["run"], r["split"]))
        if base:
            r["relative_change"] = r["perplexity"] / base["perplexity"] - 1
            r["speedup"] = base["seconds"] / r["seconds"] if r["seconds"] else None
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("."))
    parser.add_argument("--params", type=Path, default=None, help="default: the workspace's params.yaml")
    parser.add_argument("--lanes", default="1,8,64")
    parser.add_argument("--bptt", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = with_ratios(score(args.workspace, args.params or args.workspace / "params.yaml", [int(n) for n in args.lanes.split(",")], args.bptt))
    print("\nrun | split | lanes | relative change of perplexity vs 1 lane | speed-up")
    for r in rows:
        if r["lanes"] != 1 and "relative_change" in r:
            print(f"{r['run']} | {r['split']} | {r['lanes']} | {r['relative_change']:+.4%} | {r['speedup']:.1f}x")
    out = args.json or Path(__file__).parent / "results" / f"lanes-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                               "bptt": args.bptt, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
