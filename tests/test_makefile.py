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
    stages import lives under such a path, so none of them compiles at import."""
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


# ---------------------------------------------------------------------------------------------- the lock

LOCK = REPO_ROOT / "constraints.txt"


def locked_versions() -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line but comments is exactly one `name==version`."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and name.strip() == name and version and " " not in version, f"not a pin: {line!r}"
        assert canonicalize_name(name) not in pins, f"{name} pinned twice"
        pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("target", ["repro", "install"])
def test_every_install_takes_its_versions_from_the_lock(tmp_path, target):
    installs = [line for line in dry_run(target, tmp_path / "venv") if "pip install" in line]
    assert installs and all(" -c constraints.txt " in line for line in installs)
    seqlab = [line for line in installs if " -e " in line]
    assert seqlab and all("--build-constraint constraints.txt" in line for line in seqlab)
    # torch alone and first (the CPU build; its dependencies come locked with seqlab's), then seqlab
    torch = next(i for i, line in enumerate(installs) if '"torch==' in line)
    assert "--no-deps" in installs[torch] and torch < installs.index(seqlab[0])


def test_the_lock_pins_every_requirement_and_the_makefile_torch():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = locked_versions()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {spec}"
    (torch_line,) = [line for line in dry_run("install", "unused") if '"torch==' in line]
    assert f'"torch=={pins["torch"]}"' in torch_line


def test_the_checks_run_on_the_locked_versions():
    """What `make install` built (and CI tests) is the lock: every locked package installed at its version."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name
    from packaging.version import Version

    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in distributions()}
    pins = locked_versions()
    wrong = {name: installed.get(name) for name, version in pins.items()
             if name not in installed or Version(installed[name]).public != version}
    assert wrong == {}, f"installed versions differ from constraints.txt ({len(pins)} pins): reinstall with " \
                        "`rm .venv/.seqlab-runtime && make install`"


def test_lock_refreshes_from_unlocked_installs_in_a_throwaway_venv(tmp_path):
    lines = dry_run("lock", tmp_path / "venv")
    installs = [line for line in lines if "pip install" in line]
    assert installs and not [line for line in installs if "constraints.txt" in line or str(tmp_path) in line]
    assert any(line.endswith("-e .") for line in installs) and any('-e ".[dev]"' in line for line in installs)
    assert [line for line in lines if "pip freeze --all --exclude-editable" in line and "> constraints.txt.tmp" in line]
    assert lines[-1].startswith("mv constraints.txt.tmp constraints.txt")
