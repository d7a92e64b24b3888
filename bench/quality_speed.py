"""Training speed of the quality benchmark's configurations (BENCHMARKS.md, "Speed"), against the machine's ceiling.

For each run of ``bench/quality/params.yaml`` (``shakespeare-144s``, ``shakespeare-10min``, ``ptb-15min``,
``ptb-60min``) the model, optimizer, clipping, schedule, batches and autocast are built with the functions
``stages.train`` uses (``build_model``, ``build_optimizer``, ``build_scheduler``, ``TrainBatches``), and the step
is the training loop's own, :func:`pipeline.training.step.train_step`: stream windows of (batch_size, bptt), the
state carried and detached, the loss under autocast, zero_grad, backward, clip, the finite check, Adam; then, as
the loop does, the per-step statistics and the schedule.  Left out: the per-parameter gradient norms every 500
steps, validation and checkpoints (not training time).  The ids are random
(speed does not depend on their values, except through the adaptive softmax: see "Ids" below), so no corpus is needed.

1. **Ceiling**: the best of a few 2048^3 ``torch.mm`` in float32 and in bfloat16 (where the CPU has it natively:
   elsewhere bf16 is left out, ceiling and ablation) at every thread count used
   (GFLOP/s = 2 n^3 / seconds), at the start and at the end of the run; shares use the better of the two.
2. **Tokens/s** (input positions per second, as the loop counts them) of the chosen configuration: the median of
   ``--repeats`` timings of ``--steps`` steps, interleaved with the ablation variants, each timing after one
   untimed step (thread pool and caches warm again after the switch).  **FLOPs per token**, analytic, forward
   (a multiply-add = 2 FLOPs; biases, the gates' element-wise maths, embedding lookups, dropout and exponentials
   are left out):

   * LSTM layer: ``2 x 4H x (in + H)`` (4 gates; ``in`` = E for the first layer, H above);
   * full softmax: ``2 x H x V``;
   * adaptive softmax (``torch.nn.AdaptiveLogSoftmaxWithLoss``): head ``2 x H x (cutoffs[0] + n_tails)``, plus
     for tail i (projection H -> h_i = H // div^(i+1), output h_i -> o_i ids) ``2 x (H x h_i + h_i x o_i)``
     weighted by p_i, the share of target tokens whose id falls in that tail (only those rows run the tail);

   training ~ 3 x forward (backward = gradients for inputs and for weights).  The achieved share is
   3 x forward FLOPs x tokens/s over the ceiling at the same thread count, for bf16 and for fp32.  Under bf16
   autocast the adaptive softmax still runs in float32 (see ``pipeline/models/softmax.py``).
3. **Where a step's time goes**: ``torch.profiler`` (CPU) over ``--profile-steps`` steps of the same step with
   ``record_function`` scopes: around the data fetch, the statistics, the schedule and the state detach, around
   each phase of ``train_step`` (its ``phase`` argument: the loss, zero_grad, backward, clipping, the finite check,
   ``optimizer.step``), and, inside the model, forward hooks on ``embedding``/``embedding_dropout``, ``rnn``,
   ``dropout`` and ``output``, installed only while profiling.  What the loss phase runs outside those modules
   is the loss on the output (the ``.float()`` cast of the logits and ``cross_entropy``, or
   ``AdaptiveSoftmax.nll_sum``, which the model calls directly) and a few view ops: it counts as softmax.  Each
   profiler event's *self* time (its time minus its children's: together exactly the steps' wall time) goes to the
   innermost scope above it.  The backward pass is attributed to where its forward ran: every autograd node
   (``autograd::engine::evaluate_function: XBackward0``) carries the sequence number of the forward op that
   created it, so ``MkldnnRnnLayerBackward0`` goes to ``recurrent``, the output layer's ``MmBackward0`` and
   ``LogSoftmaxBackward0`` to ``softmax``, the embedding's backward to ``other``, and so on; nodes that no forward
   op claims fall back to their name (``rnn``/``lstm``/``gru`` -> recurrent, ``softmax``/``nll`` -> softmax,
   else other), and the JSON says how much did.  Categories:

   * **recurrent**: the stack's forward (incl. the bf16 casts of its weights) and all its backward nodes;
   * **softmax**: the output layer with the loss: linear / head and tails, index ops of the adaptive softmax,
     the float cast, log-softmax, NLL, the mean of the loss, and their backward nodes;
   * **optimizer**: ``zero_grad``, clipping (the ``_foreach`` norm and scale), ``Adam.step`` and the schedule;
   * **other**: embedding and dropouts (forward and backward), the autograd engine's own time and gradient
     accumulation, the data fetch, the finite check, the state detach, Python between ops.

   The profiler adds a few microseconds per op, so a profiled step is usually a little slower than a timed one
   (both are printed) and the shares of small, many-op parts (optimizer, other) are inflated the most.
4. **Ablation**, tokens/s of each variant over the chosen configuration's, all interleaved in the same run:
   fp32 vs bf16; for the adaptive runs a full softmax, and a full softmax with tied weights (E = H); the other
   thread counts of ``--thread-counts``; batch sizes 16/32/64.  Each variant has its own model and optimizer.

**Ids**: drawn i.i.d. from the unigram distribution of ``bench/out/quality/tokens/<dataset>/train.npy`` when it
exists (ids are frequency-ranked, so the adaptive softmax's tail shares are PTB's real ones), else from a Zipf law
(p ~ 1/rank over ids 2..V-1, stated in the output).  Vocabulary sizes come from that folder's ``vocab.json``, else
67 (shakespeare-char) and 10,003 (ptb-word).

Run it on a quiet machine (the load average is printed at the start and the end); ``--quick`` is a smoke test
(2 steps, 1 repeat) that writes ``speed-quick.json`` so it never overwrites real figures:

    .venv/bin/python bench/quality_speed.py                          # all four: ~5 min on 2 idle cores
    .venv/bin/python bench/quality_speed.py --configs ptb-15min --steps 30 --repeats 5
    .venv/bin/python bench/quality_speed.py --quick --threads 1 --thread-counts 1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.profiler import record_function

from pipeline.config import ModelConfig, TrainSettings, load_params
from pipeline.models import build_model
from pipeline.runtime import set_threads
from pipeline.training.batching import TrainBatches
from pipeline.training.devices import autocast_dtype, bf16_unsupported_reason
from pipeline.training.meter import StepMeter
from pipeline.training.optim import build_optimizer, build_scheduler
from pipeline.training.step import no_phase, train_step

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "bench/quality/params.yaml"
TOKENS = ROOT / "bench/out/quality/tokens"
OUT, QUICK_OUT = ROOT / "bench/out/quality/speed.json", ROOT / "bench/out/quality/speed-quick.json"
RUNS = ("shakespeare-144s", "shakespeare-10min", "ptb-15min", "ptb-60min")
DEFAULT_VOCAB = {"shakespeare-char": 67, "ptb-word": 10_003}
BATCH_SIZES = (16, 32, 64)
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "lstm_peephole": 4, "gru_minimal": 2}  # weight blocks per layer
CATEGORIES = ("recurrent", "softmax", "optimizer", "other")
SCOPE = "seqlab-speed::"  # record_function names: SCOPE + label, label = "<category>" or "<category>:<part>"
STEP_LABEL = "other:between ops"  # the step scope's own self time: Python and glue between the scoped parts
NODE = "autograd::engine::evaluate_function: "
WINDOWS = 64  # windows per generated stream: an epoch restart (state reset) every 64 steps, as rare as it is cheap


# --------------------------------------------------------------------------- the machine's ceiling


def matmul_gflops(threads: int, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) ``torch.mm`` at ``threads`` threads."""
    set_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))  # (n, n) each
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: packing buffers, the thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def ceiling(thread_counts: list[int], n: int, repeats: int) -> dict[int, dict[str, float]]:
    """fp32 and bf16 GFLOP/s per thread count.  bf16 only where the CPU runs it natively: elsewhere (an AVX2-only
    CPU) it is emulated, a 2048^3 product takes minutes and no recipe trains in it, so its ceiling is NaN."""
    native_bf16 = bf16_unsupported_reason("cpu") is None
    return {t: {"fp32": matmul_gflops(t, torch.float32, n, repeats),
                "bf16": matmul_gflops(t, torch.bfloat16, n, repeats) if native_bf16 else math.nan}
            for t in thread_counts}


