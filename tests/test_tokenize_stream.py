"""The streamed tokenize stage writes byte for byte what the one-shot, in-memory path writes, in bounded memory.

The oracle is the pre-streaming behaviour: ``_oracle_records`` is a verbatim copy of how the stage read and
split a corpus before it streamed (whole files, lists of records), and ``tokenize_splits`` + ``write_dataset``
tokenized and wrote it.  Tiny block sizes put block boundaries inside a ``\\r\\n``, inside multi-byte UTF-8
characters, inside paragraph separators and at the ends of files without a final newline.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import files
from pipeline.config import SplitConfig, TokenizeConfig
from pipeline.data import reading
from pipeline.data.reading import TextCorpusError, iter_text, read_text
from pipeline.data.text import iter_split_blocks, plan_splits
from pipeline.tokenization import stream, tokenize_splits, word
from pipeline.vocab import Vocabulary
from tests.conftest import REPO_ROOT

OUTPUTS = ("vocab.json", "train.npy", "val.npy", "test.npy", "stats.json")
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
PATTERN = r"^T:\s*(.+)$"

# --------------------------------------------------------------------------- the oracle: reading before streaming


def _oracle_records(raw_dir: Path, record: str, split: SplitConfig, pattern: str | None, dedupe: bool) -> dict:
    out = _oracle_split(raw_dir, record, split, pattern, dedupe)
    if not out["train"]:
        raise TextCorpusError(f"{raw_dir}: no non-blank {record} in the training split; the corpus is empty")
    return out


def _oracle_split(raw_dir: Path, record: str, split: SplitConfig, pattern: str | None, dedupe: bool) -> dict:
    def to_records(t: str) -> list[str]:
        if record == "regex":
            return [" ".join(m.group(1).split()) for m in re.finditer(pattern, t, re.MULTILINE) if m.group(1).strip()]
        if record == "line":
            return [line for line in t.split("\n") if line.strip()]
        if record == "verbatim_line":
            lines = t.split("\n")
            return lines[:-1] if lines and lines[-1] == "" else lines
        paragraphs = [" ".join(x.strip() for x in b.split("\n") if x.strip()) for b in t.split("\n\n")]
        return [p for p in paragraphs if p]

    if split.method == "files":
        out = {name: to_records(read_text(raw_dir / split.files[name])) for name in SPLIT_FILES}
        if dedupe:
            seen: set[str] = set()
            out = {name: [r for r in recs if not (r in seen or seen.add(r))] for name, recs in out.items()}
        return out
    paths = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    records = [r for p in paths for r in to_records(read_text(p))]
    if dedupe:
        records = list(dict.fromkeys(records))
    n = len(records)
    n_val, n_test = round(n * split.val), round(n * split.test)
    n_train = n - n_val - n_test
    if record == "verbatim_line" and split.method == "contiguous" and n:
        ends = np.cumsum([len(r) + 1 for r in records])
        n_train = int(np.searchsorted(ends, round(ends[-1] * (1 - split.val - split.test), 6))) + 1
        n_val = min(n - n_train, int(np.searchsorted(ends, round(ends[-1] * (1 - split.test), 6))) + 1 - n_train)
        n_test = n - n_train - n_val
    order = np.arange(n) if split.method == "contiguous" else np.random.default_rng(split.seed).permutation(n)
    parts = {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train : n_train + n_val]),
             "test": np.sort(order[n_train + n_val :])}
    return {name: [records[i] for i in idx] for name, idx in parts.items()}


def _oracle(raw: Path, cfg: TokenizeConfig, out: Path) -> dict[str, bytes]:
    records = _oracle_records(raw, cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe)
    ds = tokenize_splits(records, cfg, "d")
    files.write_dataset(out, ds.vocab, ds.ids, ds.stats)
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def _streamed(raw: Path, cfg: TokenizeConfig, out: Path, block_bytes: int) -> dict[str, bytes]:
    plan = plan_splits(raw, cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe, block_bytes)
    blocks = lambda: iter_split_blocks(plan, cfg.record, cfg.record_pattern, block_bytes)  # noqa: E731
    stream.write_dataset(blocks, plan.records, cfg, "d", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no temporary id files left behind
    return {name: (out / name).read_bytes() for name in OUTPUTS}


# --------------------------------------------------------------------------- a corpus with every edge


def _write_corpus(raw: Path) -> None:
    """Four files (three also serve as split files): CRLF and lone CR newlines, a BOM, 2- to 4-byte characters,
    a capital sigma to lowercase at a record end, "İ" (lowercases to two characters), blank and whitespace-only
    lines, paragraphs apart by 2, 3 and 4 newlines, duplicates, literal specials, regex titles, no final newline."""
    (raw / "sub").mkdir(parents=True)
    texts = {
        "train.txt": "\ufeffT: The Kesh\r\nX:1\r\n\r\nT:  Out on  the Ocean \r\nΣΟΦΟΣ café naïve ΣΟΦΟΣ\r\r"
                     "Ann\nBob\nAnn\n\n\n  \t\nthe <unk> cat's hat.\nπ ≈ 3.14 😊 don't stop-gap\n",
        "val.txt": "Bob\r\nT: İstanbul ΟΔΟΣ\r\n\r\n\r\nCid <eos> 😊😊\n\n\n\nAnn\n   \nlast line without newline",
        "test.txt": "\n\nT: Ann\nDee — “quoted” ΣΑΣ\r\rtail 🎵\n",
        "sub/extra.txt": "Eve\n\nT: The Kesh\nfoo-bar--baz 'single' \u2028 sep\nCid <eos> 😊😊\nzz",
    }
    for name, content in texts.items():
        (raw / name).write_bytes(content.encode("utf-8"))


SPLITS = {
    "random": SplitConfig(method="random", val=0.2, test=0.15, seed=5),
    "contiguous": SplitConfig(method="contiguous", val=0.2, test=0.1),
    "files": SplitConfig(method="files", files=SPLIT_FILES),
}
LEVELS = {"char": {"level": "char"}, "whitespace": {"level": "word", "word_split": "whitespace"},
          "punctuation": {"level": "word", "word_split": "punctuation"}}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("method", SPLITS)
@pytest.mark.parametrize("record", ["line", "verbatim_line", "paragraph", "regex"])
def test_streamed_equals_one_shot_byte_for_byte(tmp_path, record, method, level):
    raw = tmp_path / "raw"
    _write_corpus(raw)
    for lowercase, dedupe, limits in itertools.product([False, True], [False, True], [(1, None), (2, 7)]):
        cfg = TokenizeConfig(corpus="c", record=record, record_pattern=PATTERN if record == "regex" else None,
                             lowercase=lowercase, dedupe=dedupe, min_freq=limits[0], max_size=limits[1],
                             split=SPLITS[method], **LEVELS[level])
        case = f"{lowercase=} {dedupe=} {limits=}"
        expected = _oracle(raw, cfg, tmp_path / "oracle")
        for block_bytes in (1, 2, 3, 7, 64, reading.BLOCK_BYTES):
            got = _streamed(raw, cfg, tmp_path / f"stream{block_bytes}", block_bytes)
            for name in OUTPUTS:
                assert got[name] == expected[name], f"{case} block_bytes={block_bytes}: {name} differs"


def test_random_corpora_equal_one_shot(tmp_path):
    """Fuzz: random files of newlines, CRs, blanks and multi-byte characters, random configs and blocks."""
    rng = random.Random(7)
    alphabet = ["a", "b", "Ab", " ", "\t", "\n", "\n\n", "\r", "\r\n", "é", "Σ", "😊", "<eos>", "x-y", "'", "T: t"]
    for trial in range(60):
        raw = tmp_path / f"raw{trial}"
        raw.mkdir()
        for i in range(rng.randint(1, 3)):
            body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
            (raw / f"f{i}.txt").write_bytes(("\ufeff" if rng.random() < 0.2 else "").encode() + body.encode())
        record = rng.choice(["line", "verbatim_line", "paragraph", "regex"])
        cfg = TokenizeConfig(corpus="c", record=record, record_pattern=PATTERN if record == "regex" else None,
                             lowercase=rng.random() < 0.5, dedupe=rng.random() < 0.3,
                             split=SplitConfig(method=rng.choice(["random", "contiguous"]), val=rng.choice([0, 0.1, 0.3]),
                                               test=rng.choice([0, 0.2]), seed=trial),
                             **LEVELS[rng.choice(list(LEVELS))])
        block_bytes = rng.choice([1, 2, 5, 16])
        try:
            expected = _oracle(raw, cfg, tmp_path / f"oracle{trial}")
        except TextCorpusError as e:  # no training records: the same error
            with pytest.raises(TextCorpusError, match=re.escape(str(e))):
                _streamed(raw, cfg, tmp_path / f"stream{trial}", block_bytes)
            continue
        assert _streamed(raw, cfg, tmp_path / f"stream{trial}", block_bytes) == expected, (trial, cfg)


# --------------------------------------------------------------------------- reading: errors and offsets


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 1 << 20])
def test_bad_utf8_named_at_its_file_offset_with_read_texts_message(tmp_path, block_bytes):
    path = tmp_path / "book.txt"
    path.write_bytes("héllo\r\n😊 wörld\n".encode() + b"caf\xe9\n")
    with pytest.raises(TextCorpusError) as one_shot:
        read_text(path)
    with pytest.raises(TextCorpusError) as streamed:
        list(iter_text(path, block_bytes))
    assert str(streamed.value) == str(one_shot.value)
    assert f"not valid UTF-8 at byte offset {path.read_bytes().index(b'caf') + 3} (byte 0xe9)" in str(streamed.value)


def test_offset_counts_the_bom_and_binary_files_are_named_binary(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfabc\xe9x")
    for read in (read_text, lambda p: list(iter_text(p, 2))):
        with pytest.raises(TextCorpusError, match=r"byte offset 6 \(byte 0xe9\)"):
            read(bom)
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(TextCorpusError, match=r"data.bin: a binary file, not text \(byte 0x80 at offset 128"):
        list(iter_text(binary, 5))


def test_a_truncated_character_at_the_end_of_a_file_is_an_error(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ok 😊".encode()[:-2])
    with pytest.raises(TextCorpusError, match="byte offset 3 .byte 0xf0."):
        list(iter_text(path, 1))


def test_plan_fails_on_an_empty_training_split_and_a_missing_split_file(tmp_path):
    (tmp_path / "a.txt").write_text("\n \n")
    with pytest.raises(TextCorpusError, match="no non-blank line in the training split"):
        plan_splits(tmp_path, "line", SplitConfig())
    with pytest.raises(TextCorpusError, match="nope.txt: split file for 'val' not found"):
        plan_splits(tmp_path, "line", SplitConfig(method="files", files={"train": "a.txt", "val": "nope.txt",
                                                                           "test": "a.txt"}))


def test_a_corpus_that_changes_between_passes_is_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    plan = plan_splits(tmp_path, "line", SplitConfig(val=0, test=0))
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(TextCorpusError, match="changed while it was being read"):
        list(iter_split_blocks(plan, "line"))


# --------------------------------------------------------------------------- tokenizers and writers


def test_word_regex_gives_the_tokens_of_the_original_pattern():
    original = re.compile(r"<[^<>\s]+>|\w+(?:['’-]\w+)*|[^\w\s]")
    split = word.splitter("punctuation")
    rng = random.Random(3)
    alphabet = list("ab1_ <>'’-.,\n\t\u00a0\u2028éΣ😊") + ["<eos>", "<unk>", "don't", "a-b", "--", "  "]
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert split(s) == original.findall(s), repr(s)


def test_max_size_prefilter_keeps_exactly_the_build_of_all_counts():
    rng = np.random.default_rng(0)
    tokens = [f"w{i}" for i in range(3000)] + ["<eos>", "<unk>"]
    counts = rng.integers(1, 12, len(tokens))  # many ties at every count
    ids = word.FirstSeenIds((t, i) for i, t in enumerate(tokens))
    for min_freq, max_size in [(1, 3), (1, 4), (1, 50), (3, 200), (1, 2999), (1, 5000), (2, None)]:
        cfg = TokenizeConfig(corpus="c", level="word", min_freq=min_freq, max_size=max_size)
        full = Vocabulary.build(dict(zip(tokens, counts.tolist(), strict=True)), min_freq, max_size)
        assert Vocabulary.build(stream._word_counts(ids, counts, cfg), min_freq, max_size) == full


def test_a_wikitext_sized_word_vocabulary(tmp_path):
    """267k distinct words: ids need uint32, and the vocabulary capped by max_size keeps the most frequent."""
    raw = tmp_path / "raw"
    raw.mkdir()
    words = [f"w{i}" for i in range(267_000)]
    (raw / "wiki.txt").write_text("\n".join(" ".join(words[i : i + 20]) for i in range(0, len(words), 20)) + "\nw1 w2\n")
    split = SplitConfig(method="contiguous", val=0.0, test=0.0)
    cfg = TokenizeConfig(corpus="c", level="word", split=split)
    full = _streamed(raw, cfg, tmp_path / "full", 1 << 16)
    assert full == _oracle(raw, cfg, tmp_path / "oracle")
    assert np.load(tmp_path / "full" / "train.npy", mmap_mode="r").dtype == np.uint32
    vocab = Vocabulary.load(tmp_path / "full" / "vocab.json")
    assert len(vocab) == 267_003 and vocab.tokens[3:5] == ("w1", "w2")
    capped = _streamed(raw, TokenizeConfig(corpus="c", level="word", max_size=50_000, split=split), tmp_path / "cap", 1 << 16)
    assert len(Vocabulary.from_dict(json.loads(capped["vocab.json"]))) == 50_000


def test_stream_tokens_matches_write_tokens_and_is_atomic(tmp_path):
    ids = np.random.default_rng(1).integers(0, 70_000, 10_001)
    files.write_tokens(tmp_path / "one.npy", ids, 70_000)
    with files.stream_tokens(tmp_path / "streamed.npy", ids.size, 70_000) as writer:
        for start in range(0, ids.size, 999):
            writer.write(ids[start : start + 999])
    assert (tmp_path / "streamed.npy").read_bytes() == (tmp_path / "one.npy").read_bytes()
    with pytest.raises(files.TokenFileError, match="short.npy: 3 token ids written, 5 counted before: the input "
                       "changed while it was being read; run the stage again"), \
            files.stream_tokens(tmp_path / "short.npy", 5, 10) as writer:
        writer.write(np.arange(3))
    with pytest.raises(files.TokenFileError, match="long.npy: more token ids than the 2 counted"), \
            files.stream_tokens(tmp_path / "long.npy", 2, 10) as writer:
        writer.write(np.arange(3))
    assert not list(tmp_path.glob("*short*")) and not list(tmp_path.glob("*long*"))


def test_stage_fails_on_max_size_before_reading_the_corpus(tmp_path, capsys):
    from stages import tokenize as tokenize_stage

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "bad.txt").write_bytes(b"\xff")
    params = tmp_path / "params.yaml"
    params.write_text("corpora:\n  c: {kind: text, source: {type: path, path: x}}\n"
                      "tokenize:\n  d: {corpus: c, level: word, max_size: 2}\n")
    argv = ["--params", str(params), "--name", "d", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]
    assert tokenize_stage.main(argv) == 2
    assert "max_size=2 leaves no room" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- memory does not grow with the corpus


def _generate_corpus(path: Path, megabytes: int) -> int:
    """Lines of words drawn from a 5,000-word list: a 1 MB random block of text, written ``megabytes`` times."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}{'xyz'[i % 3] * (i % 5)}" for i in range(5000)])
    lines = [" ".join(words[rng.integers(0, 5000, int(n))]) for n in rng.integers(1, 20, 25_000)]
    block = ("\n".join(lines) + "\n").encode()
    with open(path, "wb") as f:
        for _ in range(max(1, round(megabytes * 1e6 / len(block)))):
            f.write(block)
    return path.stat().st_size


