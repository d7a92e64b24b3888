"""The plotting modules change nothing when imported or when they draw: no backend chosen, no rcParams
touched, pyplot never loaded (pipeline promises no import-time side effects; a caller's interactive
backend stays theirs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

MODULES = ("pipeline.evaluation.plots", "pipeline.training.plots", "pipeline.tasks.plots", "pipeline.midi.pianoroll")

SCRIPT = """
import importlib, json, sys
import matplotlib
raw = lambda: {k: dict.__getitem__(matplotlib.rcParams, k) for k in dict.keys(matplotlib.rcParams)}
before = raw()  # read raw: rcParams["backend"] would resolve the backend (and load pyplot)
for name in sys.argv[2:]:
    importlib.import_module(name)
after_import = raw()
from pipeline.training.plots import plot_losses
plot_losses([{"step": 2, "val_loss": 1.0}], [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}],
            sys.argv[1])
after_draw = raw()
changed = lambda after: sorted(k for k in before if before[k] != after[k])
print(json.dumps({"import": changed(after_import), "draw": changed(after_draw),
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_importing_and_drawing_leave_the_matplotlib_backend_and_rcparams_alone(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "loss.png"), *MODULES], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"import": [], "draw": [], "pyplot": False}
