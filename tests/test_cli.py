"""The `seqlab` console command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pipeline
from stages import cli


def test_version_and_help(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"seqlab {pipeline.__version__}"
    assert cli.main([]) == 0
    assert "dvc repro" in capsys.readouterr().out


def test_console_script_is_installed():
    exe = shutil.which("seqlab") or str(Path(sys.executable).parent / "seqlab")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage: seqlab" in out.stdout
