"""Seeds, devices and threads: the process-wide settings a run starts with."""

from __future__ import annotations

import os
import random

import numpy as np

from pipeline.errors import UserError


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch, CPU and CUDA."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> str:
    """Map ``auto | cpu | cuda | cuda:N`` to a device string; ``cuda`` without a GPU is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but no CUDA GPU is visible (use device: auto or cpu)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(use cuda:0 .. cuda:{torch.cuda.device_count() - 1}, auto or cpu)")
        return name
    raise DeviceError(f"device {name!r} is not valid (choose auto, cpu, cuda or cuda:N)")


class DeviceError(UserError, ValueError):
    """A device that does not exist here or is not a device name."""


def set_threads(num_threads: int | None) -> int:
    """Set torch's intra-op thread count (``None``/0: leave torch's default); return the count in force."""
    import torch

    if num_threads:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def cpu_count() -> int:
    """CPUs this process may use (respects affinity masks, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, n_items: int) -> int:
    """Worker processes to use for ``n_items`` independent items (``workers`` <= 0: all usable CPUs)."""
    wanted = workers if workers > 0 else cpu_count()
    return max(1, min(wanted, n_items))
