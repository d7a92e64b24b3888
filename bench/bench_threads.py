"""One CPU thread or two: training-step time of seqlab's models across shapes, and what ``threads: 0`` picks.

For each shape (cell, hidden size, layers, batch, window, vocabulary) it times :func:`pipeline.training.step.train_step`
of the real model on synthetic ids (speed does not depend on the values) at 1 and at 2 intra-op threads,
interleaved (1, 2, 1, 2, ...) over ``--rounds`` rounds, each measurement at least ``--min-seconds`` long, and keeps
each count's fastest round (another process on the cores slows single rounds; the minimum is the machine's speed).
It prints the speed-up of two threads, the shape's recurrent work per time step (the figure
:func:`pipeline.training.devices.thread_plan` decides from) and the count ``threads: 0`` gives the shape on 2 CPUs.

    .venv/bin/python bench/bench_threads.py                       # the grid and the default pipeline's runs
    .venv/bin/python bench/bench_threads.py --runs-only           # only the runs of params.yaml

Run on quiet cores: two threads collapse when anything else runs (the script prints the load average).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import ModelConfig, TrainSettings, load_params  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.training.batching import TrainBatches  # noqa: E402
from pipeline.training.devices import recurrent_step_flops, thread_plan  # noqa: E402
from pipeline.training.optim import build_optimizer  # noqa: E402
from pipeline.training.step import train_step  # noqa: E402


def shape_timings(cfg: ModelConfig, vocab: int, batch: int, bptt: int, batching: str, rounds: int,
                  min_seconds: float) -> dict[int, float]:
    """Fastest seconds per step at 1 and 2 threads."""
    torch.manual_seed(0)
    model = build_model(cfg, vocab).train()
    settings = TrainSettings(batch_size=batch, bptt=bptt, batching=batching, lr=0.001)
    ids = torch.randint(3, vocab, (batch * bptt * 8,)).numpy()
    step_batch = next(TrainBatches(ids, batching, batch, bptt, 0).epoch(0))
    optimizer = build_optimizer(model, settings)
    best = {1: float("inf"), 2: float("inf")}
    steps = 1
    for round_ in range(rounds + 1):
        for n in (1, 2):
            torch.set_num_threads(n)
            start = time.perf_counter()
            for _ in range(steps):
                train_step(model, optimizer, step_batch)
            seconds = (time.perf_counter() - start) / steps
            if round_:
                best[n] = min(best[n], seconds)
        if round_ == 0:
            steps = max(1, round(min_seconds / max(seconds, 1e-6)))
    return best


def grid() -> list[tuple[str, ModelConfig, int, int, int]]:
    rows = []
    for cell, hidden, batch in itertools.product(("lstm", "gru", "rnn"), (128, 256, 384, 512), (8, 32, 64)):
        rows.append((f"{cell} 1x{hidden} b{batch}", ModelConfig(cell=cell, embedding_size=64, hidden_size=hidden),
                     65, batch, 64))
    return rows


def pipeline_runs(params_path: Path) -> list[tuple[str, ModelConfig, int, int, int, str]]:
    params = load_params(params_path)
    rows = []
    for name, run in params.train.runs.items():
        s = params.train.settings_for(name)
        vocab_file = ROOT / "data" / "tokens" / run.dataset / "vocab.json"
        vocab = len(json.loads(vocab_file.read_text())["tokens"]) if vocab_file.exists() else 100
        rows.append((name, run.model, vocab, s.batch_size, s.bptt, s.batching))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=0.15)
    parser.add_argument("--runs-only", action="store_true", help="only the runs of --params")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    shapes = [] if args.runs_only else [(*row, "stream") for row in grid()]
    shapes += pipeline_runs(args.params)
    print("| shape | recurrent MFLOP per time step | 1 thread ms/step | 2 threads ms/step | 2 vs 1 | plan |")
    print("|---|---|---|---|---|---|")
    out = []
    for label, cfg, vocab, batch, bptt, batching in shapes:
        best = shape_timings(cfg, vocab, batch, bptt, batching, args.rounds, args.min_seconds)
        model = build_model(cfg, vocab)
        work = recurrent_step_flops(model, batch) / 1e6
        plan = thread_plan(model, batch, cpus=2)
        speedup = best[1] / best[2]
        print(f"| {label} | {work:.1f} | {best[1] * 1e3:.1f} | {best[2] * 1e3:.1f} | {speedup:.2f}x | {plan} |",
              flush=True)
        out.append({"shape": label, "mflop_per_time_step": work, "one": best[1], "two": best[2], "plan": plan})
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
