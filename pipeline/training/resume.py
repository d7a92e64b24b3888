"""Whether a training run continues from its ``checkpoint.pt``: only while what shaped it still holds.

Every training checkpoint carries a fingerprint (:func:`training_fingerprint`) of what decides the weights:
the model config, every train setting except those that only change how a run is watched or where it runs
(:data:`UNWATCHED`), and the sha256 of the token files the run reads.  :func:`plan_resume` compares it with
the current one, in one of three modes:

* ``auto`` (``--resume auto``, what dvc.yaml runs): an unfinished run with the same fingerprint resumes, so a
  ``dvc repro`` killed mid-training continues where its last checkpoint left off.  Otherwise one line says
  why (the keys that differ, or the stop rule the run already met: DVC re-runs a finished stage only because
  something changed) and the run starts fresh.
* ``required`` (``--resume`` by hand): a different fingerprint stops with one line (exit 2).  A finished run
  resumes to no further step: its outputs are written again.
* ``never``: a fresh run.

A fresh run first removes an earlier run's ``checkpoint.pt`` and ``model.pt``, so nothing of that run is
mistaken for this one's.  A resumed run prints ``resuming from step N (checkpoint.pt)``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import ModelConfig, TrainSettings, to_plain
from pipeline.errors import UserError
from pipeline.files import sha256_file
from pipeline.models.checkpoint import CheckpointError
from pipeline.training import checkpoints as ckpt
from pipeline.training.outputs import output_path
from pipeline.training.state import stop_rule_met

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


def plan_resume(out_dir: Path, fingerprint: Mapping[str, str], settings: TrainSettings, mode: str, *,
                owner: bool = True) -> ResumePlan:
    """Decide whether the run in ``out_dir`` resumes (see the module docstring); the plan's ``note`` is the one
    line about it, which the caller prints.

    ``owner``: this process may remove a stale run's files (rank 0 of a distributed job).
    """
    if mode not in MODES:
        raise ValueError(f"resume mode {mode!r} is not one of {MODES}")
    path = output_path(out_dir, "checkpoint")
    if mode == "never" or not path.exists():
        return _fresh(out_dir, f"seqlab: no checkpoint at {path}; starting from scratch" if mode == "required"
                      else None, owner)
    try:
        payload = ckpt.load_training_checkpoint(path)
    except CheckpointError as e:
        if mode == "required":
            raise
        return _fresh(out_dir, f"{path}: unreadable ({e}); training from scratch", owner)
    loop = payload.get("loop", {})
    recorded = payload.get("fingerprint")
    if recorded != dict(fingerprint):
        why = differences(recorded, fingerprint) if recorded else "it records none: written by an older seqlab"
        if mode == "required":
            raise ResumeRefusedError(f"{path} was trained with other settings or data ({why}); put them back to "
                                     f"resume, or train from scratch without --resume")
        return _fresh(out_dir, f"{path}: trained with other settings or data ({why}); training from scratch", owner)
    step, stopped = int(loop.get("step", 0)), stop_rule_met(loop, settings)
    if stopped and mode == "auto":
        return _fresh(out_dir, f"{path}: a finished run ({stopped} at step {step}); training from scratch", owner)
    note = f"resuming from step {step} ({path.name})"
    if stopped:
        note += f": the run already stopped ({stopped}); writing its outputs again"
    return ResumePlan(True, step, loop.get("run_id"), note)


def _fresh(out_dir: Path, note: str | None, owner: bool) -> ResumePlan:
    if owner:
        for name in ("checkpoint", "model"):
            output_path(out_dir, name).unlink(missing_ok=True)
    return ResumePlan(False, note=note)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


