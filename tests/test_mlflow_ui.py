"""The MLflow UI as a user sees it: a real sqlite store, a real `mlflow server`, Debian's chromium via Playwright."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.tracking.mlflow_tracker import ensure_experiment
from tests.mlflow_ui import (
    chromium_page,
    click_experiment,
    mlflow_server,
    open_experiment,
    open_runs,
    process_group_members,
    run_artifacts,
    run_metrics,
    screenshot,
    show_metric_columns,
    sidebar,
)

pytestmark = [pytest.mark.slow,
              # mlflow 3.17's sqlalchemy store warns about its own use of `noload`; not ours to fix.
              pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")]

# Final validation perplexities (last step) as the UI should show them.
FINAL = {"lstm": 3.25, "gru": 4.5}


def _build_store(root: Path) -> tuple[str, str]:
    """austen-char with runs lstm and gru: val_perplexity over 3 steps, samples/ text and a PNG each.

    Returns the store's URI and the experiment's id.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    # Created as every seqlab stage creates it: artifacts in <store folder>/mlartifacts/<experiment>, and tagged
    # mlflow.experimentKind = custom_model_development.
    experiment = ensure_experiment("austen-char", tracking_uri=uri)
    samples = root / "upload" / "samples"
    samples.mkdir(parents=True)
    (samples / "sample_0.txt").write_text("It is a truth universally acknowledged\n", encoding="utf-8")
    _write_png(samples / "piano_roll_0.png")
    now = int(time.time() * 1000)
    for name, final in FINAL.items():
        run_id = client.create_run(experiment, run_name=name).info.run_id
        points = [Metric("val_perplexity", final + 2.0 * (2 - step), now + step, step) for step in range(3)]
        client.log_batch(run_id, metrics=points, synchronous=True)
        client.log_artifacts(run_id, str(samples), "samples")
        client.set_terminated(run_id)
    return uri, experiment


def _write_png(path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.imshow([[0, 1, 0], [1, 0, 1]], aspect="auto")
    fig.savefig(path)
    plt.close(fig)


def test_runs_metrics_and_artifacts_show_in_the_browser(tmp_path):
    uri, experiment = _build_store(tmp_path)
    with mlflow_server(uri, tmp_path / "mlartifacts") as url:
        group = process_group_members(url.pgid)
        assert len(group) >= 2, f"expected mlflow and its uvicorn worker in group {url.pgid}, got {group}"
        with chromium_page() as page:
            assert sorted(open_experiment(page, url, "austen-char")) == ["gru", "lstm"]
            table = show_metric_columns(page, ["val_perplexity"])
            assert {run: float(values["val_perplexity"]) for run, values in table.items()} == FINAL
            screenshot(page, tmp_path / "experiment.png")
            assert run_metrics(page, url, "austen-char", "gru") == {"val_perplexity": "4.5"}
            artifacts = run_artifacts(page, url, "austen-char", "lstm")
        with chromium_page(presets=False) as page:  # a new user's browser: no view chosen, nothing remembered
            # MLflow (3.18 too) opens the experiment from the list in its GenAI view, whatever its kind; once this
            # fails, it follows the kind: drop the README's toggle advice and UI_PRESETS' workflowType.
            click_experiment(page, url, "austen-char")
            assert "Model registry" not in sidebar(page, "Judges")
            # The README's link opens the runs table in the Model training view.
            assert sorted(open_runs(page, url, experiment)) == ["gru", "lstm"]
            assert "Judges" not in sidebar(page, "Model registry")
    assert artifacts == ["samples/piano_roll_0.png", "samples/sample_0.txt"]
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
    # No stray worker: every process of the server's group is gone (a zombie awaiting its reaper is gone too).
    assert process_group_members(url.pgid) == []


def test_a_server_that_cannot_start_fails_with_its_log(tmp_path):
    expected = r"(?s)exited with 1 before answering /health.*unsupported URI 'bogus:"
    with pytest.raises(RuntimeError, match=expected), mlflow_server("bogus://nowhere", tmp_path / "mlartifacts"):
        pytest.fail("the server should not have started")
