"""The figures users compare: the report's ``reports/metrics.json`` (the one DVC metrics file) and ``seqlab
compare`` (``make compare``), which lays the workspace and every experiment side by side, variants as rows."""

from __future__ import annotations

import json
import math
import sys

import pytest
import yaml

from pipeline.evaluation.compare import ComparisonError, comparison_table, experiments
from pipeline.evaluation.music_report import DISTANCES
from pipeline.files import read_json, write_json
from stages import report as report_stage
from tests.test_e2e import DATASET, STAGES, VARIANTS, small
from tests.test_pipeline_dvc import _run, make_repo
from tests.train_helpers import tiny_params, tiny_run

SUMMARY = "reports/metrics.json"
PARAMS = tiny_params(
    {"names-char-lstm": tiny_run(), "names-char-bilstm": tiny_run("bilstm", direction="bi"),
     "tunes-note-gru": tiny_run("gru", "gru", dataset="tunes-note")},
    {"evaluate": {"baselines": {"names-char": {"order": 3}}, "register_champion": False}}, tracking="none")


MUSIC, FLOOR = [0.01, 0.02, 0.03, 0.04], [0.001, 0.002, 0.003, 0.004]  # per distance, in DISTANCES' order
SHOWN_AS = ["music_pitch_class", "music_note_length", "music_onset_interval", "music_polyphony"]


def _write_figures(root) -> None:
    """What train, evaluate and baseline leave on disk, with figures chosen by hand."""
    for dataset, variant in (("names-char", "lstm"), ("names-char", "bilstm"), ("tunes-note", "gru")):
        write_json(root / f"models/{dataset}/{variant}/metrics.json", {"parameters": 900, "val_perplexity": 5.0})
    write_json(root / "metrics/names-char/lstm.json", {"val": {"perplexity": 5.2, "bpc": 2.38},
                                                       "test": {"perplexity": 5.5, "bpc": 2.46, "lanes": 1}})
    write_json(root / "metrics/names-char/bilstm.json", {"test": {"forward_perplexity": 6.0, "backward_perplexity": 5.8,
                                                                  "bpc": 2.58}})
    write_json(root / "metrics/names-char/ngram.json", {"order": 3, "test": {"perplexity": 5.9, "bpc": 2.56}})
    write_json(root / "metrics/tunes-note/gru.json", {"test": {"perplexity": 30.0},
                                                      "music": {**dict(zip(DISTANCES, MUSIC, strict=True)),
                                                                "reference": {"pitch_range": 20.0},
                                                                "floor": dict(zip(DISTANCES, FLOOR, strict=True))}})


def test_the_report_writes_the_figures_users_compare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    _write_figures(tmp_path)
    assert report_stage.main([]) == 0
    music, floor = dict(zip(SHOWN_AS, MUSIC, strict=True)), dict(zip(SHOWN_AS, FLOOR, strict=True))
    assert read_json(tmp_path / SUMMARY) == {
        "names-char": {"lstm": {"test_perplexity": 5.5, "test_bpc": math.log2(5.5)},
                       "bilstm": {"test_perplexity": 6.0, "test_perplexity_backward": 5.8, "test_bpc": math.log2(6.0)},
                       "ngram": {"test_perplexity": 5.9, "test_bpc": math.log2(5.9)}},
        "tunes-note": {"gru": {"test_perplexity": 30.0, **music}, "val vs test": floor}}


