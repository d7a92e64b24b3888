"""One optimizer step, written once: the training loop, the curriculum's supervised loop and the
benchmarks all step through here, so a benchmark measures the step that trains the models.

:func:`train_step` is the language-model step: the loss of one batch (under autocast), then
:func:`backward_and_update`: zero the gradients, backpropagate, measure the per-parameter gradient norms (when
asked), clip, check that the loss and the gradient norm are finite (when asked), update the weights.  The order
of these operations is part of a seeded run's numerics; keep it.

A loss or gradient norm that is not finite leaves the weights as they were and the result says so
(``updated`` False); the caller decides what that means (the loop stops with ``TrainingDivergedError``).  The
check reads two device scalars: free on a CPU, a wait for the queue on a GPU, where the loop checks once per
logging interval instead (see :mod:`.meter`).

``phase(name)`` wraps each part (:data:`PHASES`) in a context manager of the caller's: the benchmarks pass
profiler scopes or timers, everyone else nothing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from pipeline.data.windows import Batch
from pipeline.models.objective import BatchLoss, batch_loss
from pipeline.training.devices import autocast
from pipeline.training.optim import ClipStats, clip_gradients, layer_grad_norms

Phase = Callable[[str], contextlib.AbstractContextManager]
PHASES = ("forward", "zero_grad", "backward", "layer_norms", "clip", "finite_check", "update")


def no_phase(name: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


class Update(NamedTuple):
    clip: ClipStats  # device scalars: the global gradient norm before clipping, and after where measured
    layer_norms: tuple[list[str], Tensor] | None  # (names, (P,) norms) before clipping, when asked for
    updated: bool  # False: the loss or the gradient norm was not finite and the weights were left as they were


class StepResult(NamedTuple):
    loss: BatchLoss  # the batch's loss (per-direction sums and counts, the state after it)
    clip: ClipStats
    layer_norms: tuple[list[str], Tensor] | None
    updated: bool


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, state: Any = None, *,
               params: list[nn.Parameter] | None = None, clip: str = "norm", clip_threshold: float = 1.0,
               amp: torch.dtype | None = None, check_finite: bool = False, layer_norms_of: nn.Module | None = None,
               phase: Phase = no_phase) -> StepResult:
    """One optimizer step of a language model on ``batch`` (already on the model's device), from ``state``.

    ``params``: the parameters to clip (default: the model's trainable ones); ``amp``: the autocast dtype
    (None: plain float32); ``layer_norms_of``: the module whose per-parameter gradient norms to measure (the
    unwrapped model under DDP, for its parameter names), None to skip them.
    """
    with phase("forward"), autocast(batch.inputs.device, amp):
        loss = batch_loss(model, batch, state)
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
    update = backward_and_update(optimizer, loss.objective, params, clip=clip, clip_threshold=clip_threshold,
                                 check_finite=check_finite, layer_norms_of=layer_norms_of, phase=phase)
    return StepResult(loss, *update)


def backward_and_update(optimizer: torch.optim.Optimizer, objective: Tensor, params: list[nn.Parameter], *,
                        clip: str = "norm", clip_threshold: float = 1.0, check_finite: bool = False,
                        layer_norms_of: nn.Module | None = None, phase: Phase = no_phase) -> Update:
    """Backpropagate ``objective`` (a () loss) and update the weights; see the module docstring for the order."""
    with phase("zero_grad"):
        optimizer.zero_grad(set_to_none=True)
    with phase("backward"):
        objective.backward()
    layer_norms = None
    if layer_norms_of is not None:
        with phase("layer_norms"):
            layer_norms = layer_grad_norms(layer_norms_of)
    with phase("clip"):
        clipped = clip_gradients(params, clip, clip_threshold)
    if check_finite:
        with phase("finite_check"):
            finite = math.isfinite(float(objective.detach())) and math.isfinite(float(clipped.before))
        if not finite:  # before the update: the weights in memory stay good
            return Update(clipped, layer_norms, updated=False)
    with phase("update"):
        optimizer.step()
    return Update(clipped, layer_norms, updated=True)
