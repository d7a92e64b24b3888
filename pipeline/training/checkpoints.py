"""Training checkpoints: the model payload of :mod:`pipeline.models.checkpoint` plus what exact resume needs.

A training checkpoint (``checkpoint.pt``) adds optimizer and scheduler state, every RNG state (torch CPU and
CUDA, NumPy, Python), the step, epoch and data position, the carried recurrent state, the best validation
loss and early-stopping counter, the partial epoch accumulators and the history written at the end.
Everything is tensors and plain containers, so ``torch.load(weights_only=True)`` reads it back.
The best model (``model.pt``) is a plain model payload with the step and validation loss it was taken at.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.models.checkpoint import CheckpointError, checkpoint_payload, load_checkpoint, save_checkpoint
from pipeline.training.state import LoopState

TRAINING_KIND = "training"


class ResumeMismatchError(CheckpointError):
    """A training checkpoint written for other model or train settings than the current ones."""


def capture_rng() -> dict[str, Any]:
    """Every RNG the loop touches, as tensors and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def to_cpu(obj: Any) -> Any:
    """A carried state (tensor, tuple of tensors, None) moved to the CPU for saving."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_cpu(o) for o in obj)
    return obj


def to_device(obj: Any, device: torch.device | str) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def save_training_checkpoint(path: str | Path, model: nn.Module, training: dict[str, Any]) -> None:
    """Write model payload + ``training`` (optimizer, scheduler, position, ...) + RNG states, atomically."""
    payload = checkpoint_payload(model)
    payload.update(kind=TRAINING_KIND, rng=capture_rng(), **training)
    save_checkpoint(path, payload)


def save_best_model(path: str | Path, model: nn.Module, **meta: Any) -> None:
    payload = checkpoint_payload(model)
    payload.update(kind="model", **meta)
    save_checkpoint(path, payload)


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, on the CPU; :class:`CheckpointError` if it is not one."""
    payload = load_checkpoint(path, map_location="cpu")
    if payload.get("kind") != TRAINING_KIND:
        raise CheckpointError(f"{path}: a model checkpoint, not a training checkpoint (resume from checkpoint.pt)")
    return payload


def restore_best_model(model: nn.Module, path: str | Path, device: torch.device | str) -> bool:
    """Load the best model's weights (``model.pt``) into ``model``; False when there is none."""
    if not Path(path).exists():
        return False
    model.load_state_dict(load_checkpoint(path, map_location=device)["model_state"])
    return True


def restore_training_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                                device: torch.device) -> tuple[LoopState, Any, dict[str, Any]]:
    """Load ``path`` into ``model``, ``optimizer`` and ``scheduler``; return the loop's state, the carried state
    (on ``device``) and the RNG states, which the caller restores last (so that nothing draws from them first)."""
    payload = load_training_checkpoint(path)
    try:
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload["scheduler"] is not None:
            scheduler.load_state_dict(payload["scheduler"])
        return LoopState(**payload["loop"]), to_device(payload["carried_state"], device), payload["rng"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # another shape, optimizer or seqlab version
        reason = (str(e).replace("\n", " ").replace("\t", "") or type(e).__name__)[:200]
        raise ResumeMismatchError(
            f"{path}: the checkpoint does not fit the current model and train settings ({reason}); "
            f"restore the settings it was trained with, or delete it to start from scratch") from e
