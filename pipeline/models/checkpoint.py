"""Checkpoints: a plain dict saved with ``torch.save`` and read back with ``weights_only=True``; never a pickled module.

The payload :func:`checkpoint_payload` builds holds what rebuilds a model anywhere::

    format_version  int   (FORMAT_VERSION)
    model_config    dict  ModelConfig fields, plain values
    vocab_size      int
    model_state     dict  state_dict of the unwrapped model (no ``_orig_mod.`` / ``module.`` prefixes)

The trainer adds its own keys (optimizer, scheduler, RNG states, step, data position).  Anything made of
dicts, lists, tuples, str, int, float, bool, None and tensors round-trips under ``weights_only``; a NumPy array
or a custom object does not (convert NumPy RNG state to lists or tensors first).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import ConfigError, ModelConfig, parse_dataclass, to_plain
from pipeline.errors import UserError, first_line
from pipeline.files import atomic_path
from pipeline.models.language_model import SequenceModel
from pipeline.models.registry import build_model
from pipeline.process import signals_deferred

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "vocab_size", "model_state")
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DataParallel / DistributedDataParallel


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, unreadable or not a seqlab checkpoint."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under ``torch.compile`` (``_orig_mod``) and DataParallel/DDP (``module``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Strip wrapper prefixes from every key, so a compiled or DDP model's weights load into a plain one."""
    cleaned = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def checkpoint_payload(model: nn.Module) -> dict[str, Any]:
    """The model part of a checkpoint: format version, config, vocab size, and the unwrapped state_dict."""
    inner = unwrap_model(model)
    return {
        "format_version": FORMAT_VERSION,
        "model_config": to_plain(inner.config),  # plain lists, not tuples: readable anywhere
        "vocab_size": int(inner.vocab_size),
        "model_state": clean_state_dict(inner.state_dict()),
    }


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file + ``os.replace``): a crash never leaves a torn checkpoint."""
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:  # a programming error in the caller, not a user's
        raise ValueError(f"checkpoint payload lacks {missing}; start from checkpoint_payload(model)")
    try:  # a stop signal waits for the file to be whole (torch's writer would report it as a write error)
        with signals_deferred(), atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the data (power loss, kill -9 of the VM)
    except (OSError, RuntimeError) as e:  # torch's writer reports a full disk as RuntimeError
        reason = first_line(e)[:200]
        raise CheckpointError(f"{path}: could not write the checkpoint ({reason}); the previous file, if any, is "
                              f"unchanged: free disk space (or raise the file size limit) and rerun") from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint saved by :func:`save_checkpoint`; tensors go to ``map_location`` (CPU by default).

    Missing, truncated, corrupt or foreign files raise :class:`CheckpointError` with one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (train the model first, or check the path)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a bad file
        raise _unreadable(path, e) from e
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a seqlab checkpoint (expected keys: {', '.join(REQUIRED_KEYS)})")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']!r} is not supported (this seqlab reads "
            f"format {FORMAT_VERSION}); retrain the model"
        )
    return payload


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error for a file ``torch.load(weights_only=True)`` refused.  torch's own message for a file that holds
    Python objects advises loading it unsafely; that advice is dropped: such a file is no seqlab checkpoint, and
    loading it unsafely would run whatever code it carries."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return CheckpointError(f"{path}: not a readable checkpoint: it holds a Python object ({found.group(1)}) beyond "
                               f"tensors and plain values, which seqlab never loads; delete it and retrain (a file "
                               f"from elsewhere may carry code: do not load it by other means)")
    reason = "torch's safe loader refused it" if re.search(r"weights[_ ]only", text, re.I) else first_line(error)[:200]
    return CheckpointError(f"{path}: not a readable checkpoint ({reason}); delete it and retrain")


def model_from_checkpoint(payload: dict[str, Any], device: str | torch.device = "cpu") -> SequenceModel:
    """Rebuild the model a payload describes, load its weights, move it to ``device``; returned in eval mode."""
    try:
        config = parse_dataclass(ModelConfig, payload["model_config"], "checkpoint model_config")
        model = build_model(config, payload["vocab_size"], where="checkpoint model_config")
        model.load_state_dict(clean_state_dict(payload["model_state"]))
    except KeyError as e:
        raise CheckpointError(f"checkpoint lacks key {e.args[0]!r} (expected keys: {', '.join(REQUIRED_KEYS)})") from e
    except ConfigError as e:
        raise CheckpointError(f"checkpoint was written by another seqlab version: {e}") from e
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shape mismatch
        reason = str(e).replace("\n", " ").replace("\t", "")
        raise CheckpointError(f"checkpoint weights do not fit its model_config: {reason[:300]}") from e
    return model.to(device).eval()
