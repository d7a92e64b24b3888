"""Where and how fast a run computes: device, mixed precision, and the CPU thread count (from the step's size).

On CUDA, ``precision: auto`` means bf16 autocast: matmuls (embedding projection, the recurrent layers'
GEMMs, the output layer) run in bf16 with float32 accumulation, while the losses stay in float32 (autocast
keeps ``cross_entropy`` there, and the loss code casts logits up).  bf16 keeps float32's exponent range, so
unlike fp16 it needs no loss scaling and cannot overflow in the long products of a recurrence.  On a CPU,
``auto`` is float32, so that a run's numbers do not depend on the CPU model: cores without bf16 dot products
(Zen 3, most laptops) only gain casts from autocast, while on cores with AVX512-BF16 or AMX ``precision: bf16``
trains an LSTM 1.2-1.7x faster (BENCHMARKS.md, "Quality within a CPU budget").

On a small CPU, one thread is often faster than two for a small recurrent step (thread wake-up costs more
than the arithmetic), a large step runs 1.5-1.9x faster on two, and two threads collapse when another process
shares the cores.  ``threads: 0`` therefore decides from the size of the run's recurrent step
(:func:`thread_plan`), never from timings taken at start: those followed whatever else ran on the cores at that
moment (a neighbour's job, another process starting up) and made the thread count, and with it the float
summation order of a seeded run, change from one run to the next.  BENCHMARKS.md has the measurements behind
the thresholds.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
from torch import nn

from pipeline.errors import SeqlabWarning
from pipeline.runtime import cpu_count, set_threads


def draws_dropout_in_cudnn(model: nn.Module, device: torch.device) -> bool:
    """Whether training ``model`` on ``device`` drops out between the layers of a fused cuDNN stack
    (``nn.LSTM``/``nn.GRU``/``nn.RNN`` with ``num_layers`` > 1 and ``dropout`` > 0 on CUDA): those masks come from
    a generator inside cuDNN's own state, not from torch's CUDA generator (see :func:`reseed_cudnn_dropout`)."""
    return device.type == "cuda" and torch.backends.cudnn.enabled and any(
        isinstance(m, nn.RNNBase) and m.num_layers > 1 and m.dropout > 0 for m in model.modules())


def reseed_cudnn_dropout(device: torch.device) -> None:
    """Make the next training forward of a cuDNN stack seed its dropout state from torch's CUDA generator.

    cuDNN keeps the dropout generator of a fused stack inside its own state, which no checkpoint can hold;
    PyTorch seeds it from the CUDA generator once, and again after the generator's state is set (as a restore
    does).  Setting the generator to its own state before every step makes each step's masks a function of
    the generator's state at that step, which the checkpoint holds: a resumed run then draws the same masks
    as an uninterrupted one.  The price is one host synchronisation and one state initialisation per step.
    """
    torch.cuda.set_rng_state(torch.cuda.get_rng_state(device), device)


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
#: Recurrent work per time step (MFLOP, forward) that pays for one more thread, per kind of torch module; measured
#: with bench/bench_threads.py on 2 cores, kernels capped to AVX2 (BENCHMARKS.md): an LSTM gains 1.5x from a second
#: thread at 1x256 x batch 32 (21 MFLOP) and 1.7x at 1x384 x 32 (44 MFLOP); a GRU 1.3-1.4x at 16-31 MFLOP (the
#: pipeline's 1x256 GRU on names, whole runs of its train stage: 1.38x); a basic RNN gains less (1.09x at 11 MFLOP).
MFLOP_PER_THREAD = {"LSTM": 12.0, "GRU": 12.0, "RNN_TANH": 24.0, "RNN_RELU": 24.0}


def recurrent_step_flops(model: nn.Module, batch_size: int) -> float:
    """Forward FLOPs of the recurrent GEMMs of one time step of ``model`` for ``batch_size`` rows (all layers
    and directions): the sequential part of a training step, which sets how much a second thread can share.
    Hand-written cells (a Python loop per step) count as 0: their steps are too small to share."""
    return sum(flops for _, flops in _recurrent_work(model, batch_size))


def _recurrent_work(model: nn.Module, batch_size: int) -> list[tuple[str, float]]:
    """(torch module mode, forward FLOPs of its recurrent GEMMs per time step) for each fused recurrent module."""
    work = []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            directions = 2 if module.bidirectional else 1
            gates = GATES.get(module.mode, 4)
            flops = 0.0
            for layer in range(module.num_layers):
                inputs = module.input_size if layer == 0 else module.hidden_size * directions
                flops += 2.0 * batch_size * gates * module.hidden_size * (inputs + module.hidden_size) * directions
            work.append((module.mode, flops))
    return work


def thread_plan(model: nn.Module, batch_size: int, cpus: int | None = None) -> int:
    """The intra-op thread count ``threads: 0`` gives ``model`` at ``batch_size`` on a CPU: one thread, plus one
    per :data:`MFLOP_PER_THREAD` of recurrent work per time step, up to the usable CPUs.

    Tiny steps (and hand-written cells, a Python loop per step) keep one thread; the default pipeline's LSTMs
    on text take two cores.  Where other jobs share the cores all the time, ``threads: 1`` is the safe setting:
    two OpenMP threads that wait on each other at every step slow down far more than one thread does.  Counts
    above two follow the same rule but were not measured here.
    """
    cpus = cpus or cpu_count()
    extra = sum(flops / 1e6 / MFLOP_PER_THREAD.get(mode, 12.0) for mode, flops in _recurrent_work(model, batch_size))
    return max(1, min(cpus, 1 + int(extra)))


def choose_threads(requested: int, device: torch.device, plan: int | None = None) -> int:
    """Set and return the intra-op thread count: ``requested`` if > 0, else ``plan`` (:func:`thread_plan`) on a
    CPU.  On CUDA the count only matters for host-side work and torch's default is kept."""
    if requested > 0:
        return set_threads(requested)
    if device.type != "cpu" or plan is None:
        return set_threads(None)
    return set_threads(plan)
