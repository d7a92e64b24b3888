"""Strict params parsing and the shared Vocabulary."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import yaml

from pipeline.config import ConfigError, TrainSettings, load_params, parse_params, to_plain
from pipeline.vocab import EOS_ID, PAD_ID, SPECIALS, UNK_ID, Vocabulary, VocabularyError
from tests.conftest import REPO_ROOT

GOOD = {
    "corpora": {"book": {"kind": "text", "source": {"type": "path", "path": "book.txt"}}},
    "tokenize": {"book-char": {"corpus": "book", "level": "char"}},
}


def test_repo_params_file_parses():
    params = load_params(REPO_ROOT / "params.yaml")
    assert "austen" in params.corpora and "austen-char" in params.tokenize


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda p: p["corpora"]["book"].update(kidn="text"), "corpora.book: unknown key 'kidn' (valid: kind, source"),
        (lambda p: p["corpora"]["book"].pop("kind"), "corpora.book: missing key 'kind'"),
        (lambda p: p["corpora"]["book"]["source"].update(type="ftp"), "source.type: 'ftp' is not valid"),
        (lambda p: p["corpora"]["book"]["source"].update(pth="x"), "unknown key 'pth' (valid: type, path, pattern)"),
        (lambda p: p["tokenize"]["book-char"].update(level="byte"), "level: 'byte' is not valid (choose one of: char, word)"),
        (lambda p: p["tokenize"]["book-char"].update(min_freq="2"), "min_freq: expected an integer, got '2'"),
        (lambda p: p["tokenize"]["book-char"].update(corpus="nope"), "unknown corpus 'nope' (valid: book)"),
        (lambda p: p.update(tokenise={}), "unknown section 'tokenise' (valid: corpora, tokenize"),
        (lambda p: p["tokenize"]["book-char"].update(split={"val": 0.6, "test": 0.5}), "must be in [0, 1)"),
        (lambda p: p["tokenize"]["book-char"].update(record="regex"), "record_pattern is required"),
        (
            lambda p: p["tokenize"]["book-char"].update(record="regex", record_pattern="^T:.*$"),
            "needs one capturing group",
        ),
    ],
)
def test_bad_params_are_named(mutate, message):
    import copy

    raw = copy.deepcopy(GOOD)
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        parse_params(raw, "params.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_disabled_corpus_cannot_be_tokenized():
    raw = {
        "corpora": {"book": {"kind": "text", "enabled": False, "source": {"type": "path", "path": "b"}}},
        "tokenize": {"b": {"corpus": "book", "level": "char"}},
    }
    with pytest.raises(ConfigError, match=r"set corpora.book.enabled: true"):
        parse_params(raw, "params.yaml")


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpora: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_vocabulary_build_orders_by_frequency_and_honours_limits():
    counts = Counter({"b": 5, "a": 5, "c": 3, "d": 1})
    vocab = Vocabulary.build(counts)
    assert vocab.tokens == (*SPECIALS, "a", "b", "c", "d")  # ties broken by token
    assert Vocabulary.build(counts, min_freq=2).tokens[3:] == ("a", "b", "c")
    assert Vocabulary.build(counts, max_size=4).tokens == (*SPECIALS, "a")
    assert (PAD_ID, UNK_ID, EOS_ID) == (0, 1, 2)


def test_vocabulary_encode_decode_and_json_roundtrip(tmp_path):
    vocab = Vocabulary.build(Counter("hello"), meta={"level": "char"})
    ids = vocab.encode(list("hex"))
    assert ids.dtype == np.int64 and ids[-1] == UNK_ID
    assert vocab.decode(ids) == ["h", "e", "<unk>"]
    vocab.save(tmp_path / "vocab.json")
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again == vocab and again.meta == {"level": "char"}


def test_max_size_too_small_for_specials():
    with pytest.raises(VocabularyError, match="max_size=2 leaves no room for the 3 specials"):
        Vocabulary.build(Counter("abc"), max_size=2)


def test_vocabulary_load_errors(tmp_path):
    with pytest.raises(VocabularyError, match="run the tokenize"):
        Vocabulary.load(tmp_path / "missing.json")
    (tmp_path / "v.json").write_text('{"tokens": []}')
    with pytest.raises(VocabularyError, match="not a seqlab vocabulary"):
        Vocabulary.load(tmp_path / "v.json")
    with pytest.raises(VocabularyError, match="starts with"):
        Vocabulary(["a", "b", "c"])


def test_a_run_or_baseline_naming_an_unknown_dataset_is_refused():
    import copy

    raw = copy.deepcopy(GOOD)
    raw["train"] = {"defaults": to_plain(TrainSettings()),
                    "runs": {"r": {"dataset": "book-chr", "variant": "lstm", "model": {"cell": "lstm"}}}}
    with pytest.raises(ConfigError, match=r"train.runs.r.dataset: unknown dataset 'book-chr' \(valid: book-char\)"):
        parse_params(raw, "params.yaml")
    raw = copy.deepcopy(GOOD)
    raw["evaluate"] = {"baselines": {"nope": {"order": 3}}}
    with pytest.raises(ConfigError, match=r"evaluate.baselines.nope: unknown dataset 'nope'"):
        parse_params(raw, "params.yaml")


def test_a_shared_train_key_left_out_of_the_params_file_stops_with_its_name():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    del raw["train"]["defaults"]["lr"], raw["train"]["defaults"]["clip"]
    with pytest.raises(ConfigError) as caught:
        parse_params(raw, "params.yaml")
    message = str(caught.value)
    assert message.startswith("params.yaml: train.defaults: missing key(s) lr, clip; write each one out")
    assert "lr: 0.002" in message and "\n" not in message


def test_shared_train_settings_outside_train_defaults_or_unknown_in_it_are_named():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["train"]["defaults"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"^params.yaml: train.defaults: unknown key 'lrr' \(valid: optimizer, lr,"):
        parse_params(raw, "params.yaml")
    del raw["train"]["defaults"]["lrr"]
    raw["train"] = {**raw["train"].pop("defaults"), **raw["train"]}  # the flat layout of older params files
    with pytest.raises(ConfigError, match=r"^params.yaml: train: seed, device, threads, precision and 28 more: the shared settings live under "
                                          r"train.defaults \(valid keys of train: defaults, runs\)"):
        parse_params(raw, "params.yaml")
    raw["train"] = {"runs": raw["train"]["runs"]}
    with pytest.raises(ConfigError, match=r"^params.yaml: train: missing key 'defaults'"):
        parse_params(raw, "params.yaml")


def test_overrides_merge_into_shared_settings_strictly_and_leave_them_alone():
    from pipeline.config import SampleConfig, apply_overrides

    shared = TrainSettings()
    merged = apply_overrides(shared, {"lr": 1, "sample": {"n": 0}}, "x.overrides")
    assert merged.lr == 1.0 and isinstance(merged.lr, float) and merged.sample == SampleConfig(n=0)
    assert shared == TrainSettings() and merged.batch_size == shared.batch_size
    for overrides, message in (({"lrr": 1}, r"x.overrides: unknown key 'lrr' \(valid: optimizer, lr, weight_decay"),
                               ({"lr": "fast"}, r"x.overrides.lr: expected a number, got 'fast'"),
                               ({"warmup_steps": 5, "schedule": "plateau"}, r"x.overrides: warmup_steps works with")):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(shared, overrides, "x.overrides")


def test_a_run_whose_overrides_clash_with_the_shared_settings_stops_every_stage_with_its_name():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["train"]["runs"]["austen-char-lstm"]["overrides"] = {"warmup_steps": 10}  # the shared schedule is plateau
    with pytest.raises(ConfigError, match=r"^params.yaml: train: runs.austen-char-lstm.overrides: warmup_steps works"):
        parse_params(raw, "params.yaml")


def test_runs_and_tasks_read_the_same_optimizer_keys_where_users_write_them():
    import dataclasses

    from pipeline.config import OptimizerSettings, flatten

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = parse_params(raw, "params.yaml")
    keys = [f.name for f in dataclasses.fields(OptimizerSettings)]
    assert keys == ["optimizer", "lr", "weight_decay", "momentum", "clip", "clip_threshold"]
    task = params.curriculum.agreement.train
    assert isinstance(task, OptimizerSettings) and isinstance(params.train.defaults, OptimizerSettings)
    assert task.lr == raw["curriculum"]["agreement"]["train"]["lr"] and task.clip == "norm"  # a task's default
    logged = flatten({"train": to_plain(params.train.settings_for("austen-char-lstm"))})  # the MLflow params
    assert {f"train.{k}": raw["train"]["defaults"][k] for k in keys} == {f"train.{k}": logged[f"train.{k}"] for k in keys}

    raw["curriculum"]["agreement"]["train"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"agreement.train: unknown key 'lrr' \(valid: optimizer, lr, weight_decay"):
        parse_params(raw, "params.yaml")
    del raw["curriculum"]["agreement"]["train"]["lrr"]
    raw["curriculum"]["tagging"]["train"]["lr"] = 0
    with pytest.raises(ConfigError, match=r"tagging.train: lr \(0.0\) and clip_threshold \(1.0\) must be > 0"):
        parse_params(raw, "params.yaml")


def test_a_run_parses_its_overrides_into_a_new_mapping_and_leaves_the_given_one_alone():
    from pipeline.config import DepthConfig, ModelConfig, TrainRunConfig

    given = {"lr": 1, "batching": "records"}
    run = TrainRunConfig("names-char", "rnn", ModelConfig(cell="rnn"), given)
    assert run.overrides == {"lr": 1.0, "batching": "records"} and isinstance(run.overrides["lr"], float)
    assert given == {"lr": 1, "batching": "records"} and isinstance(given["lr"], int)
    depth = DepthConfig(overrides=given)
    assert isinstance(depth.overrides["lr"], float) and isinstance(given["lr"], int)
