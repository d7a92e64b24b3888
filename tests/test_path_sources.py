"""Local ``path`` sources are dependencies: an edited source is copied again, and DVC sees the edit."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from pipeline.config import CorpusConfig, PathSource, load_params
from pipeline.data.download import materialise
from pipeline.data.sources import UntrackedSourceError, check_tracked, source_digest, untracked_sources
from tests.conftest import REPO_ROOT
from tests.test_pipeline_dvc import _run, make_repo

NAMES = "Ada\nGrace\nAlan\nEdsger\nBarbara\nDonald\nFrances\nJohn\nMargaret\nTony\n" * 4


def test_an_edited_source_is_copied_again(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("one\n")
    (src / "sub" / "b.txt").write_text("two\n")
    (src / "skip.md").write_text("not matched\n")
    corpus = CorpusConfig("text", PathSource("path", str(src), pattern="*.txt"))
    raw = tmp_path / "raw"

    assert not materialise("c", corpus, raw).skipped
    assert materialise("c", corpus, raw).skipped  # unchanged at both ends: nothing to do
    assert sorted(source_digest(corpus.source)) == ["a.txt", "sub/b.txt"]

    (src / "sub" / "b.txt").write_text("twp\n")  # one byte
    report = materialise("c", corpus, raw)
    assert not report.skipped and report.files == 2
    assert (raw / "c" / "sub" / "b.txt").read_text() == "twp\n"
    manifest = json.loads((raw / "c.manifest.json").read_text())
    assert manifest["files"] == source_digest(corpus.source)


def test_only_untracked_enabled_path_sources_are_named(tmp_path):
    corpora = {
        "file": CorpusConfig("text", PathSource("path", "../corpora/names.txt")),
        "in_folder": CorpusConfig("text", PathSource("path", "../corpora/ptb", pattern="*.txt")),
        "loose": CorpusConfig("text", PathSource("path", "elsewhere/input.txt")),
        "off": CorpusConfig("text", PathSource("path", "off.txt"), enabled=False),
    }
    deps = ["stages/download.py", "../corpora/names.txt", "../corpora/ptb/"]
    assert untracked_sources(corpora, deps, tmp_path) == {"loose": "elsewhere/input.txt"}
    assert untracked_sources(corpora, [*deps, "./elsewhere"], tmp_path) == {}

    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(yaml.safe_dump({"stages": {"download": {"cmd": "x", "deps": deps}}}))
    with pytest.raises(UntrackedSourceError) as caught:
        check_tracked(corpora, dvc_yaml, "download")
    message = str(caught.value)
    assert "\n" not in message
    assert "corpora.loose.source.path 'elsewhere/input.txt': not a dependency of the download stage" in message
    assert "add `- elsewhere/input.txt` to stages.download.deps" in message


def test_the_default_params_track_every_path_source():
    params = load_params(REPO_ROOT / "params.yaml")
    check_tracked(params.corpora, REPO_ROOT / "dvc.yaml", "download")


def _names_pipeline(params: dict) -> None:
    params["corpora"] = {"names": {"kind": "text", "source": {"type": "path", "path": "../names.txt"}}}
    params["tokenize"] = {"names-char": {"corpus": "names", "level": "char", "record": "line",
                                        "split": {"method": "contiguous", "val": 0.2, "test": 0.0}}}
    for section in list(params):
        if section not in ("corpora", "tokenize"):
            del params[section]


@pytest.mark.slow
def test_dvc_sees_an_edited_path_source_and_repro_reads_it_again(tmp_path):
    (tmp_path / "names.txt").write_text(NAMES)
    repo = make_repo(tmp_path, _names_pipeline)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in ("download", "tokenize")}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    dvc = [sys.executable, "-m", "dvc"]

    refused = _run([*dvc, "repro", "download"], repo)  # the source is not a dep yet: one line says which to add
    assert refused.returncode != 0
    assert "add `- ../names.txt` to stages.download.deps in dvc.yaml" in refused.stdout + refused.stderr

    pipeline["stages"]["download"]["deps"].append("../names.txt")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    first = _run([*dvc, "repro", "tokenize@names-char"], repo)
    assert first.returncode == 0, first.stdout + first.stderr
    stats = repo / "data/tokens/names-char/stats.json"
    before = json.loads(stats.read_text())["train"]["tokens"]
    assert _run([*dvc, "status", "download"], repo).stdout.strip().endswith("up to date.")

    (tmp_path / "names.txt").write_text(NAMES.replace("Ada\n", "Adaa\n", 1))  # one more character
    status = _run([*dvc, "status", "download"], repo).stdout
    assert "changed deps" in status and "names.txt" in status, status
    second = _run([*dvc, "repro", "tokenize@names-char"], repo)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "download: names: materialised" in second.stdout
    assert (repo / "data/raw/names/names.txt").read_text().startswith("Adaa\n")
    assert json.loads(stats.read_text())["train"]["tokens"] == before + 1
