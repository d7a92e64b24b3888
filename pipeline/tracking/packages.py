"""MLflow's map of installed modules to their distributions, computed once per environment and kept on disk.

Every MLflow model save checks the model's pip requirements against the environment
(``warn_dependency_requirement_mismatches``).  The first check in a process maps every top-level module of every
installed distribution to its distribution (``importlib_metadata.packages_distributions()``, which reads each
distribution's file list): ~1.2 s for this project's ~150 distributions, on the tracking worker's path to a
stage's model.  The map depends only on what is installed, so:

* the first save in an environment lets MLflow compute the map as always, then writes it to
  ``~/.cache/seqlab/mlflow-packages-<fingerprint>.json`` (``$XDG_CACHE_HOME`` if set; temporary file, then
  ``os.replace``);
* later processes load that file into MLflow's module global before their first save, and MLflow skips the
  computation.

The fingerprint covers the Python and MLflow versions and every ``.dist-info``/``.egg-info`` folder on
``sys.path``, by name (which holds the version) and change time: any install, upgrade or uninstall makes a new
file.  A file that cannot be read, parsed or written is ignored and MLflow computes the map itself, as without
the cache.  The global is MLflow's private ``mlflow.utils.requirements_utils._MODULES_TO_PACKAGES`` (MLflow 2
and 3); in a version without it nothing is seeded or written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

GLOBAL = "_MODULES_TO_PACKAGES"


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seqlab"


def fingerprint(mlflow_version: str, paths: list[str] | None = None) -> str:
    """A digest of what is installed on ``paths`` (default ``sys.path``), with the Python and MLflow versions."""
    digest = hashlib.sha256(f"{sys.version}\0{mlflow_version}\n".encode())
    for entry in sys.path if paths is None else paths:
        folder = entry or os.getcwd()
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip, a missing folder: holds no distribution folder to list
            continue
        if not names:  # the working directory of a stage, a source folder: no distribution here
            continue
        digest.update(f"{os.path.abspath(folder)}\n".encode())
        for name in names:
            with contextlib.suppress(OSError):
                digest.update(f"{name}\0{os.stat(os.path.join(folder, name)).st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cache_file(mlflow_version: str, paths: list[str] | None = None) -> Path:
    return cache_folder() / f"mlflow-packages-{fingerprint(mlflow_version, paths)}.json"


def _valid(data: object) -> bool:
    return isinstance(data, dict) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) for p in v) for k, v in data.items())


def seed(module: ModuleType, mlflow_version: str) -> bool:
    """Load the kept map into ``module`` (MLflow's ``requirements_utils``) if it has none yet; True if loaded."""
    if getattr(module, GLOBAL, "absent") is not None:
        return False
    try:
        data = json.loads(cache_file(mlflow_version).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not _valid(data):
        return False
    setattr(module, GLOBAL, data)
    return True


def keep(module: ModuleType, mlflow_version: str) -> Path | None:
    """Write MLflow's map, once it has computed it, to this environment's cache file unless that holds it
    already (a damaged file is replaced); the file written, or None."""
    data = getattr(module, GLOBAL, None)
    if not _valid(data):
        return None
    target = cache_file(mlflow_version)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(target.read_text(encoding="utf-8")) == data:
            return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, sort_keys=True)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:  # a read-only home, a full disk: the next process computes the map again
        return None
    return target


@contextlib.contextmanager
def kept_map(module: ModuleType, mlflow_version: str) -> Iterator[None]:
    """Around an MLflow model save: MLflow's map loaded from the cache before, kept in the cache after.
    ``module`` is ``mlflow.utils.requirements_utils`` (this module imports no MLflow)."""
    seed(module, mlflow_version)
    yield
    keep(module, mlflow_version)
