"""Run tags that make a tracked run traceable: git commit and dirty flag, DVC stage, data hash, device, torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path


def git_state(root: str | Path = ".") -> tuple[str, bool]:
    """(commit sha or "none", dirty flag) of the git work tree at ``root``; ("none", True) outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "none", True
    try:
        commit = git("rev-parse", "HEAD")
    except subprocess.SubprocessError:  # a repository without commits yet
        return "none", True
    return commit, bool(status)


def data_hash(files: Iterable[str | Path]) -> str:
    """sha256 (first 16 hex digits) over the names and bytes of ``files``, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        path = Path(path)
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def run_tags(root: str | Path, data_files: Iterable[str | Path], device: str, extra: dict[str, str] | None = None
             ) -> dict[str, str]:
    """The standard tags of a seqlab run; DVC's ``DVC_STAGE`` and ``DVC_EXP_NAME`` when DVC set them."""
    import torch

    commit, dirty = git_state(root)
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_hash": data_hash(data_files),
        "device": device,
        "torch_version": torch.__version__,
        "dvc_stage": os.environ.get("DVC_STAGE", "none"),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(extra or {})
    return tags
