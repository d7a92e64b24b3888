"""Inputs checked where they enter: each bad input a user can meet ends in one line naming the file or key, the
cause and what to do (a real stage as a subprocess, where a user would see it), and leaves nothing behind.

Token ids against the vocabulary; a url source's file name; a full disk (a real file-size limit, not a mock);
checkpoints that hold Python objects; UTF-16/UTF-32 text; a corpus too short for its splits; archives the
fetcher refuses; a MIDI prime unlike the training music; and the line printed on a stop signal.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import files
from pipeline.vocab import Vocabulary
from tests.conftest import REPO_ROOT
from tests.train_helpers import tiny_model, tiny_params, tiny_run, write_dataset

PARAMS = tiny_params({"names-lstm": tiny_run()},
                     {"evaluate": {"device": "cpu", "samples": {"n": 1, "max_length": 10}}},
                     tracking="none", sample={"n": 1, "max_length": 10})


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def seqlab(root: Path, module: str, *args: str, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env(), capture_output=True,
                          text=True, timeout=180, preexec_fn=preexec)


def one_line(result: subprocess.CompletedProcess, kind: str = "error", code: int = 2) -> str:
    """The single ``seqlab: <kind>:`` line on stderr (and the exit status ``code``)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"seqlab: {kind}: "), result.stderr
    return lines[0]


@pytest.fixture
def names(tmp_path) -> Path:
    """A workspace with params.yaml and the tiny names-char dataset."""
    (tmp_path / "params.yaml").write_text(PARAMS)
    write_dataset(tmp_path / "data/tokens/names-char")
    return tmp_path


def damage(path: Path, position: int, value: int) -> None:
    """Write ``value`` at ``position`` of a token file in place, as a hand edit or a bad disk would."""
    ids = np.load(path, mmap_mode="r+")
    ids[position] = value
    ids.flush()


# ------------------------------------------------------------------------------------ token ids vs vocabulary


def test_train_refuses_a_token_id_outside_the_vocabulary_in_one_line(names):
    vocab = Vocabulary.load(names / "data/tokens/names-char/vocab.json")
    damage(names / "data/tokens/names-char/train.npy", 100, len(vocab) + 7)
    result = seqlab(names, "stages.train", "--run", "names-lstm", "--data", "data/tokens/names-char",
                    "--out", "models/names-char/lstm")
    line = one_line(result)
    assert f"data/tokens/names-char/train.npy: token id {len(vocab) + 7} at position 100 is outside the vocabulary" \
           f" (ids 0..{len(vocab) - 1})" in line
    assert "dvc repro -f tokenize@names-char" in line
    assert not (names / "models/names-char/lstm/model.pt").exists()


def test_evaluate_refuses_a_token_id_outside_the_vocabulary_in_one_line(names):
    from pipeline.models.checkpoint import checkpoint_payload, save_checkpoint

    vocab = Vocabulary.load(names / "data/tokens/names-char/vocab.json")
    model = names / "models/names-char/lstm"
    save_checkpoint(model / "model.pt", checkpoint_payload(tiny_model(len(vocab))))
    damage(names / "data/tokens/names-char/test.npy", 3, 255)
    result = seqlab(names, "stages.evaluate", "--run", "names-lstm", "--data", "data/tokens/names-char",
                    "--model", str(model), "--metrics", "metrics/lstm.json", "--samples", "samples/lstm")
    assert "test.npy: token id 255 at position 3 is outside the vocabulary" in one_line(result)
    assert not (names / "metrics/lstm.json").exists() and not (names / "samples/lstm").exists()


def test_the_check_streams_the_file_in_blocks_and_finds_the_first_bad_id(tmp_path, monkeypatch):
    path = tmp_path / "d/train.npy"
    ids = np.arange(1000) % 300
    ids[[517, 900]] = [301, 400]
    files.write_tokens(path, ids, 401)  # uint16: ids up to 400 fit the dtype, not a vocabulary of 300
    monkeypatch.setattr(files, "_CHECK_IDS", 64)  # blocks of 64 ids: the bad one lies in the ninth
    with pytest.raises(files.TokenIdError, match=r"token id 301 at position 517 is outside .* tokenize@d"):
        files.read_tokens(path, 300)
    assert files.read_tokens(path, 401).shape == (1000,)
    signed = tmp_path / "signed.npy"
    np.save(signed, np.array([4, 5, -2, 3], np.int16))
    with pytest.raises(files.TokenIdError, match="token id -2 at position 2"):
        files.read_tokens(signed, 10)
    files.write_tokens(tmp_path / "empty.npy", np.array([], np.int64), 10)
    assert files.read_tokens(tmp_path / "empty.npy", 10).size == 0


