"""MLflow's module-to-distribution map, computed once per environment and kept on disk (pipeline.tracking.packages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# In a fresh interpreter: warm up model logging (one real MLflow save) and report where the map came from.
# "computed" means MLflow's own packages_distributions() ran; the probe makes it raise when it must not run.
WARM = """
import importlib_metadata, json, sys, tempfile, os
calls = []
real = importlib_metadata.packages_distributions
def probe():
    calls.append(1)
    if sys.argv[1] == "forbid":
        raise AssertionError("packages_distributions ran")
    return real()
importlib_metadata.packages_distributions = probe
from pipeline.tracking.mlflow_tracker import warm_model_logging
from mlflow.utils import requirements_utils
warm_model_logging(os.path.join(tempfile.mkdtemp(), "model"))
print(json.dumps({"computed": len(calls), "map": requirements_utils._MODULES_TO_PACKAGES}))
"""


def warm(home, mode: str = "allow") -> dict:
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_CACHE_HOME", None)
    done = subprocess.run([sys.executable, "-c", WARM, mode], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def kept(home) -> list:
    folder = home / ".cache" / "seqlab"
    return sorted(folder.glob("mlflow-packages-*.json")) if folder.exists() else []


@pytest.mark.slow  # two fresh interpreters importing mlflow and torch: ~15 s
def test_the_second_process_loads_the_map_mlflow_computed_in_the_first(tmp_path):
    first = warm(tmp_path)
    assert first["computed"] == 1
    (path,) = kept(tmp_path)
    assert json.loads(path.read_text()) == first["map"]
    assert "torch" in first["map"]["torch"]  # MLflow's own map: module torch -> distribution torch

    second = warm(tmp_path, "forbid")  # the computation would raise: the map must come from the file
    assert second["computed"] == 0
    assert second["map"] == first["map"]
    assert kept(tmp_path) == [path]


@pytest.mark.slow
def test_a_damaged_file_is_ignored_and_the_map_computed_again(tmp_path):
    warm(tmp_path)
    (path,) = kept(tmp_path)
    path.write_text('{"torch": "not a list"')  # cut short: not JSON
    again = warm(tmp_path)
    assert again["computed"] == 1
    assert json.loads(path.read_text()) == again["map"]  # replaced by the map computed again
    path.write_text(json.dumps({"torch": "not a list"}))  # JSON, not a map
    assert warm(tmp_path)["computed"] == 1
    assert warm(tmp_path, "forbid")["computed"] == 0  # repaired again: the next process loads it


@pytest.mark.slow
def test_an_unwritable_cache_leaves_the_save_working(tmp_path):
    (tmp_path / ".cache").write_text("a file where the cache folder would be")
    result = warm(tmp_path)
    assert result["computed"] == 1 and result["map"]
    assert (tmp_path / ".cache").read_text().startswith("a file")


def test_the_fingerprint_changes_with_what_is_installed(tmp_path):
    from pipeline.tracking import packages

    def fingerprint(paths):
        return packages.fingerprint("3.0", paths)

    site = tmp_path / "site"
    site.mkdir()
    (site / "plain_module.py").write_text("")
    before = fingerprint([str(site)])
    assert fingerprint([str(site)]) == before
    (site / "other.py").write_text("")  # a module alone is no distribution
    assert fingerprint([str(site)]) == before
    (site / "demo-1.0.dist-info").mkdir()  # an install
    installed = fingerprint([str(site)])
    assert installed != before
    (site / "demo-1.0.dist-info").rename(site / "demo-1.1.dist-info")  # an upgrade
    assert fingerprint([str(site)]) not in (before, installed)
    (site / "demo-1.1.dist-info").rmdir()  # an uninstall
    assert fingerprint([str(site)]) == before
    assert fingerprint([str(site), str(tmp_path / "missing"), str(tmp_path / "x.zip")]) == before
    assert packages.fingerprint("3.1", [str(site)]) != before  # another MLflow
    (site / "demo-1.0.dist-info").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert fingerprint([str(site), str(elsewhere)]) == fingerprint([str(site)])  # e.g. a stage's working directory


def test_the_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    from pipeline.tracking.packages import cache_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file("3.0", []).parent == tmp_path / "xdg" / "seqlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_file("3.0", []).parent == Path(os.environ["HOME"]) / ".cache" / "seqlab"


def test_an_mlflow_without_the_global_gets_nothing_and_nothing_is_written(tmp_path, monkeypatch):
    from types import ModuleType

    from pipeline.tracking.packages import keep, seed

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    module = ModuleType("requirements_utils")  # a version that keeps its map elsewhere
    assert seed(module, "9.0") is False and not hasattr(module, "_MODULES_TO_PACKAGES")
    assert keep(module, "9.0") is None
    assert list(tmp_path.iterdir()) == []
    module._MODULES_TO_PACKAGES = {"torch": ["torch"]}  # the name present and computed: kept, then loaded
    written = keep(module, "9.0")
    assert written is not None and written.parent == tmp_path / "seqlab"
    assert keep(module, "9.0") is None  # the file holds it already
    fresh = ModuleType("requirements_utils")
    fresh._MODULES_TO_PACKAGES = None
    assert seed(fresh, "9.0") is True and fresh._MODULES_TO_PACKAGES == {"torch": ["torch"]}
