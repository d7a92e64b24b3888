"""PyTorch's recurrent layers on the CPU: forward + backward time of ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM``, with
oneDNN (``torch.backends.mkldnn``) on and off, at the hidden sizes seqlab's runs use.

Explains a figure of the pipeline's timings: on the CPU only the LSTM has a oneDNN kernel, so a GRU, which does
three quarters of an LSTM's arithmetic, takes longer than the LSTM of the same size wherever the per-time-step
overhead dominates (small hidden sizes: the curriculum's models, the name and music runs).  Times are the
fastest of ``--rounds`` interleaved rounds (cells and settings alternate), each the mean of ``--reps`` steps on
random data (speed does not depend on the values), and every row is also given as a ratio to the LSTM with
oneDNN measured in the same round.

    .venv/bin/python bench/bench_cells.py                      # 1 thread, batch 32, 80 steps, hidden 32/128/256
    .venv/bin/python bench/bench_cells.py --threads 2 --hidden 256 512
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch


def step_ms(layer: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    """Mean milliseconds of one forward + backward pass of ``layer`` on ``x`` (after two warm-up passes)."""
    for _ in range(2):
        layer(x)[0].sum().backward()
    start = time.perf_counter()
    for _ in range(reps):
        layer(x)[0].sum().backward()
    return (time.perf_counter() - start) / reps * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=80, help="time steps per sequence")
    parser.add_argument("--input", type=int, default=32, help="input (embedding) size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message="TF32 acceleration")  # printed when oneDNN is switched
    cells = ("LSTM", "GRU", "RNN")
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.steps} steps, input "
          f"{args.input}; load {os.getloadavg()[0]:.2f}", flush=True)
    print("| hidden | cell | oneDNN on ms | oneDNN off ms | on / LSTM on | off / on |\n|---|---|---|---|---|---|")
    for hidden in args.hidden:
        layers = {cell: getattr(torch.nn, cell)(args.input, hidden, batch_first=True) for cell in cells}
        x = torch.randn(args.batch, args.steps, args.input)
        best: dict[tuple[str, bool], float] = {}
        for _ in range(args.rounds):
            for cell in cells:
                for onednn in (True, False):
                    with torch.backends.mkldnn.flags(enabled=onednn):
                        ms = step_ms(layers[cell], x, args.reps)
                    best[cell, onednn] = min(ms, best.get((cell, onednn), float("inf")))
        for cell in cells:
            on, off = best[cell, True], best[cell, False]
            print(f"| {hidden} | {cell} | {on:.2f} | {off:.2f} | {on / best['LSTM', True]:.2f} | {off / on:.2f} |")
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
