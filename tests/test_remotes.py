"""DVC remotes: ``dvc push`` then ``dvc pull`` into a cleared cache and workspace, against a local folder (the
default remote) and an S3-compatible server (moto's server mode on 127.0.0.1, through dvc-s3).

DVC runs in-process through its real command-line entry point (``dvc.cli.main``): the same code path as the
``dvc`` command, without paying its ~1.5 s start-up per call.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BUCKET = "seqlab-dvc"


def dvc(*argv: str) -> None:
    from dvc.cli import main

    assert main(list(argv)) == 0, f"dvc {' '.join(argv)} failed"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git + DVC repository in ``tmp_path/repo`` with two tiny tracked token files; the working directory."""
    root = tmp_path / "repo"
    (root / "data/tokens/tiny").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    monkeypatch.chdir(root)
    dvc("init", "-q")
    (root / "data/tokens/tiny/train.txt").write_text("the little hill\n")
    (root / "data/tokens/tiny/vocab.json").write_text('{"tokens": ["<pad>", "<unk>", "<eos>"]}\n')
    dvc("add", "-q", "data/tokens/tiny")
    return root


def _push_clear_pull(root: Path) -> None:
    dvc("push", "-q")
    shutil.rmtree(root / ".dvc/cache")
    shutil.rmtree(root / "data/tokens/tiny")
    dvc("pull", "-q")
    assert (root / "data/tokens/tiny/train.txt").read_text() == "the little hill\n"
    assert (root / "data/tokens/tiny/vocab.json").read_text().startswith('{"tokens"')
    assert any((root / ".dvc/cache").rglob("*")), "pull restores the cache too"


def test_local_folder_remote_push_then_pull_restores_a_cleared_cache(repo, tmp_path):
    storage = tmp_path / "storage"
    dvc("remote", "add", "-d", "local", str(storage))
    _push_clear_pull(repo)
    assert sum(1 for p in storage.rglob("*") if p.is_file()) == 3  # two files + the directory listing


def test_s3_remote_push_then_pull_against_a_local_s3_server(repo, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # what the CI secrets provide
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(key, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/seqlab")
        dvc("remote", "modify", "s3", "endpointurl", endpoint)
        _push_clear_pull(repo)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
        assert len(keys) == 3 and all(k.startswith("seqlab/files/md5/") for k in keys)
    finally:
        server.stop()


def test_the_project_default_remote_is_a_local_folder():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".dvc/config")
    default = config["core"]["remote"]
    url = config[f"'remote \"{default}\"'"]["url"]
    assert "://" not in url, url  # a folder path, not a cloud URL