# --------------------------------------------------------------------------- data and FLOPs


def vocab_size(dataset: str) -> tuple[int, str]:
    path = TOKENS / dataset / "vocab.json"
    if path.exists():
        return len(json.loads(path.read_text(encoding="utf-8"))["tokens"]), str(path.relative_to(ROOT))
    if dataset not in DEFAULT_VOCAB:
        raise SystemExit(f"dataset {dataset!r}: no {path} and no default vocabulary size (tokenize it first)")
    return DEFAULT_VOCAB[dataset], "assumed"


def unigram(dataset: str, vocab: int) -> tuple[np.ndarray, str]:
    """The distribution random ids are drawn from, and where it comes from."""
    path = TOKENS / dataset / "train.npy"
    if path.exists():
        counts = np.bincount(np.load(path), minlength=vocab)[:vocab].astype(np.float64)  # (V,)
        return counts / counts.sum(), f"unigram frequencies of {path.relative_to(ROOT)}"
    ids = np.arange(vocab, dtype=np.float64)  # id 2 (<eos>) is rank 1; <pad> and <unk> never drawn
    p = np.where(ids >= 2, 1.0 / np.maximum(ids - 1, 1), 0.0)
    return p / p.sum(), "ASSUMED Zipf law (p ~ 1/rank over ids 2..V-1): no train.npy"


