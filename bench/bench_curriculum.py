"""What the curriculum's generic pieces cost against the plainest torch equivalent, in the same run.

1. ``brnn``: seqlab's concatenated BRNN (:class:`pipeline.models.brnn.BidirectionalStack`: a forward and a
   backward single-layer stack per layer, over any registry cell, reversing each row within its length) against
   one fused ``nn.LSTM(bidirectional=True)`` call, forward + backward, at the tagging stage's size
   (batch 32, window 64, embedding 32, hidden 64) and a larger one (2 layers of 256).
2. ``loop``: :func:`pipeline.training.supervised.train_supervised` (clipping with its statistics, per-step
   figures handed to a tracker) against a minimal loop (zero_grad, backward, ``clip_grad_norm_``, step) on the same
   tagger, batches and optimizer.

Interleaved repeats at a fixed thread count; medians; the 1-minute load average before and after is printed
(another process on the 2 cores makes every figure worse, so compare ratios within a run only).

    .venv/bin/python bench/bench_curriculum.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import CurriculumTraining, ModelConfig
from pipeline.models import build_head_model
from pipeline.models.brnn import BidirectionalStack
from pipeline.models.registry import MODEL_REGISTRY
from pipeline.tracking import NullTracker
from pipeline.training.supervised import train_supervised

SIZES = {"tagging": dict(embedding=32, hidden=64, layers=1), "large": dict(embedding=128, hidden=256, layers=2)}


def _seconds(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench_brnn(size: dict, steps: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    cfg = ModelConfig(cell="lstm", embedding_size=size["embedding"], hidden_size=size["hidden"],
                      num_layers=size["layers"])
    ours = BidirectionalStack(cfg, MODEL_REGISTRY["lstm"])
    fused = nn.LSTM(size["embedding"], size["hidden"], num_layers=size["layers"], bidirectional=True, batch_first=True)
    x = torch.randn(32, 64, size["embedding"], requires_grad=True)

    def step(module):
        def run():
            out = module(x)
            (out[0] if isinstance(out, tuple) else out).sum().backward()
        return run

    timings = {"ours": [], "fused": []}
    for repeat in range(repeats + 1):  # repeat 0 warms up both
        order = [("ours", ours), ("fused", fused)][:: 1 if repeat % 2 else -1]
        for name, module in order:
            seconds = _seconds(step(module), steps)
            if repeat:
                timings[name].append(seconds)
    return statistics.median(timings["ours"]), statistics.median(timings["fused"])


def bench_loop(steps: int, repeats: int) -> tuple[float, float]:
    settings = CurriculumTraining(steps=steps, batch_size=32, lr=0.005, eval_every_steps=steps, log_every_steps=10)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randint(3, 69, (32, 64), generator=generator), torch.randint(0, 2, (32, 64), generator=generator))
               for _ in range(steps)]

    def loss_fn(model, batch):
        ids, tags = batch
        return F.cross_entropy(model(ids).reshape(-1, 2), tags.reshape(-1))

    def model():
        torch.manual_seed(0)
        return build_head_model("tagger", ModelConfig(cell="lstm", embedding_size=32, hidden_size=64), 69, 2)

    def ours() -> float:
        start = time.perf_counter()
        train_supervised(model(), lambda step: batches[step - 1], loss_fn, settings, tracker=NullTracker())
        return (time.perf_counter() - start) / steps

    def minimal() -> float:
        m = model()
        optimizer = torch.optim.Adam(m.parameters(), lr=0.005, foreach=True)
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(m, batch).backward()
            nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            optimizer.step()
        return (time.perf_counter() - start) / steps

    timings = {"ours": [], "minimal": []}
    for repeat in range(repeats + 1):
        for name, fn in [("ours", ours), ("minimal", minimal)][:: 1 if repeat % 2 else -1]:
            seconds = fn()
            if repeat:
                timings[name].append(seconds)
    return statistics.median(timings["ours"]), statistics.median(timings["minimal"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, load before {os.getloadavg()[0]:.2f}")
    for name, size in SIZES.items():
        ours, fused = bench_brnn(size, args.steps, args.repeats)
        print(f"brnn {name:8s} ({size['layers']}x{size['hidden']}): seqlab {ours * 1e3:7.2f} ms/step, "
              f"nn.LSTM(bidirectional) {fused * 1e3:7.2f} ms/step, ratio {ours / fused:.2f}")
    ours, minimal = bench_loop(args.steps * 3, args.repeats)
    print(f"loop tagger 1x64: train_supervised {ours * 1e3:6.2f} ms/step, minimal loop {minimal * 1e3:6.2f} ms/step, "
          f"ratio {ours / minimal:.2f}")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
