"""End to end, as a user runs it: a small `dvc repro` of the real dvc.yaml (download -> tokenize -> train ->
evaluate + baseline -> report) in a temporary git repository, then the MLflow UI in a real browser over the
store that run wrote."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from tests.mlflow_ui import chromium_page, mlflow_server, open_experiment, run_artifacts, show_metric_columns
from tests.test_pipeline_dvc import _run, make_repo

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*noload.*:DeprecationWarning")]

DATASET = "tunenames-char"
VARIANTS = ("rnn", "lstm")
STAGES = ("download", "tokenize", "train", "evaluate", "baseline", "report")


def small(params: dict) -> None:
    """Names only, two tiny variants, one epoch each: the whole pipeline in about a minute."""
    for name, corpus in params["corpora"].items():
        corpus["enabled"] = name == "tunenames"
    params["tokenize"] = {DATASET: params["tokenize"][DATASET]}
    for section in [s for s in params if s not in ("corpora", "tokenize", "train", "evaluate")]:
        del params[section]
    train = params["train"]
    train["defaults"].update(epochs=1, threads=1, progress=False, sample={"n": 2, "max_length": 40,
                                                                         "temperature": 0.8, "top_k": None, "top_p": None})
    train["runs"] = {f"{DATASET}-{v}": {"dataset": DATASET, "variant": v, "overrides": {"batching": "records"},
                                        "model": {"cell": v, "embedding_size": 16, "hidden_size": 32}}
                     for v in VARIANTS}
    params["evaluate"].update(baselines={DATASET: {"order": 3}}, samples={"n": 3, "max_length": 40,
                              "temperature": 0.8, "top_k": None, "top_p": None})


def test_dvc_repro_then_the_mlflow_ui_shows_every_variant_with_perplexity_and_samples(tmp_path):
    repo = make_repo(tmp_path, small)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {k: v for k, v in dvc_yaml["stages"].items() if k in STAGES}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))

    result = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (repo / "reports/summary.md").read_text()
    assert all(v in summary for v in (*VARIANTS, "ngram"))
    for variant in VARIANTS:
        assert (repo / f"samples/{DATASET}/{variant}/samples.txt").read_text().strip()
        assert json.loads((repo / f"metrics/{DATASET}/{variant}.json").read_text())["test"]["perplexity"] > 1
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo)
    assert shown.returncode == 0 and "reports/metrics.json" in shown.stdout and "test_perplexity" in shown.stdout

    with mlflow_server(f"sqlite:///{repo / 'mlflow.db'}", repo / "mlartifacts") as url, chromium_page() as page:
        runs = open_experiment(page, url, DATASET)
        assert set(runs) >= {*VARIANTS, "ngram"}
        table = show_metric_columns(page, ["test_perplexity"])
        for variant in (*VARIANTS, "ngram"):
            value = float(table[variant]["test_perplexity"])
            expected = json.loads((repo / f"metrics/{DATASET}/{variant}.json").read_text())["test"]["perplexity"]
            assert value == pytest.approx(expected, rel=1e-4)
        artifacts = run_artifacts(page, url, DATASET, "lstm")
        assert "samples/samples.txt" in artifacts
