"""Recipe comparisons at equal steps: train a run of bench/quality/params.yaml for a fixed number of optimizer steps
(not seconds) with changes, then score it on nanoGPT's 64-token random windows and on the whole validation stream.

Steps rather than seconds make the comparison independent of whatever else runs on the machine, so several
variants can run side by side on a shared machine (give each one thread).  Choose the step counts so that the
variants get the same compute (steps x tokens per step x FLOPs per token).

    OMP_NUM_THREADS=1 python bench/quality_steps.py shakespeare-144s --batching stream --steps 700
    OMP_NUM_THREADS=1 python bench/quality_steps.py shakespeare-144s --batching windows --steps 2377 \\
        --set '{"model": {"num_layers": 1, "hidden_size": 512}}'

Prints one JSON line: the run, the changes, the two losses, tokens/s and wall seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_params  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.models.scoring import evaluate_split, evaluate_windows  # noqa: E402
from pipeline.runtime import set_seed  # noqa: E402
from pipeline.training.loop import Trainer  # noqa: E402
from pipeline.vocab import Vocabulary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a key of train.runs in --params")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batching", choices=("stream", "windows"), default="stream")
    parser.add_argument("--set", default="{}", help='JSON: train settings, and "model": {...} model fields')
    parser.add_argument("--params", type=Path, default=ROOT / "bench/quality/params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "bench/out/quality/tokens",
                        help="the tokenized datasets (bench/quality.py writes them)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    changes = json.loads(args.set)
    model_changes = changes.pop("model", {})
    params = load_params(args.params)
    cfg = params.train.runs[args.run]
    settings = dataclasses.replace(
        params.train.settings_for(args.run), batching=args.batching, max_steps=args.steps, time_budget_s=None,
        epochs=10_000, precision="fp32", threads=args.threads, tracking="none", progress=False,
        val_every_steps=args.steps, sample=dataclasses.replace(params.train.settings_for(args.run).sample, n=0),
        eval_bptt=64 if args.batching == "windows" else params.train.settings_for(args.run).eval_bptt, **changes)
    data = args.data / cfg.dataset
    train, val = np.load(data / "train.npy"), np.load(data / "val.npy")
    set_seed(settings.seed)
    model = build_model(dataclasses.replace(cfg.model, **model_changes), len(Vocabulary.load(data / "vocab.json")))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = Trainer(model, train, val, settings, Path(out)).run()
    model.eval()
    windows = evaluate_windows(model, val, length=64, count=2400, seed=1337)
    stream = evaluate_split(model, val, mode="stream", batch_size=1, bptt=256)
    print(json.dumps({"run": args.run, "batching": args.batching, "steps": args.steps, "set": args.set,
                      "windows64_loss": round(windows["loss"], 4), "stream_loss": round(stream["loss"], 4),
                      "tokens_per_s": result.metrics["tokens_per_s"], "wall_s": round(time.perf_counter() - start)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
