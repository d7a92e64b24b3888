"""bench/gpu.py --dry-run end to end on generated text: every step of the GPU check runs on the CPU.

Keeps the GPU check runnable between the sessions that get a GPU: it imports bench/bench_train.py's loops,
bench/quality_speed.py's FLOP count and the library's fit, and drives the stages, all of which change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = ["tests", "quality-char", "quality-word", "throughput", "resume"]

pytestmark = pytest.mark.slow


def test_the_gpu_check_dry_run_runs_every_step_on_generated_text(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--dry-run", "--data", str(tmp_path / "no-corpora"),
                           "--work", str(tmp_path / "work")], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "gpu-results.json").read_text())
    assert results["dry_run"] and results["data"].endswith("generated-data")
    steps = results["steps"]
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys(STEPS, "ok"), steps
    assert steps["tests"]["failed"] == 0 and steps["tests"]["passed"] + steps["tests"]["skipped"] > 0
    for name in ("quality-char", "quality-word"):
        assert steps[name]["curve"] and steps[name]["value"] > 0 and steps[name]["steps"] > 0
    assert steps["quality-word"]["test"]["perplexity"] == steps["quality-word"]["value"]
    assert [r["config"] for r in steps["throughput"]["configs"]] == ["char", "word"]
    assert all(r["seqlab_tokens_per_s"] > 0 and r["minimal_tokens_per_s"] > 0 for r in steps["throughput"]["configs"])
    resume = steps["resume"]["default"]
    assert resume["device"] == "cpu" and resume["steps_after_resume"] == resume["steps"]
    assert resume["bit_exact_resume"], resume  # on a CPU the loop resumes exactly
    assert (out / "gpu-curves.png").stat().st_size > 10_000
    summary = (out / "gpu-summary.md").read_text()
    assert "| CUDA tests |" in summary and "resume verdict" in summary
    assert "gpu.log" in {p.name for p in out.iterdir()}
