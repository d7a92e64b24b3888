"""Per-step training statistics kept on the device and read back once per logging interval.

Reading a CUDA tensor (``.item()``, ``float()``) waits for the GPU to finish everything queued; doing it
every step stalls the pipeline, and so does every extra small kernel launched per step when the GPU is
fast.  :class:`StepMeter` therefore only *keeps* each step's 0-d result tensors (loss, per-direction sums
and counts, gradient norm) in a list: nothing is launched or read per step.  :meth:`StepMeter.drain` stacks
the whole interval and copies it to the host in one transfer, and finds the first step whose loss or
gradient norm was not finite.  On a CPU there is no queue, so the loop checks every step, before the update
(``check_finite`` of :func:`.step.train_step`), at no cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pipeline.models.objective import BatchLoss
from pipeline.training.optim import ClipStats, derived_after


@dataclass
class Interval:
    """One logging interval, on the host."""

    steps: list[int]
    grad_norm: list[float]
    grad_norm_clipped: list[float]
    clipped: list[float]
    loss_sums: list[float]  # per direction
    counts: list[int]  # per direction
    first_bad: int | None = None  # first step with a NaN/Inf loss or gradient norm
    layer_norms: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def mean_losses(self) -> list[float]:
        return [s / c if c else float("nan") for s, c in zip(self.loss_sums, self.counts, strict=True)]

    @property
    def loss(self) -> float:
        means = self.mean_losses
        return sum(means) / len(means)


class StepMeter:
    """Up to ``capacity`` steps of figures, held as device tensors until :meth:`drain`."""

    def __init__(self, capacity: int, directions: int, clip_mode: str = "norm", clip_threshold: float = 1.0) -> None:
        self.capacity, self.directions = capacity, directions
        self.clip_mode, self.clip_threshold = clip_mode, clip_threshold
        self.steps: list[int] = []
        self.records: list[tuple[BatchLoss, ClipStats]] = []
        self.layer_norms: list[tuple[int, list[str], Tensor]] = []

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def full(self) -> bool:
        return len(self.steps) >= self.capacity

    def record(self, step: int, loss: BatchLoss, clip: ClipStats) -> None:
        """Keep one step's result tensors (no kernel, no synchronisation)."""
        self.steps.append(step)
        self.records.append((BatchLoss(loss.objective.detach(), loss.sums, loss.counts, None), clip))

    def record_layer_norms(self, step: int, names: list[str], norms: Tensor) -> None:
        self.layer_norms.append((step, names, norms.detach()))

    def drain(self) -> Interval:
        """Copy the interval to the host in one transfer and start a new one."""
        n, d = len(self.steps), self.directions
        measured = self.clip_mode == "value"
        columns = [torch.stack([loss.objective.float() for loss, _ in self.records]),
                   torch.stack([clip.before.float() for _, clip in self.records])]
        if measured:
            columns += [torch.stack([c.after.float() for _, c in self.records]),
                        torch.stack([c.fired.float() for _, c in self.records])]
        sums = torch.stack([loss.sums.double() for loss, _ in self.records]).sum(0)  # (D,)
        counts = torch.stack([loss.counts for loss, _ in self.records]).sum(0)  # (D,)
        flat = torch.cat([torch.stack(columns).double().flatten(), sums, counts.double()]).tolist()
        objective, before = flat[:n], flat[n : 2 * n]
        if measured:
            after, fired = flat[2 * n : 3 * n], flat[3 * n : 4 * n]
        else:
            after, fired = map(list, zip(*(derived_after(b, self.clip_mode, self.clip_threshold) for b in before),
                                         strict=True))
        tail = flat[len(columns) * n :]
        bad = [s for s, o, b in zip(self.steps, objective, before, strict=True) if not (math.isfinite(o)
                                                                                      and math.isfinite(b))]
        layer = [(step, dict(zip(names, norms.tolist(), strict=True))) for step, names, norms in self.layer_norms]
        interval = Interval(list(self.steps), before, after, fired, tail[:d], [int(c) for c in tail[d:]],
                            bad[0] if bad else None, layer)
        self.steps, self.records, self.layer_norms = [], [], []
        return interval