def tail_shares(cfg: ModelConfig, p: np.ndarray) -> list[float]:
    """Share of target tokens falling in each adaptive-softmax tail (ids are frequency ranked)."""
    if cfg.softmax != "adaptive":
        return []
    cut = [*cfg.cutoffs, len(p)]
    return [float(p[cut[i] : cut[i + 1]].sum()) for i in range(len(cut) - 1)]


def forward_flops(cfg: ModelConfig, vocab: int, shares: list[float]) -> dict[str, float]:
    """Analytic forward FLOPs per token (see the module docstring), by part."""
    h = cfg.hidden_size
    recurrent = sum(2 * GATES[cfg.cell] * h * ((cfg.embedding_size if layer == 0 else h) + h)
                    for layer in range(cfg.num_layers))
    if cfg.softmax == "adaptive":
        cut = [*cfg.cutoffs, vocab]
        softmax = 2 * h * (cut[0] + len(cut) - 1)  # the head: frequent ids + one logit per tail
        for i, share in enumerate(shares):
            width = int(h // cfg.div_value ** (i + 1))
            softmax += share * 2 * (h * width + width * (cut[i + 1] - cut[i]))
    else:
        softmax = 2 * h * vocab
    return {"recurrent": recurrent, "softmax": softmax, "total": recurrent + softmax}


def describe(cfg: ModelConfig, vocab: int) -> str:
    out = f"adaptive {list(cfg.cutoffs)}" if cfg.softmax == "adaptive" else "full softmax"
    tied = ", tied" if cfg.tie_weights else ""
    return f"{cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}, E {cfg.embedding_size}, {out}{tied}, V {vocab:,}"


# --------------------------------------------------------------------------- the training step


# The scope of each phase of train_step.  The loss phase's own ops, outside the model's hooked modules, are the
# loss on the output layer: softmax.
PHASE_SCOPES = {"forward": "softmax:loss", "zero_grad": "optimizer:zero_grad", "backward": "other:autograd engine",
                "layer_norms": "other:statistics", "clip": "optimizer:clip", "finite_check": "other:statistics",
                "update": "optimizer:step"}


def _no_scope(label: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _scope(label: str) -> contextlib.AbstractContextManager:
    return record_function(SCOPE + label)


def _phase_scope(phase: str) -> contextlib.AbstractContextManager:
    return _scope(PHASE_SCOPES[phase])


class Runner:
    """One configuration's model, optimizer and batches; :meth:`step` takes the loop's step (with scopes)."""

    def __init__(self, cfg: ModelConfig, s: TrainSettings, vocab: int, ids: np.ndarray, threads: int) -> None:
        if s.batching != "stream":
            raise SystemExit(f"batching {s.batching!r}: only stream runs are measured here")
        self.cfg, self.s, self.vocab, self.threads = cfg, s, vocab, threads
        self.device = torch.device("cpu")
        torch.manual_seed(s.seed)
        self.model = build_model(cfg, vocab).to(self.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.model, s)
        self.scheduler = build_scheduler(self.optimizer, s)
        self.amp = autocast_dtype(self.device, s.precision)
        self.meter = StepMeter(s.log_every_steps, 1, s.clip, s.clip_threshold)
        self.batches = TrainBatches(ids, "stream", s.batch_size, s.bptt, s.seed)
        self.epoch, self.iterator, self.state, self.steps = 0, self.batches.epoch(0), None, 0
        self.scope, self.phase = _no_scope, no_phase

    def step(self) -> int:
        """One optimizer step, as the training loop takes it; returns the tokens (input positions) trained on."""
        scope, s = self.scope, self.s
        with scope("other:data"):
            batch = next(self.iterator, None)
            if batch is None:  # a stream restarts at every epoch, from a zero state (as in the loop)
                self.epoch, self.state = self.epoch + 1, None
                self.iterator = self.batches.epoch(self.epoch)
                batch = next(self.iterator)
            batch = batch.to(self.device, non_blocking=True)
        self.steps += 1
        result = train_step(self.model, self.optimizer, batch, self.state, params=self.params, clip=s.clip,
                            clip_threshold=s.clip_threshold, amp=self.amp, check_finite=True, phase=self.phase)
        if not result.updated:
            raise FloatingPointError(f"loss or gradient not finite at step {self.steps}")
        with scope("other:statistics"):
            self.meter.record(self.steps, result.loss, result.clip)
        with scope("optimizer:schedule"):
            if s.schedule != "plateau":
                self.scheduler.step(self.steps, 0.5)  # mid-run: a cosine rate, as most of a budgeted run has
        with scope("other:state detach"):
            self.state = self.model.detach_state(result.loss.state)
            if self.meter.full:
                self.meter.drain()
        return batch.num_tokens

    def run(self, steps: int) -> tuple[int, float]:
        """(tokens, seconds) of ``steps`` steps at this runner's thread count, after one untimed step."""
        set_threads(self.threads)
        self.step()
        start = time.perf_counter()
        tokens = sum(self.step() for _ in range(steps))
        return tokens, time.perf_counter() - start


@contextlib.contextmanager
def model_scopes(runner: Runner):
    """Profiler scopes inside the model: a forward pre-hook and hook per module (the loss needs none: see
    PHASE_SCOPES)."""
    model = runner.model
    open_scopes: dict[int, list[Any]] = defaultdict(list)
    handles = []

    def hook(module: nn.Module, label: str) -> None:
        def enter(mod, args):
            scope = record_function(SCOPE + label)
            scope.__enter__()
            open_scopes[id(mod)].append(scope)

        def leave(mod, args, output):
            open_scopes[id(mod)].pop().__exit__(None, None, None)

        handles.extend([module.register_forward_pre_hook(enter), module.register_forward_hook(leave)])

    for name, label in (("embedding", "other:embedding"), ("embedding_dropout", "other:embedding"),
                        ("rnn", "recurrent"), ("dropout", "other:dropout"), ("output", "softmax")):
        hook(getattr(model, name), label)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------- the time split


def _fallback(node_name: str) -> str:
    """Category of an autograd node that no forward op claims, from its name."""
    name = node_name.lower()
    if "accumulategrad" in name:
        return "other:gradient accumulation"
    if any(k in name for k in ("rnn", "lstm", "gru")):
        return "recurrent"
    if any(k in name for k in ("softmax", "nll", "cross_entropy", "adaptive")):
        return "softmax"
    return "other:autograd engine"


def classify(events) -> tuple[dict[str, float], dict[str, float]]:
    """Self time (µs) per label over the profiled steps, and bookkeeping (step total, fallback share)."""
    events = sorted(events, key=lambda e: e.time_range.start)
    found: dict[int, tuple[str, Any]] = {}  # id(event) -> ("scope", label) | ("node", node event) | ("none", None)

    def innermost(event) -> tuple[str, Any]:
        chain, node, result = [], event, ("none", None)
        while node is not None:
            if id(node) in found:
                result = found[id(node)]
                break
            if node.name.startswith(NODE):
                result = ("node", node)
                break
            if node.name.startswith(SCOPE):
                label = node.name[len(SCOPE):]
                result = ("scope", STEP_LABEL if label == "step" else label)
                break
            chain.append(node)
            node = node.cpu_parent
        for link in chain:
            found[id(link)] = result
        return result

    creator: dict[tuple[int, int], str] = {}  # (thread, sequence nr) -> label of the forward op that made the node
    for e in events:  # in start order: the last op to record a number is the one that created that node
        kind, what = innermost(e)
        if kind == "scope" and e.sequence_nr >= 0:
            creator[(e.thread, e.sequence_nr)] = what
    labels: dict[str, float] = defaultdict(float)
    fallback = 0.0
    for e in events:
        kind, what = innermost(e)
        if kind == "none":
            continue  # outside the profiled steps
        if kind == "node":
            label = creator.get((what.fwd_thread, what.sequence_nr))
            if label is None:
                label = _fallback(what.name[len(NODE):])
                fallback += e.self_cpu_time_total
        else:
            label = what
        labels[label] += e.self_cpu_time_total
    total = sum(e.cpu_time_total for e in events if e.name == SCOPE + "step")
    return dict(labels), {"step_total_us": total, "fallback_us": fallback, "classified_us": sum(labels.values())}


def profile_split(runner: Runner, steps: int) -> dict[str, Any]:
    set_threads(runner.threads)
    runner.step()
    runner.scope, runner.phase = _scope, _phase_scope
    try:
        with model_scopes(runner), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                with record_function(SCOPE + "step"):
                    runner.step()
    finally:
        runner.scope, runner.phase = _no_scope, no_phase
    labels, book = classify(prof.events())
    by_category = defaultdict(float)
    for label, us in labels.items():
        by_category[label.split(":", 1)[0]] += us
    classified = sum(by_category.values())
    percent = rounded_percent({c: by_category.get(c, 0.0) for c in CATEGORIES})
    parts = {label: round(100 * us / classified, 2) for label, us in sorted(labels.items(), key=lambda kv: -kv[1])}
    return {"percent": percent, "parts_percent": parts, "profiled_ms_per_step": book["step_total_us"] / steps / 1e3,
            "unattributed_backward_percent": round(100 * book["fallback_us"] / classified, 2),
            "classified_over_step_total": round(classified / book["step_total_us"], 4), "steps": steps}


def rounded_percent(values: dict[str, float]) -> dict[str, float]:
    """Shares in percent to 0.1, largest remainder, so that they sum to exactly 100.0."""
    total = sum(values.values()) or 1.0
    tenths = {k: 1000 * v / total for k, v in values.items()}
    floors = {k: int(v) for k, v in tenths.items()}
    for k in sorted(tenths, key=lambda k: floors[k] - tenths[k])[: 1000 - sum(floors.values())]:
        floors[k] += 1
    return {k: v / 10 for k, v in floors.items()}


# --------------------------------------------------------------------------- one configuration


def variants(cfg: ModelConfig, s: TrainSettings, threads: int,
             thread_counts: list[int]) -> dict[str, tuple[ModelConfig, TrainSettings, int]]:
    """The chosen configuration first, then one change each."""
    out = {"chosen": (cfg, s, threads)}  # bf16 where the CPU lacks it: fp32, as training falls back
    if bf16_unsupported_reason("cpu") is None:  # the other precision only where both run natively
        other = "fp32" if s.precision == "bf16" else "bf16"
        out[other] = (cfg, dataclasses.replace(s, precision=other), threads)
    if cfg.softmax == "adaptive":
        out["full softmax"] = (dataclasses.replace(cfg, softmax="full"), s, threads)
        tied = dataclasses.replace(cfg, softmax="full", tie_weights=True, embedding_size=cfg.hidden_size)
        out["full softmax, tied" + ("" if cfg.embedding_size == cfg.hidden_size else " (E = H)")] = (tied, s, threads)
    for t in thread_counts:
        if t != threads:
            out[f"threads {t}"] = (cfg, s, t)
    for b in BATCH_SIZES:
        if b != s.batch_size:
            out[f"batch {b}"] = (cfg, dataclasses.replace(s, batch_size=b), threads)
    return out


def measure_run(run: str, params, args) -> dict[str, Any]:
    s = params.train.settings_for(run)
    cfg = params.train.runs[run].model
    dataset = params.train.runs[run].dataset
    vocab, vocab_source = vocab_size(dataset)
    p, ids_source = unigram(dataset, vocab)
    threads = args.threads or s.threads or os.cpu_count() or 1
    chosen = variants(cfg, s, threads, args.thread_counts)
    longest = max(v[1].batch_size * (v[1].bptt * WINDOWS + 2) for v in chosen.values())
    ids = np.random.default_rng(s.seed).choice(vocab, size=longest, p=p)
    runners = {name: Runner(c, vs, vocab, ids, t) for name, (c, vs, t) in chosen.items()}
    for runner in runners.values():  # first steps: allocations, oneDNN primitives, Adam's state
        set_threads(runner.threads)
        for _ in range(args.warmup):
            runner.step()
    rates: dict[str, list[float]] = defaultdict(list)
    names = list(runners)
    for repeat in range(args.repeats):  # rotated order: no variant always runs first or after the same one
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            tokens, seconds = runners[name].run(args.steps)
            rates[name].append(tokens / seconds)
    split = profile_split(runners["chosen"], args.profile_steps)
    base = statistics.median(rates["chosen"])
    ablation = {}
    for name, runner in runners.items():
        shares = tail_shares(runner.cfg, p)
        flops = forward_flops(runner.cfg, vocab, shares)
        rate = statistics.median(rates[name])
        ablation[name] = {
            "model": describe(runner.cfg, vocab), "precision": "bf16" if runner.amp == torch.bfloat16 else "fp32",
            "threads": runner.threads, "batch_size": runner.s.batch_size, "bptt": runner.s.bptt,
            "tokens_per_s": rate, "tokens_per_s_repeats": rates[name], "ratio": rate / base,
            "forward_flops_per_token": flops, "tail_shares": shares, "train_gflops": 3 * flops["total"] * rate / 1e9,
        }
    split["unprofiled_ms_per_step"] = 1e3 * s.batch_size * s.bptt / base
    return {"dataset": dataset, "vocab_size": vocab, "vocab_source": vocab_source, "ids": ids_source,
            "settings": {k: getattr(s, k) for k in ("optimizer", "lr", "clip", "clip_threshold", "schedule")},
            "split": split, "ablation": ablation}


def add_shares(runs: dict[str, dict[str, Any]], best: dict[int, dict[str, float]]) -> None:
    """Each variant's training GFLOP/s over the ceiling at its thread count: its own precision's, bf16's, fp32's."""
    for r in runs.values():
        for v in r["ablation"].values():
            c = best[v["threads"]]
            v["share_of_own_ceiling"] = v["train_gflops"] / c[v["precision"]]
            v["share_of_bf16_ceiling"] = v["train_gflops"] / c["bf16"]
            v["share_of_fp32_ceiling"] = v["train_gflops"] / c["fp32"]
        r.update({k: r["ablation"]["chosen"][k] for k in (
            "model", "precision", "threads", "batch_size", "bptt", "tokens_per_s", "forward_flops_per_token",
            "tail_shares", "train_gflops", "share_of_bf16_ceiling", "share_of_fp32_ceiling")})


# --------------------------------------------------------------------------- report


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def gflops(x: float) -> str:
    return "n/a (not native)" if math.isnan(x) else f"{x:.0f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Load average at start {fmt_load(report['load_average']['start'])}, at end "
             f"{fmt_load(report['load_average']['end'])}; torch {report['torch']}, {report['cpu']}; "
             f"{report['options']['steps']} steps x {report['options']['repeats']} interleaved repeats (medians), "
             f"time split over {report['options']['profile_steps']} profiled steps.", ""]
    n = report["options"]["ceiling_size"]
    lines += [f"Ceiling ({n}^3 `torch.mm`, best of {report['options']['ceiling_repeats']}, start / end):", "",
              "| threads | float32 GFLOP/s | bfloat16 GFLOP/s |", "|---|---|---|"]
    for t in report["ceiling"]["best"]:
        start, end = report["ceiling"]["start"][t], report["ceiling"]["end"][t]
        lines.append(f"| {t} | {gflops(start['fp32'])} / {gflops(end['fp32'])} | {gflops(start['bf16'])} / "
                     f"{gflops(end['bf16'])} |")
    lines += ["", "| run | model | batch x bptt | precision, threads | tokens/s | forward MFLOP/token | "
              "training GFLOP/s | of bf16 ceiling | of fp32 ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for run, r in report["runs"].items():
        lines.append(f"| {run} | {r['model']} | {r['batch_size']} x {r['bptt']} | {r['precision']}, {r['threads']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['forward_flops_per_token']['total'] / 1e6:.2f} | "
                     f"{r['train_gflops']:.1f} | {pct(r['share_of_bf16_ceiling'])} | "
                     f"{pct(r['share_of_fp32_ceiling'])} |")
    notes = sorted({f"{r['dataset']}: ids from {r['ids']}; tail shares {[round(x, 4) for x in r['tail_shares']]}"
                    for r in report["runs"].values() if r["tail_shares"]})
    lines += [""] + [f"- {note}" for note in notes]
    lines += ["", "| run | ms/step (timed / profiled) | recurrent | softmax + loss | optimizer | other | "
              "largest parts of other |", "|---|---|---|---|---|---|---|"]
    for run, r in report["runs"].items():
        sp = r["split"]
        others = [(k.split(":", 1)[1], v) for k, v in sp["parts_percent"].items() if k.startswith("other:")][:3]
        lines.append(f"| {run} | {sp['unprofiled_ms_per_step']:.1f} / {sp['profiled_ms_per_step']:.1f} | "
                     + " | ".join(f"{sp['percent'][c]:.1f}%" for c in CATEGORIES)
                     + " | " + ", ".join(f"{k} {v:.1f}%" for k, v in others) + " |")
    lines += ["", "| run | variant | tokens/s | x chosen | training GFLOP/s | of its ceiling |", "|---|---|---|---|---|---|"]
    for run, r in report["runs"].items():
        for name, v in r["ablation"].items():
            label = f"**chosen** ({v['precision']}, {v['threads']} threads, batch {v['batch_size']})" \
                if name == "chosen" else name
            lines.append(f"| {run} | {label} | {v['tokens_per_s']:,.0f} | {v['ratio']:.2f} | {v['train_gflops']:.1f} "
                         f"| {pct(v['share_of_own_ceiling'])} ({v['precision']}, {v['threads']}t) |")
    return "\n".join(lines)


def fmt_load(load: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", choices=RUNS, default=list(RUNS), help="runs of the params file")
    ap.add_argument("--params", default=str(PARAMS))
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved measurements per variant (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first measurement")
    ap.add_argument("--profile-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="the chosen thread count (default: the params' threads)")
    ap.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2], help="thread counts of the ablation")
    ap.add_argument("--ceiling-size", type=int, default=2048)
    ap.add_argument("--ceiling-repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 steps, 1 repeat, small ceiling matmul")
    ap.add_argument("--out", default=None, help=f"JSON report (default {OUT.relative_to(ROOT)}; --quick: "
                                                f"{QUICK_OUT.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.warmup, args.profile_steps = 2, 1, 1, 2
        args.ceiling_size, args.ceiling_repeats = 512, 2
    args.out = Path(args.out) if args.out else (QUICK_OUT if args.quick else OUT)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began, load_start = time.perf_counter(), list(os.getloadavg())
    params = load_params(args.params)
    used = sorted({args.threads or params.train.settings_for(r).threads or os.cpu_count() or 1 for r in args.configs}
                  | set(args.thread_counts))
    ceil_start = ceiling(used, args.ceiling_size, args.ceiling_repeats)
    print(f"ceiling at start: {json.dumps(ceil_start)} (load {fmt_load(load_start)})", flush=True)
    runs = {}
    for run in args.configs:
        start = time.perf_counter()
        runs[run] = r = measure_run(run, params, args)
        print(f"{run}: {r['ablation']['chosen']['tokens_per_s']:,.0f} tokens/s, split {r['split']['percent']} "
              f"({time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)
    ceil_end = ceiling(used, args.ceiling_size, args.ceiling_repeats)
    best = {t: {k: max(ceil_start[t][k], ceil_end[t][k]) for k in ("fp32", "bf16")} for t in used}
    add_shares(runs, best)  # against the better of the two ceiling measurements
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
        "torch": torch.__version__, "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ceiling": {"start": ceil_start, "end": ceil_end, "best": best},
        "runs": runs, "seconds": time.perf_counter() - began,
    }
    print("\n" + markdown(report), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} ({report['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
