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
        "device": str(device),  # plain str: a torch.device or TorchVersion would import torch where unpickled
        "torch_version": str(torch.__version__),
        "dvc_stage": os.environ.get("DVC_STAGE", "none"),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(extra or {})
    return tags


#: Tags that say which process owns a run, so that a later stage can tell a live run from one whose process
#: was killed (``kill -9``, a lost machine) and close it: see :func:`process_gone`.
PID_TAG, HOST_TAG, BOOT_TAG, START_TAG = "seqlab.pid", "seqlab.host", "seqlab.boot_id", "seqlab.pid_start"


def process_tags(pid: int | None = None) -> dict[str, str]:
    """The tags naming this process (or ``pid``): process id, host name, boot id and the process start time."""
    pid = pid or os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), BOOT_TAG: boot_id(),
            START_TAG: start_ticks(pid) or "unknown"}


def process_gone(tags: dict[str, str]) -> bool:
    """True when the process named by ``tags`` (see :func:`process_tags`) has certainly ended.

    Only a process of this very machine and boot can be checked (same host name and boot id); anything
    else counts as alive.  A reused process id is told apart by the process start time.
    """
    if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname() or tags.get(BOOT_TAG) != boot_id():
        return False
    if not tags[PID_TAG].isdigit() or int(tags[PID_TAG]) == os.getpid() or not Path("/proc").is_dir():
        return False
    start = start_ticks(int(tags[PID_TAG]))
    return start is None or tags.get(START_TAG, "unknown") not in ("unknown", start)