def _exp_show(names: list[str], ppl: float = 5.5) -> list[dict]:
    """``dvc exp show --json`` as DVC 3 prints it: the workspace, the commit, and the commit's experiments."""
    def rev(rev_id: str, name: str | None, figures: dict | None) -> dict:
        metrics = {SUMMARY: {"data": figures}} if figures else {}
        return {"rev": rev_id, "name": name, "data": {"rev": rev_id, "metrics": metrics}, "error": None}

    summary = {"names-char": {"lstm": {"test_perplexity": ppl, "test_bpc": 2.46}, "ngram": {"test_perplexity": 5.9}}}
    exps = [{"revs": [rev(f"{i:040x}", n, {"names-char": {"lstm": {"test_perplexity": ppl + i}}})], "name": n}
            for i, n in enumerate(names, 1)]
    exps.append({"revs": [rev("f" * 40, "queued-one", None)], "name": "queued-one"})  # nothing to show yet
    return [{**rev("workspace", None, summary), "experiments": None},
            {**rev("a" * 40, "main", summary), "experiments": exps}]


def test_the_table_has_variants_as_rows_and_wraps_experiments_within_the_width():
    names = [f"exp-{i:02d}-tuned-lr" for i in range(1, 31)]
    columns = experiments(_exp_show(names), SUMMARY)
    assert list(columns) == ["workspace", "main", *names]  # the queued experiment has no figures
    table = comparison_table(columns, width=200)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 200
    assert all(name in table for name in names) and table.count("workspace") == 1
    heads = [line for line in lines if line.startswith("dataset")]
    assert len(heads) >= 3  # 32 columns do not fit one block of 200 characters
    assert lines[1].split() == ["names-char", "lstm", "test_perplexity", "5.500", "5.500", *(
        f"{5.5 + i:.3f}" for i in range(1, len(heads[0].split()) - 4))]
    ngram = next(line for line in lines if "ngram" in line).split()
    assert ngram[:4] == ["ngram", "test_perplexity", "5.900", "5.900"] and set(ngram[4:]) == {"-"}
    assert max(map(len, comparison_table(columns, width=80).splitlines())) <= 80


def test_nothing_to_compare_is_one_line():
    with pytest.raises(ComparisonError, match="no experiment has reports/metrics.json.*run `dvc repro`"):
        comparison_table(experiments([{"rev": "workspace", "name": None, "data": {"metrics": {}}}], SUMMARY))


def _untracked(params: dict) -> None:
    small(params)
    params["train"]["defaults"]["tracking"] = "none"


@pytest.mark.slow
def test_after_dvc_repro_and_an_experiment_compare_fits_200_columns(tmp_path):
    repo = make_repo(tmp_path, _untracked)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {k: v for k, v in dvc_yaml["stages"].items() if k in STAGES}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]
    result = _run([*dvc, "repro"], repo)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for cmd in (["config", "user.email", "t@t"], ["config", "user.name", "t"], ["add", "-A"], ["commit", "-qm", "r"]):
        assert _run(["git", *cmd], repo).returncode == 0
    exp = _run([*dvc, "exp", "run", "-n", "ngram2", "-S", f"evaluate.baselines.{DATASET}.order=2"], repo)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]

    shown = _run([*dvc, "metrics", "show", "--json"], repo)  # the summary is the one metrics file
    assert [list(rev["data"]) for rev in json.loads(shown.stdout).values()] == [[SUMMARY]]
    header = _run([*dvc, "exp", "show", "--md", "--no-pager"], repo).stdout.splitlines()[0]
    assert header.split("|")[3].strip().startswith(f"{DATASET}.")  # Experiment, Created, then the summary
    compared = _run([sys.executable, "-m", "stages.cli", "compare"], repo)  # what `make compare` runs
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert max(map(len, lines)) <= 200 and lines[1].split()[3:] == ["workspace", "master", "ngram2"]
    for variant in VARIANTS:
        ppl = read_json(repo / f"metrics/{DATASET}/{variant}.json")["test"]["perplexity"]
        row = next(line for line in lines if f" {variant} " in line and "test_perplexity" in line)
        assert row.split()[-3:] == [f"{ppl:.3f}"] * 3  # the experiment changed only the baseline
    ngram = [line.split()[-3:] for line in lines if "ngram" in line and "test_perplexity" in line][0]
    assert ngram[0] == ngram[2] != ngram[1]  # the workspace holds the experiment's results; master the commit's
