"""Where and how fast a run computes: device, mixed precision, and the CPU thread count (chosen by measurement).

On CUDA, ``precision: auto`` means bf16 autocast: matmuls (embedding projection, the recurrent layers'
GEMMs, the output layer) run in bf16 with float32 accumulation, while the losses stay in float32 (autocast
keeps ``cross_entropy`` there, and the loss code casts logits up).  bf16 keeps float32's exponent range, so
unlike fp16 it needs no loss scaling and cannot overflow in the long products of a recurrence.  On a CPU,
``auto`` is float32, so that a run's numbers do not depend on the CPU model: cores without bf16 dot products
(Zen 3, most laptops) only gain casts from autocast, while on cores with AVX512-BF16 or AMX ``precision: bf16``
trains an LSTM 1.2-1.7x faster (BENCHMARKS.md, "Quality within a CPU budget").

On a small CPU, one thread is often faster than two for a small recurrent step (thread wake-up costs more
than the arithmetic), a large step runs 1.6-1.9x faster on two, and two threads collapse when another process
shares the cores.  ``threads: 0`` therefore decides from the size of the run's recurrent step
(:func:`thread_plan`): every core for large steps, one thread for tiny ones, and in between it times a few real
training steps of the run's own model at each candidate count and keeps the fastest (see BENCHMARKS.md for
the measurements behind the thresholds).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from pipeline.errors import SeqlabWarning
from pipeline.runtime import cpu_count, set_threads

#: How much faster (per step) a larger thread count must be to be chosen.  Spare threads are a bet that the
#: cores stay free: when another process takes one, OpenMP's threads wait on each other at every parallel region
#: and a small recurrent step can slow down 10-100x (seen here: 34,000 -> 150 tokens/s with 2 threads), while
#: one thread only loses its share of the core.
MIN_GAIN = 1.25


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto | fp32 | bf16) on ``device``; None: plain float32.

    ``bf16`` on a device that cannot run it (a CPU without native bf16, a GPU older than Ampere) falls back to
    float32 with one warning line naming the reason; ``auto`` never picks bf16 where it is not supported.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        reason = bf16_unsupported_reason(device)
        if reason is None:
            return torch.bfloat16
        warnings.warn(f"precision bf16 is not supported here ({reason}); training in fp32 instead",
                      Bf16FallbackWarning, stacklevel=2)
        return None
    if device.type == "cuda" and bf16_unsupported_reason(device) is None:
        return torch.bfloat16
    return None


class Bf16FallbackWarning(SeqlabWarning):
    """``precision: bf16`` was asked for on a device without bf16 support; fp32 is used instead."""


def bf16_unsupported_reason(device: torch.device | str) -> str | None:
    """None when bf16 autocast of the recurrent layers runs natively on ``device``, else why not (one phrase).

    On a CPU that takes three things: oneDNN must report bf16 support (it does not on AVX2-only cores, and
    honours ``ONEDNN_MAX_CPU_ISA``), the cores must have bf16 dot products (AVX512-BF16 or AMX; elsewhere bf16
    is emulated and slower than fp32), and a tiny ``nn.LSTM`` must actually run under bf16 autocast (oneDNN
    has no bf16 LSTM primitive below AVX-512).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type != "cpu":
        return f"no bf16 autocast on {device.type}"
    return _cpu_bf16_reason()


@functools.lru_cache(maxsize=1)
def _cpu_bf16_reason() -> str | None:
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return f"oneDNN reports no bf16 support on this CPU ({torch.backends.cpu.get_cpu_capability()})"
    native = torch.cpu._is_avx512_bf16_supported() or getattr(torch.cpu, "_is_amx_tile_supported", bool)()
    if not native:
        return "the CPU has neither AVX512-BF16 nor AMX (bf16 would be emulated)"
    try:
        with torch.random.fork_rng(devices=[]), torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(4, 4)(torch.zeros(2, 1, 4))
    except RuntimeError as e:
        return f"oneDNN cannot run a bf16 LSTM here: {str(e).splitlines()[0][:80]}"
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


#: Gates of torch's fused recurrent modules: one time step is a (batch x hidden) @ (hidden x gates*hidden) GEMM.
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
#: Recurrent work per time step (MFLOP, forward, :func:`recurrent_step_flops`) from which every core is used
#: without probing, and below which one thread is, without probing.  Measured with bench/bench_threads.py on
#: 2 cores (BENCHMARKS.md): a 1x256 LSTM at batch 32 (21 MFLOP) runs 1.9x faster on two threads, a 1x384 at
#: batch 32 (44 MFLOP) 1.6-1.8x; a 1x256 GRU or LSTM at batch 8 (4-5 MFLOP) 0.7x.
ALL_CORES_MFLOP = 12.0
ONE_THREAD_MFLOP = 3.0


