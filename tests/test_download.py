"""The download stage against a real HTTP server on 127.0.0.1, local paths and package files."""

from __future__ import annotations

import hashlib
import io as stdio
import socket
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.config import ConfigError, CorpusConfig, PackageSource, PathSource, UrlFile, UrlSource, parse_dataclass
from pipeline.data.download import DownloadError, materialise
from pipeline.data.fetching import extract_archive
from stages import download as download_stage

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 200).encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_corpus(server, *files: tuple[str, bytes], retries: int = 3, timeout_s: float = 5.0) -> CorpusConfig:
    for path, data in files:
        server.files[path] = data
    source = UrlSource(
        "url",
        tuple(UrlFile(server.base + path, sha(data)) for path, data in files),
        timeout_s=timeout_s,
        retries=retries,
    )
    return CorpusConfig("text", source)


def test_url_download_verifies_and_skips_when_current(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    report = materialise("shakes", corpus, tmp_path)
    assert (tmp_path / "shakes" / "input.txt").read_bytes() == TEXT
    assert not report.skipped and report.files == 1
    n_requests = len(file_server.requests)
    again = materialise("shakes", corpus, tmp_path)
    assert again.skipped
    assert len(file_server.requests) == n_requests  # nothing fetched twice


def test_changed_local_file_is_fetched_again(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    materialise("shakes", corpus, tmp_path)
    (tmp_path / "shakes" / "input.txt").write_bytes(b"tampered")
    assert not materialise("shakes", corpus, tmp_path).skipped
    assert (tmp_path / "shakes" / "input.txt").read_bytes() == TEXT


def test_truncated_download_is_resumed_with_range(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    file_server.cut["/input.txt"] = 1000  # first answer drops the connection after 1000 bytes
    materialise("shakes", corpus, tmp_path)
    assert (tmp_path / "shakes" / "input.txt").read_bytes() == TEXT
    ranges = [rng for path, rng in file_server.requests if path == "/input.txt"]
    assert ranges[0] is None and ranges[1] == "bytes=1000-"


def test_partial_file_from_an_interrupted_run_is_resumed(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    partial = tmp_path / ".partial" / "shakes" / "input.txt"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(TEXT[:4096])  # what a killed earlier run left behind
    materialise("shakes", corpus, tmp_path)
    assert (tmp_path / "shakes" / "input.txt").read_bytes() == TEXT
    assert file_server.requests == [("/input.txt", "bytes=4096-")]
    assert not partial.parent.exists()  # cleaned after success


def test_server_errors_are_retried_with_backoff(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    file_server.fail["/input.txt"] = [500, 503]
    materialise("shakes", corpus, tmp_path)
    assert (tmp_path / "shakes" / "input.txt").read_bytes() == TEXT
    assert len(file_server.requests) == 3


def test_404_fails_at_once_with_one_line(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT))
    del file_server.files["/input.txt"]
    with pytest.raises(DownloadError) as err:
        materialise("shakes", corpus, tmp_path)
    msg = str(err.value)
    assert "HTTP 404" in msg and "shakes" in msg and "\n" not in msg
    assert len(file_server.requests) == 1
    assert not (tmp_path / "shakes").exists()


def test_timeout_gives_up_after_retries(file_server, tmp_path):
    corpus = url_corpus(file_server, ("/input.txt", TEXT), retries=1, timeout_s=0.3)
    file_server.delay["/input.txt"] = 1.0
    with pytest.raises(DownloadError, match="after 2 attempts.*type: path"):
        materialise("shakes", corpus, tmp_path)
    assert not (tmp_path / "shakes").exists()


def test_wrong_sha256_is_refused_and_nothing_kept(file_server, tmp_path):
    file_server.files["/input.txt"] = TEXT
    source = UrlSource("url", (UrlFile(file_server.base + "/input.txt", "0" * 64),), retries=0)
    with pytest.raises(DownloadError, match="sha256 mismatch.*expected 0000"):
        materialise("shakes", CorpusConfig("text", source), tmp_path)
    assert not (tmp_path / "shakes").exists()
    assert not list((tmp_path / ".partial").rglob("*.txt"))


def test_offline_names_corpus_url_and_path_alternative(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused, as when offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = UrlSource("url", (UrlFile(f"http://127.0.0.1:{port}/ptb.train.txt", "a" * 64),), retries=0)
    with pytest.raises(DownloadError) as err:
        materialise("ptb", CorpusConfig("text", source), tmp_path)
    msg = str(err.value)
    assert "'ptb'" in msg and f"127.0.0.1:{port}/ptb.train.txt" in msg and "{type: path" in msg


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = stdio.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, stdio.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("maker,suffix", [(_zip_bytes, ".zip"), (_tar_bytes, ".tar.gz")])
def test_archives_are_extracted(file_server, tmp_path, maker, suffix):
    archive = maker({"ptb/ptb.train.txt": b"a b c\n", "ptb/ptb.valid.txt": b"c b a\n"})
    materialise("ptb", url_corpus(file_server, ("/ptb" + suffix, archive)), tmp_path)
    assert (tmp_path / "ptb" / "ptb" / "ptb.train.txt").read_bytes() == b"a b c\n"
    assert not (tmp_path / "ptb" / ("ptb" + suffix)).exists()


@pytest.mark.parametrize("maker,suffix", [(_zip_bytes, ".zip"), (_tar_bytes, ".tar.gz")])
@pytest.mark.parametrize("evil", ["../escape.txt", "/etc/evil.txt", "ok/../../escape.txt"])
def test_archive_member_escaping_the_target_is_refused(file_server, tmp_path, maker, suffix, evil):
    archive = maker({"fine.txt": b"fine", evil: b"evil"})
    with pytest.raises(DownloadError, match="escape the target"):
        materialise("evil", url_corpus(file_server, ("/evil" + suffix, archive)), tmp_path / "raw")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "raw" / "evil").exists()


def test_extract_refuses_symlink_pointing_outside(tmp_path):
    buf = stdio.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
        tf.addfile(info)
    archive = tmp_path / "a.tar"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="escape"):
        extract_archive(archive, tmp_path / "out", where="test")


def test_path_source_copies_a_file_or_a_folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.mid").write_bytes(b"MThd")
    (src / "sub" / "b.mid").write_bytes(b"MThd")
    (src / "notes.txt").write_text("x")
    corpus = CorpusConfig("midi", PathSource("path", str(src), pattern="*.mid"))
    report = materialise("m", corpus, tmp_path / "raw")
    assert sorted(p.relative_to(tmp_path / "raw" / "m").as_posix() for p in (tmp_path / "raw" / "m").rglob("*.mid")) == [
        "a.mid",
        "sub/b.mid",
    ]
    assert report.files == 2
    single = CorpusConfig("text", PathSource("path", str(src / "notes.txt")))
    materialise("t", single, tmp_path / "raw")
    assert (tmp_path / "raw" / "t" / "notes.txt").read_text() == "x"


def test_missing_path_is_a_clear_error(tmp_path):
    corpus = CorpusConfig("text", PathSource("path", str(tmp_path / "nope.txt")))
    with pytest.raises(DownloadError, match="does not exist.*corpora.x.source.path"):
        materialise("x", corpus, tmp_path / "raw")


def test_package_source_copies_shipped_files_and_globs(tmp_path):
    text = CorpusConfig("text", PackageSource("package", "music21", ("languageExcerpts/trainingData/en.txt",)))
    materialise("austen", text, tmp_path)
    assert "Lady Susan" in (tmp_path / "austen" / "en.txt").read_text()
    abc = CorpusConfig("text", PackageSource("package", "music21", ("corpus/oneills1850/*.abc",)))
    report = materialise("tunes", abc, tmp_path)
    assert report.files > 30 and all(p.suffix == ".abc" for p in (tmp_path / "tunes").iterdir())


@pytest.mark.parametrize(
    "source,match",
    [
        (PackageSource("package", "no_such_package_xyz", ("a.txt",)), "not installed"),
        (PackageSource("package", "music21", ("nope/missing.txt",)), "has no file"),
    ],
)
def test_package_errors(tmp_path, source, match):
    with pytest.raises(DownloadError, match=match):
        materialise("p", CorpusConfig("text", source), tmp_path)


def test_url_config_validation():
    with pytest.raises(ConfigError, match="sha256"):
        parse_dataclass(UrlFile, {"url": "https://example.org/a.txt", "sha256": "abc"}, "f")
    with pytest.raises(ConfigError, match="https://"):
        parse_dataclass(UrlFile, {"url": "http://example.org/a.txt", "sha256": "a" * 64}, "f")
    with pytest.raises(ConfigError, match="https://"):
        parse_dataclass(UrlFile, {"url": "ftp://example.org/a.txt", "sha256": "a" * 64}, "f")


def test_stage_prunes_disabled_corpora_and_exits_2_on_error(in_tmp: Path, file_server, capsys):
    (in_tmp / "book.txt").write_text("hello\n")
    params = in_tmp / "params.yaml"
    params.write_text(
        "corpora:\n"
        "  book: {kind: text, source: {type: path, path: book.txt}}\n"
        "  old: {kind: text, enabled: false, source: {type: path, path: book.txt}}\n"
    )
    (in_tmp / "data/raw/old").mkdir(parents=True)
    (in_tmp / "data/raw/old.manifest.json").write_text("{}")
    assert download_stage.main(["--params", str(params), "--out", "data/raw"]) == 0
    assert (in_tmp / "data/raw/book/book.txt").read_text() == "hello\n"
    assert not (in_tmp / "data/raw/old").exists()

    params.write_text(
        "corpora:\n"
        f"  web: {{kind: text, source: {{type: url, retries: 0, files: [{{url: '{file_server.base}/gone.txt', sha256: '{'b' * 64}'}}]}}}}\n"
    )
    capsys.readouterr()
    assert download_stage.main(["--params", str(params), "--out", "data/raw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("seqlab: error: corpus 'web': HTTP 404") and "\n" not in err
    assert not (in_tmp / "data/raw/web").exists()