def test_checking_a_large_token_file_keeps_memory_flat(tmp_path):
    """The check reads the file in blocks into one buffer: the peak resident memory of the process grows by the
    buffer (8 MB here), not by the 128 MB file (a scan through the memory map would touch all of its pages)."""
    path, n = tmp_path / "big.npy", 64 << 20
    with files.stream_tokens(path, n, 300) as writer:
        for start in range(0, n, 1 << 22):
            writer.write(np.arange(start, start + (1 << 22), dtype=np.int64) % 300)
    code = ("import sys\n"
            "from pipeline.files import read_tokens\n"
            "def hwm():\n"
            "    status = open('/proc/self/status').read()\n"
            "    return int(status.split('VmHWM:')[1].split()[0]) // 1024\n"
            "before = hwm()\n"
            "ids = read_tokens(sys.argv[1], 300)\n"
            "print(hwm() - before, ids.size)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], env=env(), capture_output=True, text=True,
                            timeout=120)
    grown, size = map(int, result.stdout.split())
    assert size == n and grown < 32, (grown, result.stderr)


def test_write_tokens_writes_the_bytes_of_np_save(tmp_path):
    for vocab_size, ids in ((10, [1, 2, 3]), (300, [1, 299, 5]), (70_000, [0, 69_999]), (5, [])):
        array = np.array(ids, np.int64)
        files.write_tokens(tmp_path / "t.npy", array, vocab_size)
        expected = io.BytesIO()
        np.save(expected, array.astype(files.smallest_uint_dtype(vocab_size - 1)))
        assert (tmp_path / "t.npy").read_bytes() == expected.getvalue()


# ------------------------------------------------------------------------------------ url file names


def url_params(root: Path, url: str, digest: str, extra: str = "") -> None:
    (root / "params.yaml").write_text(
        f"corpora:\n  web:\n    kind: text\n    source:\n      type: url\n      retries: 0\n      files:\n"
        f"        - {{url: '{url}', sha256: '{digest}'{extra}}}\n")


@pytest.mark.parametrize("name", ["../../../x", "sub/x.txt", ".."])
def test_a_url_filename_with_a_folder_is_refused_with_the_corpus_key(tmp_path, file_server, name):
    file_server.files["/a.txt"] = b"text\n"
    url_params(tmp_path, f"{file_server.base}/a.txt", hashlib.sha256(b"text\n").hexdigest(), f", filename: '{name}'")
    result = seqlab(tmp_path, "stages.download", "--params", "params.yaml", "--out", "data/raw")
    line = one_line(result)
    assert "corpora.web.source.files[0]" in line and f"filename {name!r} must be a plain file name" in line
    assert file_server.requests == []  # refused with the params, before anything is fetched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_url_ending_in_dot_dot_is_stored_under_a_plain_name():
    from pipeline.config import UrlFile
    from pipeline.data.fetching import _filename

    assert _filename(UrlFile("https://example.org/corpus/..", "0" * 64)) == "download"
    assert _filename(UrlFile("https://example.org/corpus/a.txt", "0" * 64)) == "a.txt"


# ------------------------------------------------------------------------------------ a full disk


def text_workspace(root: Path, text: bytes, level: str = "char", name: str = "c.txt") -> None:
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "raw" / name).write_bytes(text)
    (root / "params.yaml").write_text(
        f"corpora:\n  c: {{kind: text, source: {{type: path, path: raw}}}}\n"
        f"tokenize:\n  c-{level}: {{corpus: c, level: {level}}}\n")


def tokenize(root: Path, level: str = "char", preexec=None) -> subprocess.CompletedProcess:
    return seqlab(root, "stages.tokenize", "--params", "params.yaml", "--name", f"c-{level}", "--raw", "raw",
                  "--out", f"data/tokens/c-{level}", preexec=preexec)


