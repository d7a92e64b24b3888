"""The plotting modules change nothing when imported or when they draw: no backend chosen, no rcParams
touched, pyplot never loaded (pipeline promises no import-time side effects; a caller's interactive
backend stays theirs)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

MODULES = ("pipeline.evaluation.plots", "pipeline.training.plots", "pipeline.curriculum.plots", "pipeline.midi.pianoroll")

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


@pytest.mark.parametrize(("scale", "expected"), [(0.5, {"1", "10"}), (0.05, {"0.1", "1"}), (2.5, {"3", "5"})])
def test_the_gradient_norm_plot_labels_its_log_axis_with_plain_numbers(scale, expected):
    """No ``$10^{0}$``-style labels: they cost matplotlib's TeX-like parser at every training's end.  Decades
    are labelled; so are 2, 3 and 5 times a power of ten when the view spans at most one decade."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pipeline.training.plots import grad_norms_plot

    span = 40 if scale < 1 else 3  # 0.5-20 and 0.05-2 span decades; 2.5-7.5 spans less than one
    intervals = [{"step": s, "grad_norm_mean": scale * s, "grad_norm_max": scale * s * 1.1,
                  "grad_norm_clipped_mean": scale * s, "clip_rate": 0.1} for s in range(1, span + 1)]
    fig = grad_norms_plot(intervals, threshold=None)
    FigureCanvasAgg(fig).draw()
    axis = fig.axes[0].yaxis
    labels = [t.get_text() for t in axis.get_majorticklabels() + axis.get_minorticklabels() if t.get_text()]
    assert expected <= set(labels), labels
    assert all(float(label) > 0 for label in labels), labels  # plain numbers: no "$", no "\\times"
    if span == 40:  # over decades only the decades are labelled
        assert all(math.log10(float(label)).is_integer() for label in labels), labels
