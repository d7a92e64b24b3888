"""Sampling speed: batched vs one sequence at a time, and oneDNN on vs off for the step-by-step loop.

Usage: ``python bench/bench_sampling.py [--threads 1] [--repeats 5] [--cells lstm,gru,rnn]``

1. ``sample(n=N)`` (one forward call per token for all N sequences) against N calls of ``sample(n=1)``, same
   model, same run, interleaved; tokens/s and the ratio.
2. The step loop itself (one ``model(token, state)`` call per token, as sampling does) with oneDNN enabled
   and disabled, at batch 1 and batch N, for each fused cell.  This is what sampling.py's choice rests on.

Weights are random: speed does not depend on them, and ``eos_id=None`` makes every sample full length.
Medians of interleaved repeats; the thread count is fixed and the load average is printed, since the
machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from pipeline.config import ModelConfig
from pipeline.models import build_model
from pipeline.models.sampling import onednn_enabled, sample


def tokens_per_s(fn, tokens: int, repeats: int) -> list[float]:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def bench_batched(model, batch: int, length: int, repeats: int) -> None:
    def batched():
        sample(model, n=batch, max_length=length, eos_id=None, prime=[2], seed=0)

    def one_at_a_time():
        for i in range(batch):
            sample(model, n=1, max_length=length, eos_id=None, prime=[2], seed=i)

    batched_rates, single_rates = [], []
    for _ in range(repeats):  # interleave the two, one repeat each per round
        batched_rates += tokens_per_s(batched, batch * length, 1)
        single_rates += tokens_per_s(one_at_a_time, batch * length, 1)
    b, s = statistics.median(batched_rates), statistics.median(single_rates)
    print(f"  sample(n={batch}) batched      {b:10,.0f} tokens/s")
    print(f"  {batch} x sample(n=1)            {s:10,.0f} tokens/s")
    print(f"  batched / one-at-a-time       {b / s:10.1f}x")


def step_loop(model, batch: int, length: int) -> None:
    token = torch.full((batch, 1), 2, dtype=torch.long)
    state = None
    with torch.inference_mode():
        for _ in range(length):
            _, state = model(token, state)


def bench_onednn(cell: str, hidden: int, layers: int, vocab: int, batches: list[int], length: int,
                 repeats: int) -> None:
    model = build_model(ModelConfig(cell=cell, embedding_size=64, hidden_size=hidden, num_layers=layers), vocab).eval()
    for batch in batches:
        rates = {True: [], False: []}
        for _ in range(repeats):
            for enabled in (True, False):
                with onednn_enabled(enabled):
                    rates[enabled] += tokens_per_s(lambda: step_loop(model, batch, length), batch * length, 1)  # noqa: B023
        on, off = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"  {cell:5s} {layers}x{hidden} batch {batch:3d}: oneDNN on {on:9,.0f}  off {off:9,.0f} tokens/s"
              f"  off/on {off / on:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cells", default="lstm,gru,rnn")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=96)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average before: {os.getloadavg()}")

    print(f"\n1. batched vs one-at-a-time sampling (lstm {args.layers}x{args.hidden}, vocab {args.vocab}, "
          f"{args.batch} samples x {args.length} tokens)")
    cfg = ModelConfig(cell="lstm", embedding_size=64, hidden_size=args.hidden, num_layers=args.layers)
    bench_batched(build_model(cfg, args.vocab), args.batch, args.length, args.repeats)

    print(f"\n2. step-by-step forward (one call per token, {args.length} tokens), oneDNN on vs off")
    for cell in args.cells.split(","):
        bench_onednn(cell, args.hidden, args.layers, args.vocab, [1, args.batch], args.length, args.repeats)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
