"""The files of one trained variant, ``models/<dataset>/<variant>/``: their names, and reading the two JSON files
later stages need.  dvc.yaml lists the same names as the train stage's outputs.

Layout::

    model.pt         the best model by validation loss (what evaluation and sampling load)
    vocab.json       the dataset's vocabulary, byte for byte, so the folder stands alone for ``seqlab sample``
    mlflow_run.json  the tracking run the figures belong to (run id, experiment, tracking URI)
    metrics.json     final figures, numeric only (``dvc metrics show``)
    epochs.csv       one row per validation: epoch, step, train/val loss and perplexity (``dvc plots``)
    grad_norms.csv   one row per logging interval: gradient norm mean/max before and after clipping, clip rate
    loss.png, grad_norms.png   the two plots, also logged to MLflow

A training in progress keeps what a resume needs in a :class:`WorkFolder`, ``.seqlab/runs/<run folder>/
<fingerprint>/`` under the project root (:func:`work_folder`): outside every DVC output, so neither ``dvc repro``
nor ``dvc exp run`` (which checks the outputs recorded in ``dvc.lock`` out before it runs) removes it, and ignored
by git and DVC.  The run folder gets its files, each replaced whole (``os.replace``), only when the run finishes;
the work folder is then removed.  A run that fails or is killed leaves the run folder as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.errors import UserError

#: The work folders of all trainings in progress, under the project root.
WORK_ROOT = Path(".seqlab") / "runs"


class RunFolderError(UserError):
    """A file of a run folder that is missing or unreadable; the message names it and says to retrain."""


class RunFolder:
    """The folder one training run writes and the evaluate, report and sample commands read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    @property
    def vocab(self) -> Path:
        return self.path / "vocab.json"

    @property
    def run_file(self) -> Path:
        return self.path / "mlflow_run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def epochs(self) -> Path:
        return self.path / "epochs.csv"

    @property
    def grad_norms(self) -> Path:
        return self.path / "grad_norms.csv"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def grad_plot(self) -> Path:
        return self.path / "grad_norms.png"

    @property
    def finished_files(self) -> list[Path]:
        """The figures, series and plots a finished run writes (the files worth logging as artifacts)."""
        return [self.metrics, self.epochs, self.grad_norms, self.loss_plot, self.grad_plot]

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by the one training writing this folder, so that a second one stops with one line instead of
        mixing its files with the first's.  The lock lives in the temp folder and goes with its process."""
        key = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        with open(Path(tempfile.gettempdir()) / f"seqlab-run-{key}.lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFolderError(f"{self.path}: another training is writing this folder; wait for it to end "
                                     f"or stop it") from None
            yield

    def read_run(self) -> dict[str, Any] | None:
        """The tracking run of this model (``run_id``, ``experiment``, ``run_name``, ``tracking_uri``), or None
        when the model was trained untracked (no ``mlflow_run.json``)."""
        if not self.run_file.exists():
            return None
        return _read(self.run_file, "run_id")

    def write_run(self, info: dict[str, Any]) -> None:
        files.write_json(self.run_file, info)

    def read_metrics(self) -> dict[str, Any]:
        """The final figures of the training (``metrics.json``); one line naming the file when it is absent."""
        return _read(self.metrics, "steps")


def _read(path: Path, key: str) -> dict[str, Any]:
    """A JSON object the train stage wrote, with ``key`` in it; one line naming the file otherwise."""
    try:
        content = files.read_json(path)
    except OSError as e:
        raise RunFolderError(f"{path}: {e.strerror}; the training outputs are incomplete: rerun the train stage "
                             f"(dvc repro)") from None
    except ValueError as e:
        raise RunFolderError(f"{path}: not valid JSON ({e}); rerun the train stage (dvc repro)") from None
    if not isinstance(content, dict) or key not in content:
        raise RunFolderError(f"{path}: no {key!r} in it; rerun the train stage (dvc repro)")
    return content


class WorkFolder:
    """What a training in progress keeps for a resume: ``checkpoint.pt`` (the latest) and ``model.pt`` (the best
    so far by validation loss)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"WorkFolder({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def best_model(self) -> Path:
        return self.path / "model.pt"

    def prepare(self) -> None:
        """Check that work folders can be written here (one line naming the folder otherwise); the ``.seqlab``
        folder gets a ``.gitignore`` of its own, so git ignores it even in a project whose ``.gitignore`` does not.
        The folder itself appears with the first checkpoint."""
        top = next((p for p in self.path.parents if p.parts[-2:] == WORK_ROOT.parts), self.path)
        files.ensure_writable_dir(top, "project folder (DVC_ROOT or the working directory)")
        ignore = top.parent / ".gitignore"
        if top != self.path and not ignore.exists():
            files.write_text(ignore, "# trainings in progress (seqlab): never committed\n*\n")

    def clear(self) -> None:
        """Remove an earlier run's checkpoint and best model, so nothing of it is mistaken for this run's."""
        for path in (self.checkpoint, self.best_model):
            path.unlink(missing_ok=True)

    def others(self) -> list[Path]:
        """Checkpoints of the same run folder kept under other settings or data, the newest first."""
        found = [p for p in self.path.parent.glob("*/checkpoint.pt") if p.parent != self.path]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def prune(self) -> None:
        """Remove the folder of a finished run, and the folders above it that this leaves empty, up to
        :data:`WORK_ROOT`."""
        shutil.rmtree(self.path, ignore_errors=True)
        for parent in self.path.parents:
            if parent.parts[-2:] == WORK_ROOT.parts:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty: the checkpoints of other settings or other run folders
                break


def work_folder(out_dir: str | Path, fingerprint: Mapping[str, str], root: str | Path | None = None) -> WorkFolder:
    """The work folder of the run writing ``out_dir`` with ``fingerprint`` (what shaped its weights):
    ``<root>/.seqlab/runs/<out_dir>/<16 hex digits of the fingerprint's sha256>/``.  ``root`` defaults to the
    project root: ``DVC_ROOT`` when DVC runs the stage (the original repository even under ``dvc exp run --temp``
    or ``--queue``), else the working directory, which is then written as a relative path."""
    root = Path(root or os.environ.get("DVC_ROOT") or ".")
    here = Path.cwd().resolve()
    if root.resolve() == here:
        root = Path(".")
    place = os.path.relpath(Path(out_dir).resolve(), here)
    if place.startswith(".."):  # an output folder outside the project: named by its path's digest
        place = "outside-" + hashlib.sha256(str(Path(out_dir).resolve()).encode()).hexdigest()[:12]
    digest = hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:16]
    return WorkFolder(root / WORK_ROOT / place / digest)