#: Runs its arguments as a child and prints that child's peak RSS in KiB.  A process started straight from pytest
#: would report pytest's own RSS at the fork: Linux keeps the high-water mark of the memory image that exec replaces.
_PEAK_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _stage_peak_rss_mb(tmp_path: Path, raw: Path, level: str) -> float:
    """Peak RSS of ``python -m stages.tokenize`` on ``raw`` in a process of its own."""
    params = tmp_path / "params.yaml"
    params.write_text("corpora:\n  c: {kind: text, source: {type: path, path: x}}\ntokenize:\n"
                      f"  d: {{corpus: c, level: {level}, max_size: 50000, split: {{method: random, seed: 1}}}}\n")
    argv = [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "stages.tokenize", "--params", str(params),
            "--name", "d", "--raw", str(raw), "--out", str(tmp_path / f"out-{raw.name}")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("level", ["char", "word"])
def test_stage_peak_memory_does_not_grow_with_the_corpus(tmp_path, level):
    tiny, big = tmp_path / "tiny", tmp_path / "big"
    tiny.mkdir()
    big.mkdir()
    (tiny / "a.txt").write_text("w1 w2\nw3\n")
    corpus_mb = _generate_corpus(big / "corpus.txt", 80) / 2**20
    baseline = _stage_peak_rss_mb(tmp_path, tiny, level)
    peak = _stage_peak_rss_mb(tmp_path, big, level)
    print(f"{level}: peak {peak:.0f} MB, interpreter {baseline:.0f} MB, corpus {corpus_mb:.0f} MB")
    assert peak < baseline + 0.5 * corpus_mb, f"peak {peak:.0f} MB, interpreter {baseline:.0f} MB, corpus {corpus_mb:.0f} MB"
    stats = json.loads((tmp_path / "out-big" / "stats.json").read_text())
    assert sum(stats[s]["tokens"] for s in ("train", "val", "test")) >= (corpus_mb * 2**20 if level == "char" else 1e6)