def recurrent_step_flops(model: nn.Module, batch_size: int) -> float:
    """Forward FLOPs of the recurrent GEMMs of one time step of ``model`` for ``batch_size`` rows (all layers
    and directions): the sequential part of a training step, which sets how much a second thread can share.
    Hand-written cells (a Python loop per step) count as 0: their steps are too small to share."""
    flops = 0.0
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            directions = 2 if module.bidirectional else 1
            gates = GATES.get(module.mode, 4)
            for layer in range(module.num_layers):
                inputs = module.input_size if layer == 0 else module.hidden_size * directions
                flops += 2.0 * batch_size * gates * module.hidden_size * (inputs + module.hidden_size) * directions
    return flops


def thread_plan(model: nn.Module, batch_size: int, cpus: int | None = None) -> int | str:
    """What ``threads: 0`` does on a CPU for ``model`` at ``batch_size``: a thread count, or "probe".

    Large recurrent steps use every core, tiny ones one thread (thread wake-ups cost more than the arithmetic);
    in between, short interleaved timings of the run's own step decide (:func:`choose_threads`).  A fixed
    choice for the large and tiny shapes also keeps the decision away from a neighbour's burst of load at the
    moment of the probe.  Where other jobs share the cores all the time, ``threads: 1`` is the safe setting:
    two OpenMP threads that wait on each other at every step slow down far more than one thread does.
    """
    cpus = cpus or cpu_count()
    if cpus == 1:
        return 1
    work = recurrent_step_flops(model, batch_size) / 1e6
    if work >= ALL_CORES_MFLOP:
        return cpus
    if work < ONE_THREAD_MFLOP:
        return 1
    return "probe"


def choose_threads(requested: int, device: torch.device,
                   make_probe: Callable[[], Callable[[int], float]] | None = None, rounds: int = 3,
                   plan: int | str = "probe") -> int:
    """Set and return the intra-op thread count: ``requested`` if > 0, else ``plan`` (:func:`thread_plan`)
    when it is a count, else the fastest by ``probe``.

    ``make_probe()`` returns ``probe(steps)``, which runs ``steps`` training steps and returns seconds per step
    at the current thread count.
    Candidates are timed interleaved (1, 2, 1, 2, ...) and each keeps its best round, so a burst of load
    from another process penalises one round rather than one candidate; a larger count must beat the one
    chosen so far by :data:`MIN_GAIN`.  On CUDA the count only matters
    for host-side work and torch's default is kept.
    """
    if requested > 0:
        return set_threads(requested)
    if device.type != "cpu":
        return set_threads(None)
    if isinstance(plan, int):
        return set_threads(plan)
    if make_probe is None:
        return set_threads(None)
    candidates = sorted({1, min(2, cpu_count()), cpu_count()})
    if len(candidates) == 1:
        return set_threads(1)
    probe = make_probe()
    timings: dict[int, float] = {}
    steps = 1
    for round_ in range(rounds + 1):
        for n in candidates:
            set_threads(n)
            seconds = probe(steps)  # round 0 warms up each count (allocations, kernel selection)
            if round_:
                timings[n] = min(timings.get(n, float("inf")), seconds)
        if round_ == 0:  # time at least ~50 ms per measurement: a millisecond step alone is all noise
            steps = max(2, min(20, math.ceil(0.05 / max(seconds, 1e-6))))
    best = candidates[0]
    for n in candidates[1:]:  # more threads only for a clear gain: see MIN_GAIN
        if timings[n] * MIN_GAIN < timings[best]:
            best = n
    return set_threads(best)


def step_timer(model: nn.Module, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
               train_step: Callable[[nn.Module, torch.optim.Optimizer], None]) -> Callable[[int], float]:
    """A probe for :func:`choose_threads`: seconds per step of ``train_step`` on a throwaway copy of ``model``.

    The copy and its optimizer are discarded and every RNG is forked, so probing changes nothing the run
    then does (dropout draws included).
    """
    clone = copy.deepcopy(model)
    optimizer = make_optimizer(clone)

    def probe(steps: int) -> float:
        with torch.random.fork_rng(devices=[]):
            start = time.perf_counter()
            for _ in range(steps):
                train_step(clone, optimizer)
            return (time.perf_counter() - start) / steps

    return probe
