"""evaluate, baseline and report stages and `seqlab sample`, on tiny models trained by the real train stage."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from pipeline.config import EvaluateConfig
from pipeline.evaluation.evaluate import score_splits
from pipeline.evaluation.results import Figures, figures_to_metrics, summary_line
from pipeline.files import read_json
from stages import baseline as baseline_stage
from stages import cli
from stages import evaluate as evaluate_stage
from stages import report as report_stage
from stages import train as train_stage
from tests.train_helpers import complete_params, tiny_model, tiny_params, tiny_run, write_dataset

PARAMS = tiny_params(
    {"names-char-lstm": tiny_run(overrides={"batching": "records"}), "names-char-gru": tiny_run("gru", "gru"),
     "names-char-bilstm": tiny_run("bilstm", direction="bi", overrides={"batching": "records"})},
    {"evaluate": {"device": "cpu", "samples": {"n": 3, "max_length": 30, "temperature": 0.8},
                  "baselines": {"names-char": {"order": 3}}}},
    checkpoint_every_steps=200, sample={"n": 1, "max_length": 20})
VARIANTS = ("lstm", "gru", "bilstm")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _migrated_db):
    """Train the three variants once for the module (a few seconds), in their own workspace and store."""
    import shutil

    root = tmp_path_factory.mktemp("workspace")
    shutil.copy(_migrated_db, root / "mlflow.db")
    (root / "params.yaml").write_text(complete_params(PARAMS))
    (root / "data/tokens/names-char").mkdir(parents=True)
    write_dataset(root / "data/tokens/names-char")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        for variant in VARIANTS:
            argv = ["--run", f"names-char-{variant}", "--data", "data/tokens/names-char",
                    "--out", f"models/names-char/{variant}"]
            assert train_stage.main(argv) == 0
    return root


@pytest.fixture
def workspace(trained, monkeypatch):
    monkeypatch.chdir(trained)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained / 'mlflow.db'}")
    return trained


def _evaluate(variant: str) -> int:
    return evaluate_stage.main([
        "--run", f"names-char-{variant}", "--data", "data/tokens/names-char", "--model", f"models/names-char/{variant}",
        "--metrics", f"metrics/names-char/{variant}.json", "--samples", f"samples/names-char/{variant}"])


def test_stream_perplexity_is_the_whole_split_with_state_carried():
    torch.manual_seed(0)
    model = tiny_model(12, cell="gru").eval()
    ids = np.random.default_rng(0).integers(1, 12, size=301)
    figures = score_splits(model, {"test": ids}, EvaluateConfig(batch_size=1, bptt=16), mode="stream",
                           char_level=True, device="cpu")["test"]
    # The reference: one forward pass over the whole split, no windows at all; the split starts at a record
    # boundary, so its first token is predicted from an <eos> context like every other record's first token.
    inputs = np.concatenate([[2], ids[:-1]])
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(inputs[None]))
        nll = torch.nn.functional.cross_entropy(logits[0], torch.as_tensor(ids), reduction="mean").item()
    assert figures["tokens"] == 301
    assert figures["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert figures["bpc"] == pytest.approx(nll / math.log(2), rel=1e-5)


def test_figures_flatten_into_tracker_metrics_and_one_summary_line(tmp_path):
    values = {"val": {"perplexity": 6.3}, "test": {"perplexity": 6.0789, "bpc": 2.6, "tokens": 10},
              "interpolated": {"ngram_order": 4, "model_weight": 0.58, "ngram_fit_seconds": 0.1,
                               "val": {"perplexity": 5.6}, "test": {"perplexity": 5.44}},
              "music": {"pieces": 2, "notes": 12, "closed_notes": 1, "max_note_quarters": 4.0, "in_key_share": None,
                        "reference": {"pieces": 3}}}
    variant = Figures(values, sample_dir=tmp_path, samples=("a.mid", "b.mid"))
    assert figures_to_metrics(variant) == {  # val is the training run's already; None and nested figures stay out
        "test_perplexity": 6.0789, "test_bpc": 2.6, "test_tokens": 10, "interpolated_model_weight": 0.58,
        "interpolated_val_perplexity": 5.6, "interpolated_test_perplexity": 5.44, "music_pieces": 2.0,
        "music_notes": 12.0, "music_closed_notes": 1.0, "music_max_note_quarters": 4.0}
    assert summary_line(variant) == (
        "test perplexity 6.079, 2.600 bpc; mixed with a Kneser-Ney 4-gram (weight 0.580 on the model, fitted on val): "
        f"5.440, 2 sample files in {tmp_path}, 12 sampled notes (1 held longer than 4 quarters closed)")
    assert variant.sample_files == [tmp_path / "a.mid", tmp_path / "b.mid"]
    ngram = Figures({"val": values["val"], "test": {"perplexity": 6.5}}, model="Kneser-Ney 3-gram",
                    tracked_splits=("val", "test"))
    assert figures_to_metrics(ngram) == {"val_perplexity": 6.3, "test_perplexity": 6.5}
    assert summary_line(ngram) == "Kneser-Ney 3-gram, test perplexity 6.500" and ngram.sample_files == []


def test_evaluate_writes_metrics_samples_and_logs_into_the_training_run(workspace):
    from mlflow import MlflowClient

    assert _evaluate("lstm") == 0
    metrics = read_json(workspace / "metrics/names-char/lstm.json")
    assert set(metrics) == {"val", "test"}
    assert metrics["test"]["perplexity"] > 1 and metrics["test"]["bpc"] == metrics["test"]["bits_per_token"]
    text = (workspace / "samples/names-char/lstm/samples.txt").read_text()
    assert len([block for block in text.split("\n\n") if block.strip()]) == 3
    info = read_json(workspace / "models/names-char/lstm/mlflow_run.json")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # the workspace's store, whatever mlflow last used
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_perplexity"] == pytest.approx(metrics["test"]["perplexity"])
    logged = {a.path for a in client.list_artifacts(info["run_id"], "samples")}
    assert "samples/samples.txt" in logged


def test_bidirectional_model_is_scored_per_direction_and_sampled_forward(workspace):
    assert _evaluate("bilstm") == 0
    scored = read_json(workspace / "metrics/names-char/bilstm.json")
    support = len(read_json(workspace / "data/tokens/names-char/vocab.json")["tokens"]) - 1  # <pad> never predicted
    test = scored["test"]
    for direction in ("forward", "backward"):
        loss, perplexity = test[f"{direction}_loss"], test[f"{direction}_perplexity"]
        assert math.isfinite(loss) and 1 < perplexity < support  # a tiny trained model: better than uniform
        assert perplexity == pytest.approx(math.exp(loss), rel=1e-5)
        assert test[f"{direction}_bits_per_token"] == pytest.approx(loss / math.log(2), rel=1e-5)
    assert test["loss"] == pytest.approx((test["forward_loss"] + test["backward_loss"]) / 2, rel=1e-5)  # same tokens
    assert test["perplexity"] == pytest.approx(math.exp(test["loss"]), rel=1e-5) and test["tokens"] > 0
    trained = read_json(workspace / "models/names-char/bilstm/metrics.json")  # the best model, scored again
    for key in ("forward_perplexity", "backward_perplexity", "perplexity"):
        assert scored["val"][key] == pytest.approx(trained[f"val_{key}"], rel=1e-5)
    assert (workspace / "samples/names-char/bilstm/samples.txt").read_text().strip()


def test_interpolate_mixes_each_variant_with_an_ngram_fitted_on_train(workspace):
    """evaluate.interpolate: the figures beside the model's own, the mixture's weight fitted on val, in MLflow."""
    import yaml
    from mlflow import MlflowClient

    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    raw["evaluate"]["interpolate"] = {"names-char": {"order": 3}}
    (workspace / "params-mixed.yaml").write_text(yaml.safe_dump(raw))
    for variant, own in (("lstm", "perplexity"), ("bilstm", "forward_perplexity")):  # bi: its forward direction
        assert evaluate_stage.main([
            "--params", "params-mixed.yaml", "--run", f"names-char-{variant}", "--data", "data/tokens/names-char",
            "--model", f"models/names-char/{variant}", "--metrics", f"metrics-mixed/{variant}.json",
            "--samples", f"samples-mixed/{variant}"]) == 0
        metrics = read_json(workspace / f"metrics-mixed/{variant}.json")
        mixed = metrics["interpolated"]
        assert mixed["ngram_order"] == 3 and 0 <= mixed["model_weight"] <= 1
        for split in ("val", "test"):
            assert mixed[split]["model_perplexity"] == pytest.approx(metrics[split][own], rel=1e-5)
            assert mixed[split]["tokens"] == metrics[split]["tokens"]
        assert mixed["val"]["perplexity"] <= min(mixed["val"]["model_perplexity"], mixed["val"]["ngram_perplexity"])
    info = read_json(workspace / "models/names-char/lstm/mlflow_run.json")
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(info["run_id"]).data.metrics
    assert logged["interpolated_test_perplexity"] == pytest.approx(
        read_json(workspace / "metrics-mixed/lstm.json")["interpolated"]["test"]["perplexity"])


def test_interpolate_without_a_validation_split_is_one_line_and_writes_nothing(workspace, capsys):
    import shutil

    import yaml

    raw = yaml.safe_load((workspace / "params.yaml").read_text())
    raw["evaluate"]["interpolate"] = {"names-char": {"order": 3}}
    (workspace / "params-mixed.yaml").write_text(yaml.safe_dump(raw))
    shutil.copytree(workspace / "data/tokens/names-char", workspace / "data/tokens/no-val", dirs_exist_ok=True)
    np.save(workspace / "data/tokens/no-val/val.npy", np.zeros(0, dtype=np.int64))
    code = evaluate_stage.main([
        "--params", "params-mixed.yaml", "--run", "names-char-gru", "--data", "data/tokens/no-val",
        "--model", "models/names-char/gru", "--metrics", "metrics-no-val/gru.json", "--samples", "samples-no-val/gru"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "evaluate.interpolate.names-char" in err and "val.npy is empty" in err
    assert not (workspace / "metrics-no-val/gru.json").exists() and not (workspace / "samples-no-val/gru").exists()


def test_baseline_and_report_compare_every_variant_and_register_a_champion(workspace):
    import mlflow

    for variant in VARIANTS:
        assert _evaluate(variant) == 0
    assert baseline_stage.main(["--name", "names-char", "--data", "data/tokens/names-char",
                                "--metrics", "metrics/names-char/ngram.json"]) == 0
    ngram = read_json(workspace / "metrics/names-char/ngram.json")
    assert ngram["order"] == 3 and ngram["test"]["perplexity"] > 1
    assert report_stage.main([]) == 0
    summary = (workspace / "reports/summary.md").read_text()
    for row in (*VARIANTS, "ngram", "kneser-ney 3-gram"):
        assert row in summary
    import pandas as pd

    table = pd.read_csv(workspace / "reports/summary.csv")
    assert set(table["variant"]) == {*VARIANTS, "ngram"}
    assert table.loc[table["variant"] == "bilstm", "test_perplexity_backward"].notna().all()
    for png in ("perplexity.png", "val_curves.png", "grad_norms.png"):
        assert (workspace / "reports" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("seqlab-names-char", "champion")
    uni = table[(table["direction"] == "uni") & (table["variant"] != "ngram")]
    best = uni.loc[uni["val_perplexity"].idxmin(), "variant"]
    assert champion.run_id == read_json(workspace / f"models/names-char/{best}/mlflow_run.json")["run_id"]
    model = mlflow.pytorch.load_model("models:/seqlab-names-char@champion")
    for shape in ((1, 5), (3, 17)):  # loads and runs on any batch size and length
        logits, _ = model(torch.randint(3, 10, shape))
        assert logits.shape[:2] == shape
    # A second report with nothing better keeps the same champion version.
    assert report_stage.main([]) == 0
    assert client.get_model_version_by_alias("seqlab-names-char", "champion").version == champion.version


def test_sample_command_primes_warns_and_is_reproducible(workspace, capsys):
    argv = ["sample", "--model", "models/names-char/lstm", "--prime", "the Q", "--n", "2", "--seed", "5",
            "--max-length", "25"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "1 of the prime's 5 tokens (20%) are not in the model's vocabulary" in err and "e.g. 'Q'" in err
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert len(blocks) == 2 and all(b.startswith("the ") for b in blocks)
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == out  # same seed, same samples
    assert cli.main([*argv[:-4], "--out", "s.txt", "--seed", "5", "--max-length", "25"]) == 0
    assert (workspace / "s.txt").read_text().strip() == out.strip()


def test_sample_refuses_a_bidirectional_model_unless_asked_for_its_forward_direction(workspace, capsys):
    assert cli.main(["sample", "--model", "models/names-char/bilstm", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "bidirectional" in err and "--forward-direction" in err and err.count("\n") == 1
    assert cli.main(["sample", "--model", "models/names-char/bilstm", "--n", "1", "--forward-direction"]) == 0


def test_sample_without_a_model_is_one_line(workspace, capsys):
    assert cli.main(["sample", "--model", "models/names-char/nope"]) == 2
    assert "no trained model here" in capsys.readouterr().err


def test_a_model_folder_samples_on_its_own_elsewhere(workspace, tmp_path, capsys):
    import shutil

    moved = tmp_path / "elsewhere" / "lstm"
    shutil.copytree(workspace / "models/names-char/lstm", moved)  # no data/ next to it
    assert cli.main(["sample", "--model", str(moved), "--n", "2", "--seed", "1", "--max-length", "10"]) == 0
    assert len([b for b in capsys.readouterr().out.split("\n\n") if b.strip()]) == 2


def test_report_without_evaluations_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(complete_params(PARAMS))
    assert report_stage.main([]) == 2
    err = capsys.readouterr().err
    assert "report: missing models/names-char/lstm/metrics.json" in err and "dvc repro" in err and err.count("\n") == 1
    assert not (tmp_path / "reports").exists()


def test_missing_or_corrupt_token_file_is_one_line(tmp_path):
    from pipeline.files import TokenFileError, read_tokens

    with pytest.raises(TokenFileError, match=r"val.npy: token file not found; run the tokenize"):
        read_tokens(tmp_path / "val.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(TokenFileError, match="not a readable .npy token array"):
        read_tokens(tmp_path / "bad.npy")
    np.save(tmp_path / "u8.npy", np.array([3, 2], dtype=np.uint8))
    ids = read_tokens(tmp_path / "u8.npy")
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8 and ids.tolist() == [3, 2]  # mapped as stored
    np.save(tmp_path / "f.npy", np.array([0.5]))
    with pytest.raises(TokenFileError, match="expected a 1-D integer array"):
        read_tokens(tmp_path / "f.npy")