def lines(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    return "".join(" ".join(rng.choice(words, 8)) + "\n" for _ in range(n)).encode()


@pytest.mark.parametrize(("level", "named"), [("char", "data/tokens/c-char/train.npy"),
                                              ("word", "data/tokens/c-word")])
def test_a_full_disk_during_tokenize_names_the_file_and_the_cause(tmp_path, level, named):
    """A real file-size limit (``ulimit -f``; SIGXFSZ ignored, as a full disk fails a write with an errno): the
    char level fails writing train.npy, the word level its temporary id files inside the output folder."""
    text_workspace(tmp_path, lines(6000), level)
    limit = 60_000

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    line = one_line(tokenize(tmp_path, level, preexec=small_files))
    assert line.startswith(f"seqlab: error: {named}: File too large: ") and "ulimit -f" in line, line
    assert "requested" not in line
    assert sorted(p.name for p in (tmp_path / "data/tokens").iterdir()) == []  # no output, no temporary folder


# ------------------------------------------------------------------------------------ checkpoints


def test_a_checkpoint_holding_python_objects_is_refused_without_unsafe_advice(tmp_path):
    import torch

    class Call:  # unpickling it would call print(): what a malicious file does with os.system
        def __reduce__(self):
            return print, ("this ran",)

    folder = tmp_path / "models/x"
    folder.mkdir(parents=True)
    torch.save({"format_version": 1, "payload": Call()}, folder / "model.pt")
    Vocabulary(["<pad>", "<unk>", "<eos>", "a"], {"kind": "text", "level": "char"}).save(folder / "vocab.json")
    result = seqlab(tmp_path, "stages.cli", "sample", "--model", str(folder), "--n", "1")
    line = one_line(result)
    assert "model.pt: not a readable checkpoint: it holds a Python object (print)" in line
    assert "weights_only" not in line and "this ran" not in result.stdout + result.stderr


def test_a_corrupt_checkpoint_error_repeats_no_torch_advice(tmp_path):
    from pipeline.models.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "model.pt"
    path.write_bytes(b"garbage that is no zip")
    with pytest.raises(CheckpointError, match="model.pt: not a readable checkpoint") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)


# ------------------------------------------------------------------------------------ text encodings


TEXT = "Grüße aus Köln\r\nline two: 𝄞 ✓\n\nthird line\n" * 400


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_text_with_a_byte_order_mark_tokenizes_as_its_utf8_twin(tmp_path, encoding):
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-32-le": b"\xff\xfe\x00\x00",
           "utf-32-be": b"\x00\x00\xfe\xff"}[encoding]
    text_workspace(tmp_path / "utf8", TEXT.encode())
    text_workspace(tmp_path / "other", bom + TEXT.encode(encoding))
    for root in (tmp_path / "utf8", tmp_path / "other"):
        result = tokenize(root)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    for name in ("vocab.json", "train.npy", "val.npy", "test.npy"):
        assert (tmp_path / "other/data/tokens/c-char" / name).read_bytes() == \
               (tmp_path / "utf8/data/tokens/c-char" / name).read_bytes(), name


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_streamed_text_with_a_byte_order_mark_matches_the_whole_file(tmp_path, encoding):
    from pipeline.data.reading import iter_text, read_text

    path = tmp_path / "t.txt"
    path.write_bytes(TEXT.encode(encoding))  # Python writes the BOM for these (little-endian here)
    expected = TEXT.replace("\r\n", "\n")
    assert read_text(path) == expected
    for block in (1, 3, 5, 4096):  # reads that cut code units, surrogate pairs and \r\n apart
        assert "".join(iter_text(path, block)) == expected


def test_bad_utf16_after_its_bom_names_the_encoding_and_offset(tmp_path):
    from pipeline.data.reading import TextCorpusError, iter_text

    path = tmp_path / "t.txt"
    path.write_bytes(b"\xff\xfe" + "abc".encode("utf-16-le") + b"\x00\xdcA\x00")  # a lone low surrogate
    with pytest.raises(TextCorpusError, match=r"not valid UTF-16-LE at byte offset 8 .*iconv -f UTF-16 "):
        "".join(iter_text(path, 3))


# ------------------------------------------------------------------------------------ splits


def test_a_one_line_corpus_warns_that_val_and_test_are_empty(tmp_path):
    text_workspace(tmp_path, b"the rain in spain " * 20_000)  # 360 KB, no newline: one record
    result = tokenize(tmp_path)
    line = one_line(result, "warning", code=0)
    assert "the val and test splits are empty: the corpus has 1 line record" in line
    assert "fold -s" in line and "train stage stops on the empty validation split" in line
    assert (tmp_path / "data/tokens/c-char/train.npy").exists()


