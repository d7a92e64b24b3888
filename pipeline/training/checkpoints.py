"""Training checkpoints (``checkpoint.pt``): what exact resume needs, where it is kept, and whether a run continues
from one.

A training checkpoint is the model payload of :mod:`pipeline.models.checkpoint` plus optimizer and scheduler
state, every RNG state (torch CPU and CUDA, NumPy, Python), the step, epoch and data position, the carried
recurrent state, the best validation loss and early-stopping counter, the partial epoch accumulators and the
history written at the end.  Everything is tensors and plain containers, so ``torch.load(weights_only=True)``
reads it back.  The best model (``model.pt``) is a plain model payload with the step and validation loss it
was taken at.

Where: a :class:`~pipeline.run_folder.WorkFolder`.  The train stage keeps both in
``.seqlab/runs/<run folder>/<fingerprint>/`` under the project root, where no DVC command removes them, and
writes ``models/<dataset>/<variant>/`` only when the run finishes (see :mod:`pipeline.run_folder`).
:func:`pipeline.training.loop.fit` called on its own keeps them in its output folder.

A run continues from its ``checkpoint.pt`` only while what shaped it still holds.  Every training checkpoint
carries a fingerprint (:func:`training_fingerprint`) of what decides the weights: the model config, every train
setting except those that only change how a run is watched or where it runs (:data:`UNWATCHED`), and the
sha256 of the token files the run reads.  :func:`plan_resume` compares it with the current one, in one of
three modes:

* ``auto`` (``--resume auto``, what dvc.yaml runs): an unfinished run with the same fingerprint resumes, so a
  ``dvc repro`` killed mid-training continues where its last checkpoint left off.  Otherwise one line says
  why (the keys that differ, or the stop rule the run already met: DVC re-runs a finished stage only because
  something changed) and the run starts fresh.  A stopped run whose tracking run did not end FINISHED
  (``completed``: killed or failed at its very end, a tracking store that went away) resumes instead.
* ``required`` (``--resume`` by hand): a checkpoint of other settings or data stops with one line (exit 2);
  with none at all (a finished run leaves none) the run starts fresh and says so.  A stopped run whose work
  folder is still there resumes to no further step: its outputs are written again.
* ``never``: a fresh run.

Checkpoints of the same run folder under other settings or data stay in their own work folders (switching the
settings back resumes them); the plan names the newest of them to say why a run starts fresh.  Nothing is
removed while planning: a fresh run clears its own work folder once its tracking run is open, so a start that
fails removes nothing.  A resumed run prints ``resuming from step N (checkpoint.pt)``.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.config import ModelConfig, TrainSettings, to_plain
from pipeline.errors import UserError
from pipeline.files import sha256_file
from pipeline.models.checkpoint import CheckpointError, checkpoint_payload, load_checkpoint, save_checkpoint
from pipeline.run_folder import WorkFolder
from pipeline.training.state import LoopState, stop_rule_met

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

# --------------------------------------------------------------------------- resuming

# Settings that never change the trained weights: where the run happens (a CPU checkpoint may continue on a GPU),
# the thread count (the one chosen at the start is kept in the checkpoint), tracking, the progress bar, and the
# samples logged at each validation (drawn from their own seeded generator).
UNWATCHED = ("device", "threads", "tracking", "progress", "sample")
MODES = ("never", "auto", "required")


class ResumeRefusedError(UserError):
    """``--resume`` asked for, but the checkpoint was trained with other settings or data."""


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    resume: bool
    step: int = 0
    run_id: str | None = None  # the tracking run the checkpoint belongs to
    note: str | None = None  # the one line about the decision, for the stage to print


def training_fingerprint(settings: TrainSettings, model: ModelConfig, data_files: Sequence[Path]) -> dict[str, str]:
    """``{key: value}`` of everything that shapes the trained weights, values as canonical JSON or sha256."""
    out = {f"model.{k}": _canonical(v) for k, v in to_plain(model).items()}
    out.update({f"train.{k}": _canonical(v) for k, v in to_plain(settings).items() if k not in UNWATCHED})
    out.update({f"data.{Path(f).name}": sha256_file(Path(f)) for f in data_files})
    return out


def differences(recorded: Mapping[str, str], current: Mapping[str, str], limit: int = 6) -> str:
    """``"model.hidden_size 256 -> 128, data.train.npy changed"``: the keys whose values differ."""
    keys = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    shown = [f"{k} changed" if k.startswith("data.") else f"{k} {recorded.get(k, '(none)')} -> {current.get(k, '(none)')}"
             for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def plan_resume(work: WorkFolder, fingerprint: Mapping[str, str], settings: TrainSettings, mode: str, *,
                completed: Callable[[str | None], bool] | None = None) -> ResumePlan:
    """Decide whether the run resumes from ``work`` (see the module docstring); the plan's ``note`` is the one
    line about it, which the caller prints.  Nothing is removed here: a fresh run clears ``work`` itself.

    ``completed(run_id)``: whether a stopped checkpoint's tracking run ended FINISHED (None: assume it did).
    """
    if mode not in MODES:
        raise ValueError(f"resume mode {mode!r} is not one of {MODES}")
    path = work.checkpoint
    if mode == "never":
        return ResumePlan(False)
    if not path.exists():
        return _elsewhere(work, fingerprint, mode)
    try:
        payload = load_training_checkpoint(path)
    except CheckpointError as e:
        if mode == "required":
            raise
        return ResumePlan(False, note=f"{path}: unreadable ({e}); training from scratch")
    loop = payload.get("loop", {})
    if payload.get("fingerprint") != dict(fingerprint):
        return _other_settings(path, payload.get("fingerprint"), fingerprint, mode)
    step, stopped = int(loop.get("step", 0)), stop_rule_met(loop, settings)
    if stopped and mode == "auto" and (completed is None or completed(loop.get("run_id"))):
        return ResumePlan(False, note=f"{path}: a finished run ({stopped} at step {step}); training from scratch")
    note = f"resuming from step {step} ({path.name})"
    if stopped:
        note += f": the run already stopped ({stopped}); writing its outputs again"
    return ResumePlan(True, step, loop.get("run_id"), note)


def _elsewhere(work: WorkFolder, fingerprint: Mapping[str, str], mode: str) -> ResumePlan:
    """No checkpoint of these settings: say so when one of other settings or data is why."""
    other = next(iter(work.others()), None)
    if other is None:
        return ResumePlan(False, note=f"seqlab: no checkpoint at {work.checkpoint}; starting from scratch"
                          if mode == "required" else None)
    try:
        recorded = load_training_checkpoint(other).get("fingerprint")
    except CheckpointError:
        recorded = None
    return _other_settings(other, recorded, fingerprint, mode)


def _other_settings(path: Path, recorded: Mapping[str, str] | None, current: Mapping[str, str],
                    mode: str) -> ResumePlan:
    why = differences(recorded, current) if recorded else "it records none: written by an older seqlab"
    if mode == "required":
        raise ResumeRefusedError(f"{path} was trained with other settings or data ({why}); put them back to "
                                 f"resume, or train from scratch without --resume")
    return ResumePlan(False, note=f"{path}: trained with other settings or data ({why}); training from scratch")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
