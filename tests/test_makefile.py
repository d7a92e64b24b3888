"""The Makefile's set-up: make repro installs what the pipeline needs, the checks add the dev extra."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(target: str, venv) -> list[str]:
    """The commands ``make <target>`` would run for a virtual environment not created yet."""
    # Under `make test` the outer make's MAKEFLAGS/MAKELEVEL reach this make: without them (and without the
    # directory lines a sub-make prints), the output is the same as from a shell.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    done = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={venv}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_repro_installs_seqlab_without_the_dev_extra(tmp_path):
    lines = dry_run("repro", tmp_path / "venv")
    installs = [line for line in lines if "pip install" in line]
    assert any(line.endswith("-e .") for line in installs)
    assert not any("[dev]" in line for line in lines)
    assert lines[-1].endswith("dvc repro")


@pytest.mark.parametrize("target", ["install", "lint"])
def test_install_and_the_checks_add_the_dev_extra_after_the_runtime(tmp_path, target):
    lines = dry_run(target, tmp_path / "venv")
    runtime = next(i for i, line in enumerate(lines) if line.endswith("-e ."))
    dev = next(i for i, line in enumerate(lines) if '-e ".[dev]"' in line)
    assert runtime < dev


def test_the_checks_leave_byte_compiling_to_one_parallel_pass_after_the_installs(tmp_path):
    lines = dry_run("install", tmp_path / "venv")
    installs = [i for i, line in enumerate(lines) if "pip install" in line]
    compiles = [i for i, line in enumerate(lines) if "-m compileall" in line]
    assert installs and all("--no-compile" in lines[i] for i in installs)
    assert len(compiles) == 1 and "-j 0" in lines[compiles[0]] and compiles[0] > max(installs)


@pytest.mark.parametrize("target", ["repro", "ui"])
def test_the_pipeline_compiles_nothing_ahead_and_writes_bytecode_at_first_import(tmp_path, target):
    lines = dry_run(target, tmp_path / "venv")
    assert [line for line in lines if "pip install" in line]
    assert all("--no-compile" in line for line in lines if "pip install" in line)
    assert not [line for line in lines if "-m compileall" in line]
    assert [line for line in lines if line.startswith("env -u PYTHONDONTWRITEBYTECODE ")]


def test_repro_runs_dvc_with_the_bytecode_cache_on_whatever_the_environment_says(tmp_path):
    """make repro, for real, in an environment with PYTHONDONTWRITEBYTECODE=1: the command it runs (here a
    stand-in for the venv's dvc that records its environment) does not see the variable."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    seen = tmp_path / "seen.txt"
    dvc = venv / "bin" / "dvc"
    dvc.write_text(f'#!/bin/sh\necho "${{PYTHONDONTWRITEBYTECODE-unset}} $*" > {seen}\n')
    dvc.chmod(0o755)
    (venv / ".seqlab-runtime").touch()  # installed: newer than pyproject.toml
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    subprocess.run(["make", "--no-print-directory", "repro", f"VENV={venv}"], cwd=REPO_ROOT, env=env,
                   capture_output=True, text=True, timeout=60, check=True)
    assert seen.read_text().split() == ["unset", "repro"]


@pytest.mark.slow  # imports the pipeline's heavy libraries in a fresh interpreter: ~10 s
def test_the_compile_pass_skips_no_module_the_pipeline_imports(tmp_path):
    """The compile pass leaves out the dependencies' test folders (its -x pattern); no module that the
    stages and their tracking worker import lives under such a path, so none of them compiles at import."""
    import re
    import shlex
    import sys

    (line,) = {line for line in dry_run("install", tmp_path / "venv") if "-m compileall" in line}
    words = shlex.split(line.split('"$(')[0])
    pattern = words[words.index("-x") + 1]
    heavy = ("torch", "torch._dynamo", "torch.optim", "mlflow", "mlflow.pytorch", "mlflow.store.tracking.sqlalchemy_store",
             "pandas", "matplotlib.pyplot", "music21", "dvc.repo", "sqlalchemy", "numpy", "tqdm", "yaml")
    code = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
            "import stages.train, stages.evaluate, stages.baseline, stages.report, stages.download, stages.encode_midi; "
            "print('\\n'.join(getattr(m, '__file__', None) or '' for m in list(sys.modules.values())))")
    done = subprocess.run([sys.executable, "-c", code, *heavy], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, check=True)
    files = [f for f in done.stdout.splitlines() if f.endswith(".py")]
    assert len(files) > 2000  # the heavy stacks were imported
    assert [f for f in files if re.search(pattern, f)] == []
