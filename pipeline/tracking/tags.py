"""Run tags that make a tracked run traceable: git commit and dirty flag, DVC stage, data hash, device, torch."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from pipeline.process import boot_id, start_ticks


def git_state(root: str | Path = ".") -> tuple[str, bool]:
    """(commit sha or "none", dirty flag) of the git work tree at ``root``; ("none", True) outside git."""
    try:  # the commands run in order: the second fails in a repository without commits yet
        status, commit = (subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                                         check=True).stdout.strip()
                          for args in (["status", "--porcelain", "--untracked-files=no"], ["rev-parse", "HEAD"]))
    except (OSError, subprocess.SubprocessError):
        return "none", True
    return commit, bool(status)


def data_hash(files: Iterable[str | Path]) -> str:
    """sha256 (first 16 hex digits) over the names and bytes of ``files``, in the order given."""
    digest = hashlib.sha256()
    for path in map(Path, files):
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
    exp = {"dvc_exp_name": os.environ["DVC_EXP_NAME"]} if os.environ.get("DVC_EXP_NAME") else {}
    return {"git_commit": commit, "git_dirty": str(dirty).lower(), "data_hash": data_hash(data_files),
            "device": str(device), "torch_version": str(torch.__version__),
            "dvc_stage": os.environ.get("DVC_STAGE", "none"), **exp, **(extra or {})}


#: Which process owns a run, so that a later stage can close a run whose process was killed (:func:`process_gone`).
PID_TAG, HOST_TAG, BOOT_TAG, START_TAG = "seqlab.pid", "seqlab.host", "seqlab.boot_id", "seqlab.pid_start"


def process_tags() -> dict[str, str]:
    """The tags naming this process: process id, host name, boot id and the process start time."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), BOOT_TAG: boot_id(),
            START_TAG: start_ticks(pid) or "unknown"}


def process_gone(tags: dict[str, str]) -> bool:
    """True when the process named by ``tags`` (see :func:`process_tags`) has certainly ended: only one of this
    very machine and boot can be checked (anything else counts as alive); a reused pid is told by its start time."""
    if (tags.get(HOST_TAG) != socket.gethostname() or tags.get(BOOT_TAG) != boot_id() or not Path("/proc").is_dir()
            or not tags.get(PID_TAG, "").isdigit() or int(tags[PID_TAG]) == os.getpid()):
        return False
    start = start_ticks(int(tags[PID_TAG]))
    return start is None or tags.get(START_TAG, "unknown") not in ("unknown", start)
