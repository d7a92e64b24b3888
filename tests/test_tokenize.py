"""Records, splits, char/word tokenization and the tokenize stage's outputs and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import SplitConfig, TokenizeConfig
from pipeline.data.reading import TextCorpusError, to_records
from pipeline.data.text import load_split_records, split_records
from pipeline.files import read_tokens
from pipeline.tokenization import detokenize, tokenize_splits
from pipeline.vocab import EOS_ID, UNK_ID, Vocabulary
from stages import tokenize as tokenize_stage


def test_records_by_line_paragraph_and_regex():
    text = "Title one\n\nfirst para\ncontinues here\n\n\nsecond\n"
    assert to_records(text, "line") == ["Title one", "first para", "continues here", "second"]
    assert to_records(text, "paragraph") == ["Title one", "first para continues here", "second"]
    abc = "X:1\nT: The Kesh\nK:G\nX:2\nT:  Out on  the Ocean \n"
    assert to_records(abc, "regex", r"^T:\s*(.+)$") == ["The Kesh", "Out on the Ocean"]


def test_random_split_is_seeded_disjoint_and_keeps_order():
    records = [f"r{i}" for i in range(100)]
    cfg = SplitConfig(method="random", val=0.1, test=0.2, seed=7)
    a, b = split_records(records, cfg), split_records(records, cfg)
    assert a == b
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (70, 10, 20)
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(records)
    assert a["val"] == sorted(a["val"], key=lambda r: int(r[1:]))  # corpus order inside a split
    c = split_records(records, SplitConfig(method="random", val=0.1, test=0.2, seed=8))
    assert c["val"] != a["val"]


def test_contiguous_split_is_head_and_tail():
    records = [str(i) for i in range(10)]
    out = split_records(records, SplitConfig(method="contiguous", val=0.1, test=0.0))
    assert out["train"] == records[:9] and out["val"] == ["9"] and out["test"] == []


def test_files_split_honours_given_files(tmp_path):
    for name, text in {"ptb.train.txt": "a b\nc\n", "ptb.valid.txt": "b\n", "ptb.test.txt": "c a\n"}.items():
        (tmp_path / name).write_text(text)
    split = SplitConfig(method="files", files={"train": "ptb.train.txt", "val": "ptb.valid.txt", "test": "ptb.test.txt"})
    out = load_split_records(tmp_path, "line", split)
    assert out == {"train": ["a b", "c"], "val": ["b"], "test": ["c a"]}
    bad = SplitConfig(method="files", files={"train": "ptb.train.txt", "val": "missing.txt", "test": "ptb.test.txt"})
    with pytest.raises(TextCorpusError, match="missing.txt.*not found.*ptb.test.txt"):
        load_split_records(tmp_path, "line", bad)


def test_dedupe_keeps_first_occurrence(tmp_path):
    (tmp_path / "names.txt").write_text("Ann\nBob\nAnn\nCid\n")
    out = load_split_records(tmp_path, "line", SplitConfig(method="contiguous", val=0.0, test=0.0), dedupe=True)
    assert out["train"] == ["Ann", "Bob", "Cid"]


def test_char_level_vocab_from_train_only_and_eos_per_record():
    records = {"train": ["abc", "ab"], "val": ["abz"], "test": []}
    ds = tokenize_splits(records, TokenizeConfig(corpus="c", level="char"), "d")
    v = ds.vocab
    assert v.tokens[3:] == ("a", "b", "c")  # 'z' only in val: not in the vocabulary
    assert list(ds.ids["train"]) == [v.id("a"), v.id("b"), v.id("c"), EOS_ID, v.id("a"), v.id("b"), EOS_ID]
    assert list(ds.ids["val"]) == [v.id("a"), v.id("b"), UNK_ID, EOS_ID]
    assert ds.stats["val"]["unk_rate"] == 0.25 and ds.stats["train"]["unk_rate"] == 0.0
    assert ds.stats["test"] == {"records": 0, "tokens": 0, "unk_tokens": 0, "unk_rate": 0.0}
    assert detokenize(ds.ids["train"], v) == "abc\nab\n"


def test_word_level_punctuation_whitespace_lowercase_min_freq_max_size():
    records = {"train": ["The cat's hat.", "the <unk> cat!"], "val": ["A dog."], "test": []}
    cfg = TokenizeConfig(corpus="c", level="word", lowercase=True, word_split="punctuation")
    v = tokenize_splits(records, cfg, "d").vocab
    assert {"the", "cat's", "hat", ".", "!", "cat"} <= set(v.tokens)
    assert v.tokens.count("<unk>") == 1  # the corpus' own <unk> is the special
    ws = tokenize_splits(records, TokenizeConfig(corpus="c", level="word", word_split="whitespace"), "d").vocab
    assert "hat." in ws and "The" in ws
    small = tokenize_splits(records, TokenizeConfig(corpus="c", level="word", lowercase=True, max_size=4), "d")
    assert len(small.vocab) == 4 and small.vocab.tokens[3] == "the"
    freq = tokenize_splits(records, TokenizeConfig(corpus="c", level="word", lowercase=True, min_freq=2), "d")
    assert freq.vocab.tokens[3:] == ("the",)  # "cat" once, "cat's" once
    ids = tokenize_splits(records, cfg, "d")
    assert detokenize(ids.ids["train"], ids.vocab) == "the cat's hat .\nthe <unk> cat !\n"


def _params(tmp: Path, tokenize_block: str) -> Path:
    p = tmp / "params.yaml"
    p.write_text(
        "corpora:\n  book: {kind: text, source: {type: path, path: raw.txt}}\n"
        f"tokenize:\n  book-char:\n{tokenize_block}"
    )
    return p


def test_stage_writes_vocab_arrays_and_stats(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "book.txt").write_text("".join(f"line number {i}\n" for i in range(200)))
    params = _params(tmp_path, "    corpus: book\n    level: char\n    split: {val: 0.1, test: 0.1, seed: 3}\n")
    out = tmp_path / "tokens" / "book-char"
    assert tokenize_stage.main(["--params", str(params), "--name", "book-char", "--raw", str(raw), "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    vocab = Vocabulary.load(out / "vocab.json")
    train = read_tokens(out / "train.npy")
    assert np.load(out / "train.npy").dtype == np.uint8  # stored in the smallest dtype for a ~18-token vocabulary
    assert train.dtype == np.uint8 and isinstance(train, np.memmap)  # and read back mapped, as stored
    assert stats["train"]["records"] == 160 and stats["val"]["records"] == 20
    assert stats["train"]["tokens"] == train.size and int((train == EOS_ID).sum()) == 160
    assert stats["vocab_size"] == len(vocab) and vocab.meta["level"] == "char"
    assert stats["train_coverage"] == 1.0


@pytest.mark.parametrize(
    "setup,block,message",
    [
        ("latin1", "    corpus: book\n    level: char\n", "book.txt: not valid UTF-8 at byte offset 9 (byte 0xe9)"),
        ("empty", "    corpus: book\n    level: char\n", "no non-blank line in the training split"),
        ("good", "    corpus: book\n    level: word\n    max_size: 2\n", "max_size=2 leaves no room"),
        ("nofolder", "    corpus: book\n    level: char\n", "corpus folder not found"),
    ],
)
def test_stage_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, setup, block, message):
    raw = tmp_path / "raw"
    if setup != "nofolder":
        raw.mkdir()
        data = {"latin1": "hello caf\xe9\n".encode("latin-1"), "empty": b"\n  \n", "good": b"a b c\n"}[setup]
        (raw / "book.txt").write_bytes(data)
    params = _params(tmp_path, block)
    out = tmp_path / "tokens" / "book-char"
    code = tokenize_stage.main(["--params", str(params), "--name", "book-char", "--raw", str(raw), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and err.count("\n") == 0
    assert not out.exists()
    assert not list((tmp_path / "tokens").glob("*")) if (tmp_path / "tokens").exists() else True


def test_stage_unknown_dataset_lists_valid_ones(tmp_path, capsys):
    params = _params(tmp_path, "    corpus: book\n    level: char\n")
    code = tokenize_stage.main(["--params", str(params), "--name", "nope", "--raw", "x", "--out", str(tmp_path / "o")])
    assert code == 2 and "no dataset 'nope' (valid: book-char)" in capsys.readouterr().err
