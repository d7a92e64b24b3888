"""The real dvc.yaml, run by real DVC in a temporary git repository (offline: package sources only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # stages run `python -m ...`
    # As on a user's machine: Python writes __pycache__ next to the modules each stage imports, that is inside
    # the pipeline/ folders the stages depend on (some CI images turn bytecode writing off).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def make_repo(tmp_path: Path, edit_params) -> Path:
    """A fresh git + DVC repo holding this project's pipeline, with params edited by ``edit_params``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    edit_params(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        assert _run(cmd, repo).returncode == 0
    shutil.copy(REPO_ROOT / ".dvcignore", repo / ".dvcignore")  # over the one `dvc init` wrote
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], repo)
    return repo


def text_only(params: dict) -> None:
    """Keep the offline text corpora; drop music and training so the test stays small."""
    for corpus in params["corpora"].values():
        if corpus["kind"] != "text":
            corpus["enabled"] = False
    for section in list(params):
        if section not in ("corpora", "tokenize"):
            del params[section]


def test_dvc_repro_download_tokenize_then_nothing_to_do(tmp_path):
    repo = make_repo(tmp_path, text_only)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {k: v for k, v in dvc_yaml["stages"].items() if k in ("download", "tokenize")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))

    result = _run([sys.executable, "-m", "dvc", "repro", "tokenize"], repo)
    assert result.returncode == 0, result.stdout + result.stderr
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name in params["tokenize"]:
        out = repo / "data" / "tokens" / name
        stats = json.loads((out / "stats.json").read_text())
        assert stats["train"]["tokens"] > 1000 and stats["vocab_size"] > 10
        assert {p.name for p in out.iterdir()} >= {"vocab.json", "train.npy", "val.npy", "test.npy"}
    assert "The" in (repo / "data/raw/austen/en.txt").read_text()[:200]

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert "download" in lock["stages"] and "tokenize@austen-char" in lock["stages"]
    # The tokenize stages imported modules of pipeline/data that download (which depends on it) did not: their
    # bytecode appeared after download's hash was recorded, and must not make download look changed.
    assert list((repo / "pipeline" / "data").glob("__pycache__/text.*.pyc"))
    status = _run([sys.executable, "-m", "dvc", "status", "--json"], repo)
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout
    metrics = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo)  # token counts are outputs:
    assert metrics.returncode == 0 and "vocab_size" not in metrics.stdout  # they never lead `dvc exp show`

    again = _run([sys.executable, "-m", "dvc", "repro", "tokenize"], repo)
    assert again.returncode == 0
    assert "didn't change" in again.stdout or "Data and pipelines are up to date" in again.stdout

    # A params change re-runs only the dataset it touches.
    params["tokenize"]["austen-char"]["lowercase"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([sys.executable, "-m", "dvc", "status", "--json"], repo)
    changed = json.loads(status.stdout)
    assert "tokenize@austen-char" in changed and "tokenize@austen-word" not in changed