def test_a_corpus_with_enough_lines_does_not_warn(tmp_path):
    text_workspace(tmp_path, lines(200))
    result = tokenize(tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


# ------------------------------------------------------------------------------------ archives


def zip_bytes(members: list[tuple[str, bytes, bool]]) -> bytes:
    """A zip of ``(name, content, is_symlink)`` members (a symlink's content is its target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content, link in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = ((stat.S_IFLNK | 0o777) if link else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, content)
    return buffer.getvalue()


@pytest.mark.parametrize(("members", "fragment"), [
    ([("ok.txt", b"text\n", False), ("../evil.txt", b"x", False)], "'../evil.txt' would escape the target folder"),
    ([("ok.txt", b"text\n", False), ("passwd", b"/etc/passwd", True)], "'passwd' is a symbolic link"),
], ids=["escaping-member", "symlink-member"])
def test_a_refused_archive_leaves_nothing_in_raw_or_partial(tmp_path, file_server, members, fragment):
    archive = zip_bytes(members)
    file_server.files["/corpus.zip"] = archive
    url_params(tmp_path, f"{file_server.base}/corpus.zip", hashlib.sha256(archive).hexdigest())
    result = seqlab(tmp_path, "stages.download", "--params", "params.yaml", "--out", "data/raw")
    assert f"corpus 'web': corpus.zip: archive member {fragment}" in one_line(result)
    assert list((tmp_path / "data/raw").iterdir()) == []  # no corpus folder, no .partial, no temporary folder
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data/evil.txt").exists()


# ------------------------------------------------------------------------------------ sampling


def test_a_prime_unlike_the_training_music_warns_with_a_count_share_and_examples(tmp_path):
    from pipeline.evaluation.generate import prime_of_midi
    from pipeline.models.checkpoint import checkpoint_payload, save_checkpoint
    from tests.midi_helpers import melody, write_score
    from tests.test_music_sampling import music_vocab, untrained

    vocab = music_vocab("event")  # pitches 55..79 only
    folder = tmp_path / "models/tunes/gru"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "model.pt", checkpoint_payload(untrained(vocab)))
    vocab.save(folder / "vocab.json")
    low = [f"{name}{octave}" for octave in (1, 2) for name in "CDEFGAB"]  # 14 pitches the vocabulary lacks
    piece = write_score(tmp_path / "low.mid", melody([*low, "G4", "A4"], 0.5))
    prime = prime_of_midi(piece, vocab)
    result = seqlab(tmp_path, "stages.cli", "sample", "--model", str(folder), "--prime-midi", str(piece),
                    "--quarters", "1", "--n", "1", "--seed", "0", "--out", str(tmp_path / "out.mid"))
    line = one_line(result, "warning", code=0)
    share = f"{len(prime.unknown) / len(prime.ids):.0%}"
    assert line.startswith(f"seqlab: warning: {len(prime.unknown)} of the prime's {len(prime.ids)} tokens ({share})")
    distinct = len(dict.fromkeys(prime.unknown))
    examples = line.split("e.g. ")[1].split(" and ")[0].split(", ")
    assert len(examples) == 5 and line.endswith(f"and {distinct - 5} more distinct"), line
    assert all(example.strip("'") in prime.unknown for example in examples)


# ------------------------------------------------------------------------------------ stop signals


def blocked_on_vocab(root: Path, module: str, *args: str) -> tuple[subprocess.Popen, int]:
    """Start a stage whose ``vocab.json`` is a FIFO nobody writes: it waits there, inside its error and signal
    handling.  Returns the stage and the FIFO's write end (opened once the stage is reading)."""
    fifo = root / "data/tokens/names-char/vocab.json"
    fifo.unlink()
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=root, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            return proc, os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once the stage opened it to read
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)


@pytest.mark.parametrize(("module", "note"), [
    ("stages.evaluate", ""),
    ("stages.train", " (the last checkpoint is kept for --resume; the tracking run is marked KILLED if the store answers)"),
])
def test_the_line_printed_on_sigterm_says_only_what_the_stage_keeps(names, module, note):
    common = ["--run", "names-lstm", "--data", "data/tokens/names-char"]
    args = [*common, "--out", "models/m"] if module == "stages.train" else \
        [*common, "--model", "models/m", "--metrics", "metrics/m.json", "--samples", "samples/m"]
    proc, writer = blocked_on_vocab(names, module, *args)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 143, err
    assert err == f"seqlab: terminated by SIGTERM{note}\n"
