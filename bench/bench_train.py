"""Training speed: seqlab's ``fit()`` (tracking on) against a minimal hand-written loop over the same torch module.

Both loops train the same ``pipeline.models`` LSTM from the same initial weights on the same synthetic ids (speed
does not depend on the values), with the same optimizer (Adam), clipping (global norm 1.0), batch and window,
interleaved in one process at a fixed thread count (seqlab first in odd repeats, the minimal loop first in even
ones).  seqlab's time is ``fit``'s own training time (``train_seconds``: every step with its per-step statistics,
the interval logging to a real MLflow sqlite store at the default rate, excluding only the one validation at the
end); the minimal loop's is the wall time of the same number of steps.  Then:

* a phase breakdown of seqlab's step (:func:`pipeline.training.step.train_step`, timed through its ``phase``
  argument: forward+backward, clipping and norms, optimizer, statistics+logging);
* peak resident memory of each loop, each in a fresh child process (after imports and after training).

Configurations: ``char``: LSTM 2x512, embedding 128, vocab 65, batch 64, window 128;
``word``: LSTM 2x650, embedding 650, vocab 10,000, batch 20, window 35; ``small``: the default matrix's 1x256
(names, text); ``tiny``: the default chorales runs (1x256, vocab 380, batch 8, window 32).

    .venv/bin/python bench/bench_train.py                      # all, 2 repeats, threads 2
    .venv/bin/python bench/bench_train.py --configs word --steps 30 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import ModelConfig, SampleConfig, TrainSettings
from pipeline.models import build_model

CONFIGS = {
    "char": dict(vocab=65, embedding=128, hidden=512, layers=2, batch=64, bptt=128, steps=16),
    "word": dict(vocab=10_000, embedding=650, hidden=650, layers=2, batch=20, bptt=35, steps=40),
    "small": dict(vocab=65, embedding=64, hidden=256, layers=1, batch=32, bptt=64, steps=150),
    "tiny": dict(vocab=380, embedding=64, hidden=256, layers=1, batch=8, bptt=32, steps=300),
}


def make_model(c: dict):
    torch.manual_seed(0)
    return build_model(ModelConfig(cell="lstm", embedding_size=c["embedding"], hidden_size=c["hidden"],
                                   num_layers=c["layers"]), c["vocab"])


def make_ids(c: dict, steps: int) -> np.ndarray:
    n = c["batch"] * (steps * c["bptt"] + 2)
    ids = np.random.default_rng(0).integers(3, c["vocab"], n)
    ids[:: 200] = 2  # <eos> now and then, as in real data
    return ids


DEVICE, TRACKING = "cpu", "mlflow"  # set by --device / --tracking


def settings(c: dict, steps: int, threads: int) -> TrainSettings:
    """The default params' logging rate (log every 25 steps, layer norms every 100); no mid-run checkpoint."""
    return TrainSettings(device=DEVICE, threads=threads if DEVICE == "cpu" else 0, batch_size=c["batch"], bptt=c["bptt"], epochs=1,
                         max_steps=steps, lr=1e-3, schedule="none", clip="norm", clip_threshold=1.0,
                         checkpoint_every_steps=10**9, eval_batch_size=1, eval_bptt=c["bptt"], tracking=TRACKING,
                         progress=False, sample=SampleConfig(n=0))


def run_seqlab(model, ids, c: dict, steps: int, threads: int, store: Path) -> dict:
    from pipeline.tracking.factory import open_tracker
    from pipeline.training.loop import fit

    s = settings(c, steps, threads)
    tracker = open_tracker(TRACKING, "bench", "lstm", tracking_uri=f"sqlite:///{store}")
    with tempfile.TemporaryDirectory() as out:
        m = fit(model, ids, ids[: 4 * c["bptt"]], s, out, tracker=tracker).metrics
    tokens = m["steps"] * c["batch"] * c["bptt"]
    return {"tokens_per_s": tokens / m["train_seconds"], "tracking_share": m["tracking_share"]}


