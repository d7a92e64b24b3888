"""Data-parallel training with torch DDP: one variant trained by N processes (``torchrun``), same results as one.

``torchrun --nproc_per_node N -m stages.train ...`` starts N copies of the stage and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in each; :func:`init_from_env` joins them in a
process group (NCCL on GPUs, gloo on CPUs).  Without those variables nothing here does anything: a plain
``python -m stages.train`` runs exactly the single-process code path.

What changes with N processes (the loop asks :func:`context` and stays otherwise unaware):

* a run's ``batch_size`` is the *global* batch: each rank takes ``batch_size / N`` of its rows (streams: rows
  ``[r*b, (r+1)*b)`` of the same ``batch_size`` streams one process would cut; records: every N-th record of
  the same shuffled global batch), so a run's hyper-parameters mean the same at any N.  With streams every
  rank predicts the same number of tokens, so DDP's gradient mean equals the one-process gradient of the
  whole batch; with records (padded rows of different lengths) it is the mean of the per-rank means.
* Gradients are averaged across ranks by :class:`~torch.nn.parallel.DistributedDataParallel` during
  ``backward``; clipping, the optimizer and the schedule then see identical gradients on every rank, so the
  weights stay identical without further communication.
* Every rank scores the whole validation split (identical weights give an identical loss, so plateau and
  early-stopping decisions agree without a broadcast); only rank 0 (:func:`is_main`) writes checkpoints,
  ``model.pt``, metrics, plots and MLflow records.  Other ranks get a ``NullTracker``.
* Dropout masks differ per rank (torch's generator is re-seeded with the rank); exact resume is a
  one-process guarantee: a resumed multi-process run restarts its streams' carried state at the resume point.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from torch import nn

from pipeline.errors import UserError


class DistributedSetupError(UserError, RuntimeError):
    """torchrun's environment is incomplete or the batch cannot be split across the ranks."""


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Context()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto", timeout_s: float = 600.0) -> Context:
    """Join torchrun's process group if ``WORLD_SIZE`` > 1 (idempotent); return this process's :class:`Context`.

    ``device`` (auto | cpu | cuda) picks the backend: NCCL when this rank trains on a GPU, gloo otherwise.
    On CUDA each rank takes GPU ``LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedSetupError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start the job with "
                                        f"torchrun --nproc_per_node N -m stages.train ...")
        gpu = device != "cpu" and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if gpu else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return context()


def context() -> Context:
    """The current process group's rank and size, or :data:`SINGLE` when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def is_main() -> bool:
    return context().is_main


def barrier() -> None:
    if context().enabled:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(ctx: Context, device: str) -> str:
    """``cuda:<local_rank>`` for a multi-process GPU job (one GPU per rank), else ``device`` unchanged."""
    if ctx.enabled and device.startswith("cuda") and ":" not in device:
        return f"cuda:{ctx.local_rank}"
    return device


def local_batch_size(batch_size: int, ctx: Context) -> int:
    """The rows each rank trains on; the global ``batch_size`` must split evenly."""
    if batch_size % ctx.world_size:
        raise DistributedSetupError(f"batch_size {batch_size} does not split evenly across {ctx.world_size} "
                                    f"processes: choose a multiple of {ctx.world_size} (it is the global batch)")
    return batch_size // ctx.world_size


def wrap(model: nn.Module, ctx: Context, device: torch.device) -> nn.Module:
    """``model`` in :class:`DistributedDataParallel` for a multi-process job, else ``model`` itself.

    The wrapper is used for the training forward/backward only; checkpoints, validation and sampling use
    the plain module (no ``module.`` prefixes in state dicts).  ``causal`` is copied onto the wrapper because
    the loss picks its objective from it.
    """
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)
    wrapped.causal = getattr(model, "causal", True)
    return wrapped


def seed_per_rank(seed: int, step: int, ctx: Context) -> None:
    """Give each rank its own dropout draws (a no-op on one process, which keeps its exact RNG stream)."""
    if ctx.enabled:
        torch.manual_seed(seed * 1_000_003 + step * 7919 + ctx.rank)
