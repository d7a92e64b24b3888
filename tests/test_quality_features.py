"""The quality-benchmark features: adaptive softmax, embedding dropout, warm-up/time-budget schedule,
nanoGPT-style window evaluation and verbatim-line tokenization (tiny real models and data, no mocks)."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
import torch

from pipeline.config import (
    ConfigError,
    EvaluateConfig,
    ModelConfig,
    SplitConfig,
    TokenizeConfig,
    TrainSettings,
    parse_dataclass,
)
from pipeline.config.evaluation import WindowsConfig
from pipeline.data.reading import to_records
from pipeline.data.text import load_split_records, split_records
from pipeline.evaluation.evaluate import score_splits
from pipeline.files import read_tokens
from pipeline.models import AdaptiveSoftmax, build_model
from pipeline.models.checkpoint import checkpoint_payload, load_checkpoint, model_from_checkpoint, save_checkpoint
from pipeline.models.objective import next_token_loss
from pipeline.models.sampling import sample
from pipeline.models.scoring import evaluate_windows
from pipeline.run_folder import RunFolder
from pipeline.tokenization import detokenize, tokenize_splits
from pipeline.training.devices import bf16_unsupported_reason
from pipeline.training.loop import fit
from pipeline.training.optim import StepSchedule, build_scheduler
from pipeline.vocab import EOS_ID, PAD_ID, Vocabulary
from stages import tokenize as tokenize_stage
from tests.model_helpers import VOCAB, random_ids, tiny_model
from tests.train_helpers import TrainingClock, char_dataset, tiny_settings
from tests.train_helpers import tiny_model as tiny_train_model

CUTOFFS = (4, 8)  # VOCAB = 13: a head of ids 0..3 and two tail clusters, 4..7 and 8..12


def adaptive_model(**overrides):
    return tiny_model(softmax="adaptive", cutoffs=CUTOFFS, **overrides)


def every_cluster_targets() -> torch.Tensor:
    """(3, 7) targets covering every id, hence the head and both tails, with some padding."""
    targets = (torch.arange(21) % VOCAB).view(3, 7)
    targets[0, -2:] = PAD_ID
    return targets


def reference_nll(log_probs: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD_ID) -> tuple[torch.Tensor, int]:
    """Summed NLL from full (B, T, V) log-probabilities, pad targets left out: what the cheap path must equal."""
    keep = targets != pad_id
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -picked[keep].sum(), int(keep.sum())


# --------------------------------------------------------------------------- adaptive softmax


def test_adaptive_loss_equals_nll_of_its_log_probs_and_ignores_pad():
    model = adaptive_model().eval()
    assert isinstance(model.output, AdaptiveSoftmax)
    inputs, targets = random_ids(3, 7), every_cluster_targets()
    total, count, _ = next_token_loss(model, inputs, targets, None)
    with torch.no_grad():
        log_probs, _ = model(inputs)  # (B, T, V)
    expected, n = reference_nll(log_probs, targets)
    assert log_probs.shape == (3, 7, VOCAB)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    assert int(count) == n == 17
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)
    total.backward()  # the cheap path trains every cluster that has a target
    for tail in model.output.adaptive.tail:
        assert tail[1].weight.grad is not None and tail[1].weight.grad.abs().sum() > 0


def test_adaptive_all_pad_batch_counts_nothing():
    pads = torch.full((2, 3), PAD_ID)
    with torch.no_grad():
        total, count, _ = next_token_loss(adaptive_model(), random_ids(2, 3), pads, None)
    assert float(total) == 0.0 and int(count) == 0


CPU_BF16_MISSING = bf16_unsupported_reason("cpu")


@pytest.mark.skipif(CPU_BF16_MISSING is not None, reason=f"needs native bf16 on the CPU: {CPU_BF16_MISSING}")
def test_adaptive_under_bf16_autocast_matches_float32():
    model = adaptive_model().eval()
    inputs, targets = random_ids(3, 7), every_cluster_targets()
    with torch.no_grad():
        reference, _, _ = next_token_loss(model, inputs, targets, None)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        total, count, _ = next_token_loss(model, inputs, targets, None)
        log_probs, _ = model(inputs)
    assert total.dtype == torch.float32 and log_probs.dtype == torch.float32  # the head runs in float32
    assert int(count) == 17 and math.isfinite(float(total))
    assert float(total) == pytest.approx(float(reference), rel=2e-2)  # only the recurrent stack ran in bf16
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 7), atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained, _, _ = next_token_loss(model.train(), inputs, targets, None)
    trained.backward()
    assert model.embedding.weight.grad is not None and torch.isfinite(model.embedding.weight.grad).all()


def test_sampling_an_adaptive_model_gives_valid_ids_and_greedy_follows_its_log_probs():
    model = adaptive_model()
    drawn = sample(model, n=5, max_length=12, seed=0)
    assert drawn == sample(model, n=5, max_length=12, seed=0)
    assert len(drawn) == 5 and any(drawn)
    assert all(0 <= t < VOCAB and t not in (PAD_ID, EOS_ID) for row in drawn for t in row)
    # top_k=1: each step must be the argmax of the model's log-probabilities (pad banned), state carried.
    greedy = sample(model, n=1, max_length=6, prime=[5], eos_id=None, top_k=1, seed=0)[0]
    expected, state, token = [], None, torch.tensor([[5]])
    with torch.no_grad():
        for _ in range(6):
            log_probs, state = model.eval()(token, state)  # (1, 1, V)
            scores = log_probs[0, -1].clone()
            scores[PAD_ID] = -math.inf
            token = scores.argmax().view(1, 1)
            expected.append(int(token))
    assert greedy == expected


def test_adaptive_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    model = adaptive_model(num_layers=2).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, checkpoint_payload(model))
    loaded = model_from_checkpoint(load_checkpoint(path))
    assert loaded.config == model.config and isinstance(loaded.output, AdaptiveSoftmax)
    ids, targets = random_ids(2, 9), random_ids(2, 9, seed=4)
    with torch.no_grad():
        assert torch.equal(model(ids)[0], loaded(ids)[0])
        assert torch.equal(next_token_loss(model, ids, targets, None)[0], next_token_loss(loaded, ids, targets, None)[0])


MODEL = {"cell": "lstm", "embedding_size": 8, "hidden_size": 8, "softmax": "adaptive", "cutoffs": [4, 8]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tie_weights": True}, "train.model: tie_weights needs softmax: full"),
        ({"direction": "bi"}, "train.model: softmax: adaptive supports direction: uni only"),
        ({"cutoffs": [8, 4]}, "train.model: cutoffs must be increasing positive ids, got [8, 4]"),
        ({"cutoffs": [4, 4]}, "cutoffs must be increasing positive ids, got [4, 4]"),
        ({"cutoffs": []}, "cutoffs must be increasing positive ids, got []"),
        ({"cutoffs": [0, 4]}, "cutoffs must be increasing positive ids"),
        ({"div_value": 0.5}, "div_value must be >= 1"),
        ({"embedding_dropout": 1.0}, "embedding_dropout must be in [0, 1), got 1.0"),
    ],
)
def test_bad_model_configs_are_one_line_config_errors(fields, message):
    with pytest.raises(ConfigError) as err:
        parse_dataclass(ModelConfig, {**MODEL, **fields}, "train.model")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cutoffs", [(4, 13), (4, 20)])
def test_cutoffs_at_or_above_the_vocabulary_are_refused_by_build_model(cutoffs):
    config = ModelConfig(cell="lstm", embedding_size=6, hidden_size=8, softmax="adaptive", cutoffs=cutoffs)
    with pytest.raises(ConfigError) as err:
        build_model(config, VOCAB, where="train.runs.big.model")
    message = str(err.value)
    assert message.startswith(f"train.runs.big.model.cutoffs: {list(cutoffs)} must all be below the vocabulary size 13")
    assert "\n" not in message
    build_model(ModelConfig(cell="lstm", cutoffs=cutoffs), VOCAB)  # a full softmax ignores the cutoffs


# --------------------------------------------------------------------------- embedding dropout


def test_embedding_dropout_acts_in_training_mode_only():
    ids = random_ids(2, 6)
    plain, dropped = tiny_model(seed=5), tiny_model(seed=5, embedding_dropout=0.5)  # same weights
    with torch.no_grad():
        plain.eval()
        dropped.eval()
        assert torch.equal(plain(ids)[0], dropped(ids)[0])
        assert torch.equal(dropped(ids)[0], dropped(ids)[0])
        plain.train()
        dropped.train()
        torch.manual_seed(0)
        first = dropped(ids)[0]
        second = dropped(ids)[0]
        assert not torch.allclose(first, plain(ids)[0])
        assert not torch.allclose(first, second)  # a fresh mask per forward


# --------------------------------------------------------------------------- schedule and time budget


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_warmup_is_linear_then_cosine_reaches_min_lr_at_progress_one():
    optimizer = _optimizer()
    schedule = StepSchedule(optimizer, "cosine", lr=1.0, min_lr=0.1, warmup_steps=4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25)  # the first step already warms up
    assert [schedule.lr_at(s, 0.0) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert schedule.lr_at(10, 0.5) == pytest.approx(0.55)
    decay = [schedule.lr_at(10, p) for p in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert schedule.lr_at(10, 1.0) == pytest.approx(0.1) and schedule.lr_at(10, 1.7) == pytest.approx(0.1)
    schedule.step(10, 1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    flat = StepSchedule(_optimizer(), "none", lr=2.0, min_lr=0.0, warmup_steps=2)
    assert [flat.lr_at(s, p) for s, p in [(0, 0.0), (1, 0.3), (50, 1.0)]] == pytest.approx([1.0, 2.0, 2.0])


def test_build_scheduler_picks_the_step_schedule_or_plateau():
    assert isinstance(build_scheduler(_optimizer(), TrainSettings(schedule="none")), StepSchedule)
    assert isinstance(build_scheduler(_optimizer(), TrainSettings(schedule="cosine", warmup_steps=3)), StepSchedule)
    plateau = build_scheduler(_optimizer(), TrainSettings(schedule="plateau"))
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schedule": "plateau", "warmup_steps": 5}, "warmup_steps works with schedule none or cosine, not plateau"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0, got -1"),
        ({"time_budget_s": 0}, "time_budget_s must be > 0 seconds or null, got 0"),  # 0.0 once parsed
        ({"time_budget_s": -2.5}, "time_budget_s must be > 0 seconds or null, got -2.5"),
    ],
)
def test_bad_warmup_and_time_budget_are_refused(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainSettings(**fields)
    with pytest.raises(ConfigError) as err:
        parse_dataclass(TrainSettings, fields, "train")
    assert f"train: {message}" in str(err.value) and "\n" not in str(err.value)


def test_time_budget_stops_at_the_step_that_spends_it_and_reports_train_seconds(tmp_path):
    vocab, train, val = char_dataset()
    budget, lr, min_lr = 2.0, 0.01, 1e-3  # 16 steps of 1/8 s (exact in binary: no rounding at the boundary)
    settings = tiny_settings(epochs=100_000, time_budget_s=budget, val_every_steps=10, schedule="cosine", lr=lr,
                             min_lr=min_lr, warmup_steps=3, checkpoint_every_steps=100_000,
                             early_stopping_patience=None)
    model = tiny_train_model(len(vocab))
    result = fit(model, train, val, settings, tmp_path, clock=TrainingClock(model, seconds_per_step=0.125))
    m = result.metrics
    assert result.stop_reason == "time_budget" and m["early_stopped"] == 0
    assert m["steps"] == 16 and m["train_seconds"] == budget  # not a step short of the budget, nor one past it
    with RunFolder(tmp_path).epochs.open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), float(r["train_seconds"])) for r in rows] == [(10, 1.25), (16, 2.0)]
    # The cosine follows the time spent, so the rate has reached min_lr when the budget runs out.
    assert float(rows[-1]["lr"]) == pytest.approx(min_lr)


# --------------------------------------------------------------------------- window evaluation


def _hand_window_nll(model, ids: np.ndarray, length: int, count: int, seed: int) -> float:
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, size=count)
    total = 0.0
    with torch.no_grad():
        for s in starts:
            logits, _ = model(torch.from_numpy(ids[s : s + length]).long()[None])  # (1, L, V), fresh state
            log_probs = torch.log_softmax(logits.double(), dim=-1)
            total += float(reference_nll(log_probs, torch.from_numpy(ids[s + 1 : s + 1 + length])[None], -1)[0])
    return total / (count * length)


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_evaluate_windows_is_the_mean_nll_over_seeded_windows(softmax):
    ids = np.random.default_rng(0).integers(1, VOCAB, size=120).astype(np.int64)
    model = tiny_model(softmax=softmax, cutoffs=CUTOFFS, dropout=0.5).train()  # scored in eval mode
    figures = evaluate_windows(model, ids, length=8, count=10, batch_size=4, seed=5)
    assert model.training  # the mode is restored
    assert figures["tokens"] == 80
    expected = _hand_window_nll(model.eval(), ids, 8, 10, seed=5)
    assert figures["loss"] == pytest.approx(expected, rel=1e-5)
    assert figures["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    other = evaluate_windows(model, ids, length=8, count=10, batch_size=4, seed=6)
    assert other["loss"] != pytest.approx(figures["loss"], rel=1e-9)  # the seed picks the windows


def test_evaluate_windows_refuses_a_too_short_split():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="a split of 9 tokens is too short for windows of 8"):
        evaluate_windows(model, np.arange(1, 10) % VOCAB, length=8, count=3)
    assert evaluate_windows(model, np.arange(1, 11) % VOCAB, length=8, count=3)["tokens"] == 24


def test_evaluate_config_windows_section():
    assert parse_dataclass(EvaluateConfig, {"windows": {"length": 8, "count": 10}}, "evaluate").windows == \
        WindowsConfig(length=8, count=10)
    assert parse_dataclass(EvaluateConfig, {"windows": None}, "evaluate").windows is None
    assert parse_dataclass(EvaluateConfig, {}, "evaluate").windows is None
    assert parse_dataclass(EvaluateConfig, {"windows": {}}, "evaluate").windows == WindowsConfig()
    for windows, message in [({"lenght": 8}, "evaluate.windows: unknown key 'lenght' (valid: length, count)"),
                             ({"length": 0}, "evaluate.windows: length and count must be >= 1"),
                             ({"count": "10"}, "evaluate.windows.count: expected an integer, got '10'"),
                             (8, "evaluate.windows: expected a mapping")]:
        with pytest.raises(ConfigError) as err:
            parse_dataclass(EvaluateConfig, {"windows": windows}, "evaluate")
        assert message in str(err.value) and "\n" not in str(err.value)


def test_score_splits_adds_window_figures_only_when_asked():
    ids = np.random.default_rng(1).integers(1, VOCAB, size=60).astype(np.int64)
    model = tiny_model().eval()
    off = score_splits(model, {"val": ids}, EvaluateConfig(), mode="stream", char_level=False, device="cpu")
    assert not any(k.startswith("window_") for k in off["val"])
    cfg = EvaluateConfig(windows=WindowsConfig(length=8, count=5), seed=2)
    on = score_splits(model, {"val": ids}, cfg, mode="stream", char_level=False, device="cpu")["val"]
    assert {"window_loss", "window_perplexity", "window_bits_per_token"} <= set(on) and "window_tokens" not in on
    assert on["window_loss"] == pytest.approx(evaluate_windows(model, ids, length=8, count=5, seed=2)["loss"], abs=1e-6)


# --------------------------------------------------------------------------- verbatim_line records

PLAY = "FIRST:\nBefore we proceed.\n\nALL:\nSpeak, speak.\n\n\nFIRST:\nYou are all resolved.\n"


def test_verbatim_line_keeps_blank_lines_and_the_stream_is_the_text():
    records = to_records(PLAY, "verbatim_line")
    assert records == PLAY.split("\n")[:-1] and records.count("") == 3
    assert to_records("a\n\nb", "verbatim_line") == ["a", "", "b"]  # no final newline: the last line still counts
    assert to_records(PLAY, "line") == [r for r in records if r]  # plain lines still drop blanks
    ds = tokenize_splits({"train": records, "val": [], "test": []},
                         TokenizeConfig(corpus="c", level="char", record="verbatim_line"), "d")
    assert detokenize(ds.ids["train"], ds.vocab) == PLAY
    assert int((ds.ids["train"] == EOS_ID).sum()) == PLAY.count("\n") and ds.ids["train"].size == len(PLAY)


def _uneven_text() -> str:
    """Many short lines (and blank ones) first, long lines last: a cut by lines and one by characters differ."""
    short = "".join("ab\n" if i % 5 else "\n" for i in range(100))
    long = "".join(f"{'xyz' * 12}{i:02d}\n" for i in range(40))  # 38 characters and a newline each
    return short + long


def test_verbatim_line_contiguous_split_cuts_by_characters(tmp_path):
    text = _uneven_text()
    (tmp_path / "play.txt").write_text(text)
    split = SplitConfig(method="contiguous", val=0.1, test=0.0)
    out = load_split_records(tmp_path, "verbatim_line", split)
    assert out["train"] + out["val"] == text.split("\n")[:-1] and out["test"] == []
    train_chars = sum(len(r) + 1 for r in out["train"])
    mark = 0.9 * len(text)
    assert train_chars >= mark > train_chars - len(out["train"][-1]) - 1  # the cut ends the line holding the mark
    ds = tokenize_splits(out, TokenizeConfig(corpus="c", level="char", record="verbatim_line"), "d")
    assert ds.ids["train"].size / len(text) == pytest.approx(0.9, abs=0.04)
    assert detokenize(ds.ids["train"], ds.vocab) + detokenize(ds.ids["val"], ds.vocab) == text
    # record: line on the same file still cuts by line count (blank lines dropped first).
    lines = load_split_records(tmp_path, "line", split)
    non_blank = [r for r in text.split("\n") if r]
    assert len(lines["val"]) == round(len(non_blank) * 0.1) == 12 and lines["train"] + lines["val"] == non_blank
    assert split_records(non_blank, split) == lines


def test_by_length_split_with_val_and_test_shares():
    records = ["w" * 9] * 100  # equal lengths: a cut by characters is a cut by count
    for val, test in [(0.1, 0.2), (0.2, 0.1), (0.3, 0.0), (0.05, 0.05)]:  # 1 - 0.2 - 0.1 == 0.7000000000000001
        split = SplitConfig(method="contiguous", val=val, test=test)
        assert split_records(records, split, by_length=True) == split_records(records, split), (val, test)
    ragged = ["x" * 99] + ["y"] * 100  # one line holds half the text
    cut = split_records(ragged, SplitConfig(method="contiguous", val=0.4, test=0.0), by_length=True)
    assert cut["train"] == ["x" * 99] + ["y"] * 40 and len(cut["val"]) == 60  # 60 % of 300 characters


def test_tokenize_stage_with_verbatim_line_writes_the_text_as_its_stream(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    text = _uneven_text()
    (raw / "play.txt").write_text(text)
    params = tmp_path / "params.yaml"
    params.write_text("corpora:\n  play: {kind: text, source: {type: path, path: raw.txt}}\n"
                      "tokenize:\n  play-char:\n    corpus: play\n    level: char\n    record: verbatim_line\n"
                      "    split: {method: contiguous, val: 0.1, test: 0.0}\n")
    out = tmp_path / "tokens"
    assert tokenize_stage.main(["--params", str(params), "--name", "play-char", "--raw", str(raw),
                                "--out", str(out)]) == 0
    vocab = Vocabulary.load(out / "vocab.json")
    streams = [read_tokens(out / f"{split}.npy") for split in ("train", "val")]
    assert "".join(detokenize(ids, vocab) for ids in streams) == text
    assert streams[0].size >= 0.9 * len(text) > streams[0].size - 40