def run_minimal(model, ids, c: dict, steps: int) -> dict:
    """What a person writes by hand: slice, forward, cross-entropy, backward, clip_grad_norm_, Adam step."""
    data = torch.from_numpy(ids[: c["batch"] * (len(ids) // c["batch"])]).view(c["batch"], -1).to(DEVICE)
    model.to(DEVICE).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if DEVICE == "cuda" else contextlib.nullcontext()
    state, t = None, c["bptt"]
    _sync()
    start = time.perf_counter()
    for i in range(steps):
        x, y = data[:, i * t : (i + 1) * t], data[:, i * t + 1 : (i + 1) * t + 1]
        with amp:
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state = tuple(s.detach() for s in state)
    _sync()
    return {"tokens_per_s": steps * c["batch"] * t / (time.perf_counter() - start)}


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# Which share of seqlab's step each phase of train_step (and the loop's statistics) counts in.
PHASE_SHARES = {"forward": "forward+backward", "zero_grad": "forward+backward", "backward": "forward+backward",
                "layer_norms": "clipping+norms", "clip": "clipping+norms", "finite_check": "statistics+logging",
                "update": "optimizer", "statistics": "statistics+logging"}


def phase_breakdown(model, ids, c: dict, steps: int) -> dict:
    """Shares of seqlab's step (``train_step``, the loop's own) by phase, with the loop's per-step statistics
    and logging (CPU: timers are exact, nothing runs asynchronously)."""
    from pipeline.tracking import NullTracker
    from pipeline.training.batching import TrainBatches
    from pipeline.training.meter import StepMeter
    from pipeline.training.optim import build_optimizer
    from pipeline.training.step import train_step

    s = settings(c, steps, torch.get_num_threads())
    batches, optimizer = TrainBatches(ids, "stream", c["batch"], c["bptt"]), build_optimizer(model, s)
    params, meter, tracker = list(model.parameters()), StepMeter(s.log_every_steps, 1, s.clip, s.clip_threshold), NullTracker()
    phases = dict.fromkeys(("forward+backward", "clipping+norms", "optimizer", "statistics+logging"), 0.0)

    @contextlib.contextmanager
    def timed(phase: str):
        start = time.perf_counter()
        yield
        phases[PHASE_SHARES[phase]] += time.perf_counter() - start

    state = None
    for step, batch in enumerate(batches.epoch(0), start=1):
        result = train_step(model, optimizer, batch, state, params=params, clip=s.clip, clip_threshold=s.clip_threshold,
                            check_finite=True, phase=timed,
                            layer_norms_of=model if step % s.layer_norms_every_steps == 0 else None)
        with timed("statistics"):
            if result.layer_norms is not None:
                meter.record_layer_norms(step, *result.layer_norms)
            meter.record(step, result.loss, result.clip)
            if meter.full:
                interval = meter.drain()
                for i, st in enumerate(interval.steps):
                    tracker.log_metrics({"grad_norm": interval.grad_norm[i]}, step=st)
            state = model.detach_state(result.loss.state)
        if step >= steps:
            break
    total = sum(phases.values())
    return {name: seconds / total for name, seconds in phases.items()}


def memory_child(which: str, config: str, steps: int, threads: int) -> None:
    """Run in a fresh process: print peak RSS (MB) after imports and after a few training steps."""
    torch.set_num_threads(threads)
    c = CONFIGS[config]
    model, ids = make_model(c), make_ids(c, steps)
    import mlflow  # noqa: F401 - both children pay the same imports, so the difference is the loop's

    base = peak_rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        if which == "seqlab":
            run_seqlab(model, ids, c, steps, threads, Path(folder) / "mlflow.db")
        else:
            run_minimal(model, ids, c, steps)
    print(json.dumps({"base_mb": round(base), "peak_mb": round(peak_rss_mb())}))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).  Not ``ru_maxrss``: Linux carries that across exec, so a
    child started by a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_memory(which: str, config: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", which, config, "--threads", str(threads)],
                         capture_output=True, text=True, check=True, env={**os.environ, "CI": "true"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(name: str, repeats: int, threads: int, steps: int | None, store: Path) -> dict:
    c = dict(CONFIGS[name])
    steps = steps or c["steps"]
    ids, initial = make_ids(c, steps), make_model(c)
    results: dict[str, list[dict]] = {"seqlab": [], "minimal": []}
    for rep in range(repeats):
        order = ("seqlab", "minimal") if rep % 2 == 0 else ("minimal", "seqlab")
        for which in order:
            model = copy.deepcopy(initial)
            r = run_seqlab(model, ids, c, steps, threads, store) if which == "seqlab" else run_minimal(
                model, ids, c, steps)
            results[which].append(r)
            print(f"  {name} rep {rep + 1} {which:8s} {r['tokens_per_s']:10,.0f} tokens/s", flush=True)
    seqlab = statistics.median(r["tokens_per_s"] for r in results["seqlab"])
    minimal = statistics.median(r["tokens_per_s"] for r in results["minimal"])
    return {"config": name, "steps": steps, "seqlab": seqlab, "minimal": minimal, "ratio": seqlab / minimal,
            "tracking_share": statistics.median(r["tracking_share"] for r in results["seqlab"]),
            "phases": phase_breakdown(copy.deepcopy(initial), ids, c, min(steps, 30)) if DEVICE == "cpu" else {},
            "memory": {w: child_memory(w, name, threads) for w in ("seqlab", "minimal")} if DEVICE == "cpu" else
            cuda_memory(initial, ids, c, threads, store)}


def cuda_memory(initial, ids, c: dict, threads: int, store: Path) -> dict:
    """Peak CUDA memory allocated by each loop (a few steps each, counters reset in between)."""
    out = {}
    for which in ("seqlab", "minimal"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model = copy.deepcopy(initial)
        if which == "seqlab":
            run_seqlab(model, ids, c, 5, threads, store)
        else:
            run_minimal(model, ids, c, 5)
        out[which] = {"peak_mb": round((torch.cuda.max_memory_allocated() - base) / 2**20), "base_mb": 0}
    return out


def thread_scan(names: list[str], repeats: int, steps: int | None, store: Path) -> None:
    """seqlab's tokens/s at 1 and 2 intra-op threads, interleaved (what ``threads: 0`` chooses between)."""
    print("\n| config | 1 thread tokens/s | 2 threads tokens/s | 2 / 1 |\n|---|---|---|---|")
    for name in names:
        c = dict(CONFIGS[name])
        n = steps or c["steps"]
        ids, initial = make_ids(c, n), make_model(c)
        speed: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(repeats):
            for threads in ((1, 2) if rep % 2 == 0 else (2, 1)):
                torch.set_num_threads(threads)
                speed[threads].append(run_seqlab(copy.deepcopy(initial), ids, c, n, threads, store)["tokens_per_s"])
        one, two = statistics.median(speed[1]), statistics.median(speed[2])
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f} |", flush=True)


def tracking_overhead(names: list[str], repeats: int, threads: int, steps: int | None, store: Path) -> None:
    """seqlab's tokens/s with MLflow tracking against the same loop with tracking off, interleaved."""
    global TRACKING
    print("\n| config | tracking none tokens/s | tracking mlflow tokens/s | overhead | points per step |")
    print("|---|---|---|---|---|")
    for name in names:
        c = dict(CONFIGS[name])
        n = steps or c["steps"]
        ids, initial = make_ids(c, n), make_model(c)
        speed: dict[str, list[float]] = {"none": [], "mlflow": []}
        for rep in range(repeats):
            for TRACKING in (("none", "mlflow") if rep % 2 == 0 else ("mlflow", "none")):
                speed[TRACKING].append(run_seqlab(copy.deepcopy(initial), ids, c, n, threads, store)["tokens_per_s"])
        off, on = statistics.median(speed["none"]), statistics.median(speed["mlflow"])
        print(f"| {name} | {off:,.0f} | {on:,.0f} | {1 - on / off:.2%} | 3 + 5/25 + layer norms/100 |", flush=True)
    TRACKING = "mlflow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["char", "word", "small"], choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="steps per measurement (default: per config)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--thread-scan", action="store_true", help="compare 1 and 2 threads (seqlab only)")
    parser.add_argument("--tracking-overhead", action="store_true", help="seqlab with and without MLflow")
    parser.add_argument("--tracking", default="mlflow", choices=["mlflow", "none"])
    parser.add_argument("--memory-child", nargs=2, metavar=("WHICH", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["CI"] = "true"  # no progress bar
    global DEVICE, TRACKING
    DEVICE, TRACKING = args.device, args.tracking
    if args.memory_child:
        memory_child(*args.memory_child, steps=3, threads=args.threads)
        return
    if args.tracking_overhead:
        torch.set_num_threads(args.threads)
        print(f"load average before: {os.getloadavg()}")
        with tempfile.TemporaryDirectory() as folder:
            tracking_overhead(args.configs, args.repeats, args.threads, args.steps, Path(folder) / "mlflow.db")
        print(f"load average after: {os.getloadavg()}")
        return
    if args.thread_scan:
        print(f"load average before: {os.getloadavg()}")
        with tempfile.TemporaryDirectory() as folder:
            thread_scan(args.configs, args.repeats, args.steps, Path(folder) / "mlflow.db")
        print(f"load average after: {os.getloadavg()}")
        return
    torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, tracking {TRACKING}, "
          f"load average before: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            rows.append(bench(name, args.repeats, args.threads, args.steps, Path(folder) / "mlflow.db"))
    print(f"load average after: {os.getloadavg()}")
    print("\n| config | steps | seqlab tokens/s | minimal tokens/s | seqlab / minimal | tracking share | "
          "fwd+bwd | clip+norms | optimizer | stats+logging | peak MB seqlab (after imports) | peak MB minimal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, mem = r["phases"] or dict.fromkeys(("forward+backward", "clipping+norms", "optimizer",
                                                "statistics+logging"), math.nan), r["memory"]
        print(f"| {r['config']} | {r['steps']} | {r['seqlab']:,.0f} | {r['minimal']:,.0f} | {r['ratio']:.3f} | "
              f"{r['tracking_share']:.2%} | {p['forward+backward']:.1%} | {p['clipping+norms']:.1%} | "
              f"{p['optimizer']:.1%} | {p['statistics+logging']:.2%} | {mem['seqlab']['peak_mb']} "
              f"({mem['seqlab']['base_mb']}) | {mem['minimal']['peak_mb']} ({mem['minimal']['base_mb']}) |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
