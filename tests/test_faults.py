"""Every failure leaves a clean state: each case runs a real stage as a subprocess and checks what a user and the
MLflow store see afterwards.

For each case: the exit status; stderr is one ``seqlab: error:`` line and no traceback; no output is
half-written; and the sqlite store holds no RUNNING run.  Signals: SIGTERM ends training with 143, its run
KILLED and its checkpoint kept; a stage whose parent dies stops; a run whose stage was killed with -9 is closed
by the next stage that opens a run in its experiment.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import files
from tests.conftest import REPO_ROOT
from tests.mlflow_server import free_port
from tests.train_helpers import (
    complete_params,
    contents,
    stopped_after_checkpoint,
    tiny_params,
    tiny_run,
    write_dataset,
)

PARAMS = tiny_params(
    {"names-lstm": tiny_run(),
     "names-wide": tiny_run(hidden_size=32),
     "names-cuda": tiny_run("cuda", overrides={"device": "cuda"}),
     "names-long": tiny_run("long", overrides={"epochs": 100000, "checkpoint_every_steps": 5}),
     "names-big": tiny_run("big", hidden_size=320, overrides={"max_steps": 4, "checkpoint_every_steps": 2}),
     "tiny-lstm": tiny_run(dataset="tiny-char"),
     "noval-lstm": tiny_run(dataset="noval-char")},
    {"evaluate": {"device": "cpu", "samples": {"n": 1, "max_length": 10}, "baselines": {"names-char": {"order": 2}}}},
    sample={"n": 1, "max_length": 10})


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, _migrated_db) -> Path:
    """Tiny datasets, a fresh store and one trained, evaluated model (``models/names-char/lstm``)."""
    root = tmp_path_factory.mktemp("faults")
    (root / "params.yaml").write_text(complete_params(PARAMS))
    vocab = write_dataset(root / "data/tokens/names-char")
    for name, split_ids in (("tiny-char", {"train": [4, 5, 2], "val": [4, 5, 2] * 10}),
                            ("noval-char", {"train": [4, 5, 6, 2] * 60, "val": [2]})):
        folder = root / "data/tokens" / name
        vocab.save(folder / "vocab.json")
        for split, ids in split_ids.items():
            files.write_tokens(folder / f"{split}.npy", np.array(ids), len(vocab))
    shutil.copy(_migrated_db, root / "mlflow.db")
    result = stage(root, "train", *train_args("names-lstm", "models/names-char/lstm"))
    assert result.returncode == 0, result.stderr
    return root


def env_for(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def stage(root: Path, module: str, *args: str, preexec=None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{module}", *args], cwd=root, env=env_for(root),
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def start(root: Path, module: str, *args: str, wrapper: list[str] | None = None,
          session: bool = False) -> subprocess.Popen:
    """The stage as a child; ``session``: in a process group of its own (the stage and any child it forks)."""
    command = [sys.executable, "-m", f"stages.{module}", *args]
    return subprocess.Popen([*(wrapper or []), *command], cwd=root, env=env_for(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=session)


def train_args(run: str, out: str, *extra: str) -> list[str]:
    dataset = run.split("-")[0] + "-char"
    return ["--params", "params.yaml", "--run", run, "--data", f"data/tokens/{dataset}", "--out", out, *extra]


def evaluate_args(model: str, metrics: str, samples: str) -> list[str]:
    return ["--params", "params.yaml", "--run", "names-lstm", "--data", "data/tokens/names-char", "--model", model,
            "--metrics", metrics, "--samples", samples]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def statuses(root: Path) -> dict[str, list[str]]:
    """Run name -> statuses of its runs, oldest first, read straight from the sqlite file."""
    with sqlite3.connect(root / "mlflow.db") as db:
        rows = db.execute("SELECT name, status FROM runs ORDER BY start_time").fetchall()
    out: dict[str, list[str]] = {}
    for name, status in rows:
        out.setdefault(name, []).append(status)
    return out


def run_tags(root: Path, run_id: str) -> dict[str, str]:
    with sqlite3.connect(root / "mlflow.db") as db:
        return dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)).fetchall())


def run_status(root: Path, run_id: str) -> str:
    with sqlite3.connect(root / "mlflow.db") as db:
        return db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]


def no_running_runs(root: Path) -> bool:
    return not any("RUNNING" in s for s in statuses(root).values())


def run_count(root: Path) -> int:
    return sum(len(s) for s in statuses(root).values())


def first_checkpoint(root: Path, out: str, proc: subprocess.Popen, seconds: float = 90) -> Path:
    """The checkpoint of the training writing ``out`` (in its work folder, ``.seqlab/runs/<out>/<fingerprint>/``),
    once it has written one."""
    deadline = time.monotonic() + seconds
    while not (found := sorted((root / ".seqlab/runs" / out).glob("*/checkpoint.pt"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no checkpoint of {out} appeared"
        time.sleep(0.05)
    return found[0]


def checkpoint_run_id(path: Path) -> str:
    from pipeline.training.checkpoints import load_training_checkpoint

    return load_training_checkpoint(path)["loop"]["run_id"]


@pytest.fixture(scope="module")
def stopped(workspace) -> Path:
    """``models/names-char/stopped``: a copy of the trained model's folder, then a training of the same run into it
    stopped (as on Ctrl-C) after its checkpoint of step 10.  Returns that checkpoint, in the run's work folder."""
    from stages import train

    shutil.copytree(workspace / "models/names-char/lstm", workspace / "models/names-char/stopped")
    with pytest.MonkeyPatch.context() as patch, stopped_after_checkpoint(10):
        patch.chdir(workspace)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
        assert train.main(train_args("names-lstm", "models/names-char/stopped")) == 130
    [checkpoint] = (workspace / ".seqlab/runs/models/names-char/stopped").glob("*/checkpoint.pt")
    return checkpoint


# ------------------------------------------------------------------------------------------------ cases


def test_the_trained_workspace_is_clean(workspace):
    assert statuses(workspace) == {"lstm": ["FINISHED"]}


@pytest.mark.parametrize(("args", "fragments"), [
    (train_args("names-cuda", "models/x/cuda"), ["device 'cuda' requested but no CUDA GPU is visible"]),
    (train_args("names-lstm", "params.yaml/out"), ["params.yaml/out: cannot write to this folder", "--out"]),
    (train_args("tiny-lstm", "models/tiny-char/lstm"), ["the training split has 3 tokens, too few"]),
    (train_args("noval-lstm", "models/noval-char/lstm"), ["validation split is empty"]),
], ids=["cuda-without-gpu", "output-folder-under-a-file", "train-split-below-one-window", "empty-val-split"])
def test_bad_training_inputs_stop_before_a_run_opens(workspace, args, fragments):
    if "cuda" in args[3]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU: device cuda is valid here")
    before = run_count(workspace)
    result = stage(workspace, "train", *args)
    assert_one_line_error(result, *fragments)
    assert run_count(workspace) == before  # no run was opened for a bad input
    out = workspace / args[-1]
    assert not out.exists() or not any(out.iterdir())


def test_sample_on_cuda_without_a_gpu_is_one_line(workspace):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: device cuda is valid here")
    result = subprocess.run([sys.executable, "-m", "stages.cli", "sample", "--model", "models/names-char/lstm",
                             "--device", "cuda"], cwd=workspace, env=env_for(workspace), capture_output=True,
                            text=True, timeout=120)
    assert_one_line_error(result, "no CUDA GPU is visible")


def test_a_missing_train_key_stops_the_stage_with_its_name(workspace, tmp_path):
    text = (workspace / "params.yaml").read_text()
    assert text.count("    momentum: 0.0\n") == 1  # the one under train.defaults
    (tmp_path / "params.yaml").write_text(text.replace("    momentum: 0.0\n", ""))
    result = stage(workspace, "train", *train_args("names-lstm", "models/x/y")[2:],
                   "--params", str(tmp_path / "params.yaml"))
    assert_one_line_error(result, "train.defaults: missing key(s) momentum")


def test_resume_after_a_changed_model_shape_is_one_line_and_changes_nothing(workspace, stopped):
    before = contents(workspace / "models/names-char/stopped", stopped.parent)
    result = stage(workspace, "train", *train_args("names-wide", "models/names-char/stopped", "--resume"))
    assert_one_line_error(result, f"{stopped.relative_to(workspace)} was trained with other settings",
                          "model.hidden_size 16 -> 32")
    assert contents(workspace / "models/names-char/stopped", stopped.parent) == before
    assert run_status(workspace, checkpoint_run_id(stopped)) == "KILLED"
    assert statuses(workspace)["lstm"][0] == "FINISHED"
    assert no_running_runs(workspace)


def test_resume_from_a_corrupt_checkpoint_is_one_line_and_the_finished_run_stays_finished(workspace, stopped):
    corrupt = workspace / ".seqlab/runs/models/names-char/corrupt" / stopped.parent.name  # the same fingerprint
    corrupt.mkdir(parents=True)
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint")
    result = stage(workspace, "train", *train_args("names-lstm", "models/names-char/corrupt", "--resume"))
    assert_one_line_error(result, "checkpoint.pt: not a readable checkpoint")
    assert (corrupt / "checkpoint.pt").read_bytes() == b"not a checkpoint"
    run_id = json.loads((workspace / "models/names-char/lstm/mlflow_run.json").read_text())["run_id"]
    assert run_status(workspace, run_id) == "FINISHED"
    assert no_running_runs(workspace)


@pytest.mark.parametrize(("out", "extra"), [("lstm", []), ("stopped", ["--resume", "auto"]), ("stopped", [])],
                         ids=["finished-fresh", "stopped-resume-auto", "stopped-fresh"])
def test_a_start_that_cannot_reach_the_store_changes_nothing(workspace, stopped, out, extra):
    """Every check, the store's among them, comes before anything is removed or replaced: the model folder (model.pt,
    metrics.json, epochs.csv, mlflow_run.json, ...) and the checkpoint stay byte for byte as they were."""
    folder, work = workspace / "models/names-char" / out, workspace / ".seqlab/runs/models/names-char" / out
    before, runs = contents(folder, work), run_count(workspace)
    assert {"model.pt", "metrics.json", "epochs.csv", "mlflow_run.json"} <= {p.name for p in before}
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**env_for(workspace), "MLFLOW_TRACKING_URI": url}
    result = subprocess.run([sys.executable, "-m", "stages.train", *train_args("names-lstm", str(folder), *extra)],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, url, "not reachable")
    assert result.stdout == ""  # not even the line about resuming: nothing started
    assert contents(folder, work) == before
    assert run_count(workspace) == runs and no_running_runs(workspace)


def test_evaluate_without_metrics_json_is_one_line_and_writes_nothing(workspace, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(workspace / "models/names-char/lstm", copy)
    (copy / "metrics.json").unlink()
    metrics, samples = tmp_path / "m/lstm.json", tmp_path / "s/lstm"
    result = stage(workspace, "evaluate", *evaluate_args(str(copy), str(metrics), str(samples)))
    assert_one_line_error(result, "metrics.json", "rerun the train stage")
    assert not metrics.exists() and not samples.exists()
    assert no_running_runs(workspace)


def test_evaluate_never_turns_a_failed_training_run_finished(workspace, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(workspace / "models/names-char/lstm", copy)
    failed = tmp_path / "failed.db"
    shutil.copy(workspace / "mlflow.db", failed)
    info = json.loads((copy / "mlflow_run.json").read_text())
    run_id = info["run_id"]
    (copy / "mlflow_run.json").write_text(json.dumps({**info, "tracking_uri": f"sqlite:///{failed}"}))
    with sqlite3.connect(failed) as db:
        db.execute("UPDATE runs SET status = 'FAILED' WHERE run_uuid = ?", (run_id,))
    env = {**env_for(workspace), "MLFLOW_TRACKING_URI": f"sqlite:///{failed}"}
    result = subprocess.run([sys.executable, "-m", "stages.evaluate",
                             *evaluate_args(str(copy), str(tmp_path / "m.json"), str(tmp_path / "s"))],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(failed) as db:
        status = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]
        metrics = {k for (k,) in db.execute("SELECT key FROM metrics WHERE run_uuid = ?", (run_id,))}
    assert status == "FAILED" and "test_perplexity" in metrics  # the figures are added, the status kept


def without_root_override() -> list[str]:
    """A command prefix under which file modes bind: none for a user; for root, ``setpriv`` dropping every
    capability (CAP_DAC_OVERRIDE among them) from the child while it keeps uid 0, so it owns what it owned."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux): file modes do not bind root")
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


def test_a_read_only_store_is_one_line_naming_the_cause(workspace, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(workspace / "mlflow.db", store / "mlflow.db")
    (store / "mlflow.db").chmod(0o444)
    store.chmod(0o555)
    try:
        env = {**env_for(workspace), "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
        argv = [sys.executable, "-m", "stages.train", *train_args("names-lstm", str(tmp_path / "o"))]
        result = subprocess.run([*without_root_override(), *argv], cwd=workspace, env=env, capture_output=True,
                                text=True, timeout=120)
    finally:
        store.chmod(0o755)
    assert_one_line_error(result, "readonly database", str(store / "mlflow.db"))
    assert not (tmp_path / "o" / "model.pt").exists()


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_the_run_failed(workspace):
    out = "models/big/big"
    limit = 3 * 1024 * 1024  # the checkpoint (weights + two Adam moments, ~5 MB) does not fit; the rest does

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = stage(workspace, "train", *train_args("names-big", out), preexec=small_files)
    assert_one_line_error(result, "checkpoint.pt: could not write the checkpoint", "free disk space")
    work = workspace / ".seqlab/runs" / out
    assert not list(work.rglob("checkpoint.pt")) and not list(work.rglob("*.tmp"))
    assert not any((workspace / out).iterdir())  # the model folder gets files only from a finished run
    with sqlite3.connect(workspace / "mlflow.db") as db:
        (run_id,) = db.execute("SELECT run_uuid FROM runs WHERE name = 'big'").fetchone()
    assert run_status(workspace, run_id) == "FAILED"
    assert "could not write the checkpoint" in run_tags(workspace, run_id)["failure_reason"]


@pytest.fixture(scope="module")
def long_runs(workspace, tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Three long trainings started together (they overlap their start-up), each stopped by its own test."""
    root = "models/long"
    runs = {"sigterm": start(workspace, "train", *train_args("names-long", f"{root}/sigterm")),
            "nine": start(workspace, "train", *train_args("names-long", f"{root}/nine"), session=True)}
    command = " ".join([sys.executable, "-m", "stages.train", *train_args("names-long", f"{root}/orphan")])
    # parent -> shell -> stage, as under dvc repro (the trailing `; true` keeps the shell from exec'ing the stage)
    runs["orphan"] = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1], "
                                       "shell=True)", f"{command}; true"], cwd=workspace, env=env_for(workspace),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield {name: (proc, f"{root}/{name}") for name, proc in runs.items()}
    for proc in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigterm_ends_training_with_143_its_run_killed_and_its_checkpoint_kept(workspace, long_runs):
    proc, out = long_runs["sigterm"]
    checkpoint = first_checkpoint(workspace, out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("seqlab: terminated by SIGTERM")
    assert "Traceback" not in err
    run_id = checkpoint_run_id(checkpoint)
    assert run_status(workspace, run_id) == "KILLED", run_tags(workspace, run_id)
    assert run_tags(workspace, run_id)["failure_reason"] == "terminated by SIGTERM"
    from pipeline.training.checkpoints import load_training_checkpoint

    assert load_training_checkpoint(checkpoint)["loop"]["step"] >= 5
    assert not any((workspace / out).iterdir())  # the model folder gets files only from a finished run


def test_training_stops_when_the_process_that_started_it_dies(workspace, long_runs):
    """As under ``dvc repro``: parent -> shell -> stage.  Killing the parent (as SIGTERM kills dvc) stops the stage."""
    parent, out = long_runs["orphan"]
    run_id = checkpoint_run_id(first_checkpoint(workspace, out, parent))
    pid = int(run_tags(workspace, run_id)["seqlab.pid"])
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the stage kept training after its parent died"
    assert run_status(workspace, run_id) == "KILLED"
    assert run_tags(workspace, run_id)["failure_reason"] == "terminated by SIGTERM"


def test_a_run_killed_with_9_is_closed_by_the_next_stage_with_one_line(workspace, long_runs, tmp_path):
    """The stage's whole process group killed (a lost machine, the OOM killer taking the group)."""
    proc, out = long_runs["nine"]
    checkpoint = first_checkpoint(workspace, out, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    run_id = checkpoint_run_id(checkpoint)
    assert run_status(workspace, run_id) == "RUNNING"  # nothing could close it
    result = stage(workspace, "baseline", "--params", "params.yaml", "--name", "names-char", "--data",
                   "data/tokens/names-char", "--metrics", str(tmp_path / "ngram.json"))
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("seqlab: warning: marked run")]
    assert len(warning) == 1 and f"({run_id[:8]}) KILLED: its process {proc.pid} is gone" in warning[0]
    assert run_status(workspace, run_id) == "KILLED"
    assert no_running_runs(workspace)


def test_a_corrupt_zip_download_is_one_line_and_leaves_nothing_behind(tmp_path, file_server):
    broken = zipfile_bytes()[:-30]  # the central directory cut off
    file_server.files["/corpus.zip"] = broken
    digest = hashlib.sha256(broken).hexdigest()
    (tmp_path / "params.yaml").write_text(
        f"corpora:\n  web:\n    kind: text\n    source:\n      type: url\n      retries: 0\n      files:\n"
        f"        - {{url: '{file_server.base}/corpus.zip', sha256: '{digest}'}}\n")
    result = stage(tmp_path, "download", "--params", "params.yaml", "--out", "data/raw")
    assert_one_line_error(result, "corpus.zip: not a readable zip archive")
    assert not (tmp_path / "data/raw/web").exists()
    assert not (tmp_path / "data/raw/.partial").exists()


def test_a_failed_download_removes_its_empty_partial_folder(tmp_path, file_server):
    (tmp_path / "params.yaml").write_text(
        f"corpora:\n  web:\n    kind: text\n    source:\n      type: url\n      retries: 0\n      files:\n"
        f"        - {{url: '{file_server.base}/missing.txt', sha256: '{'0' * 64}'}}\n")
    result = stage(tmp_path, "download", "--params", "params.yaml", "--out", "data/raw")
    assert_one_line_error(result, "HTTP 404")
    assert sorted(p.name for p in (tmp_path / "data/raw").iterdir()) == []


def test_a_binary_file_as_a_text_corpus_is_called_binary_not_latin1(tmp_path):
    raw = tmp_path / "data/raw/junk"
    raw.mkdir(parents=True)
    (raw / "junk.txt").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    (tmp_path / "params.yaml").write_text(
        "corpora:\n  junk: {kind: text, source: {type: path, path: junk.txt}}\n"
        "tokenize:\n  junk-char: {corpus: junk, level: char, record: line}\n")
    result = stage(tmp_path, "tokenize", "--params", "params.yaml", "--name", "junk-char", "--raw",
                   str(raw), "--out", str(tmp_path / "tokens"))
    line = assert_one_line_error(result, "junk.txt: a binary file, not text")
    assert "latin1" not in line
    assert not (tmp_path / "tokens").exists()


def test_a_midi_corpus_with_many_bad_files_lists_three_and_the_rest_in_skipped_json(tmp_path):
    from tests.midi_helpers import jazz_combo

    raw = tmp_path / "raw"
    raw.mkdir()
    jazz_combo(raw / "good.mid", bars=1)
    for i in range(6):
        (raw / f"bad{i}.mid").write_bytes(b"MThd garbage")
    (tmp_path / "params.yaml").write_text(
        "corpora:\n  m: {kind: midi, source: {type: path, path: raw}}\n"
        "encode_midi:\n  m-note: {corpus: m, encoding: note}\n")
    out = tmp_path / "tokens"
    result = stage(tmp_path, "encode_midi", "--params", "params.yaml", "--name", "m-note", "--raw", str(raw),
                   "--out", str(out), "--workers", "1")
    assert_one_line_error(result, "6 of 7 MIDI files skipped", "; and 3 more", str(out / "skipped.json"))
    assert sorted(p.name for p in out.iterdir()) == ["skipped.json"]
    assert sorted(s["file"] for s in json.loads((out / "skipped.json").read_text())) == [f"bad{i}.mid" for i in range(6)]


def zipfile_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("corpus.txt", "some text\n" * 200)
    return buffer.getvalue()


def test_worker_processes_end_quietly_when_their_pool_is_terminated(tmp_path):
    """Terminating a forked pool ends its workers quietly: no traceback, and no worker left waiting (one that got
    SIGTERM before its interpreter ran used to sleep in the pool's queue lock, so ``join`` hung under CPU load)."""
    code = ("import multiprocessing, sys\n"
            "from stages._common import run_main\n"
            "def body():\n"
            "    pool = multiprocessing.get_context('fork').Pool(2)\n"
            "    assert pool.map(abs, [-1, -2]) == [1, 2]\n"
            "    pool.terminate()\n"
            "    pool.join()\n"
            "    print('done')\n"
            "sys.exit(run_main(body))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_for(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_a_forked_child_starts_with_the_stop_signals_at_their_default_action(tmp_path, sigint):
    """Forked from the main thread or another one, a child of a stage has SIGTERM, SIGHUP and SIGINT at SIG_DFL
    and nothing blocked, so a SIGTERM ends it even before its interpreter runs; the stage keeps its handlers.
    A stage started with SIGINT ignored (a background job of a non-interactive shell, nohup) leaves it ignored,
    in its children too.  The test sets SIGINT itself: pytest may well have been started either way."""
    start = "signal.SIG_IGN" if sigint == "ignored" else "signal.default_int_handler"
    code = ("import os, signal, sys, threading\n"
            f"signal.signal(signal.SIGINT, {start})\n"
            "from stages._common import run_main\n"
            "STOP = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)\n"
            "def state():\n"
            "    return [signal.getsignal(s) is signal.SIG_DFL for s in STOP], signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
            "def fork(where):\n"
            "    r, w = os.pipe()\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        os.write(w, repr(state()).encode())\n"
            "        signal.pause()\n"
            "        os._exit(0)\n"
            "    os.close(w)\n"
            "    child = os.read(r, 1000).decode()\n"
            "    os.kill(pid, signal.SIGTERM)\n"
            "    print(where, child, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), state())\n"
            "def body():\n"
            "    fork('main')\n"
            "    thread = threading.Thread(target=fork, args=('thread',))\n"
            "    thread.start()\n"
            "    thread.join()\n"
            "sys.exit(run_main(body))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_for(tmp_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    child = "([True, True, False], set())" if sigint == "ignored" else "([True, True, True], set())"
    parent = "([False, False, False], set())"
    assert result.stdout.splitlines() == [f"{where} {child} {-signal.SIGTERM} {parent}" for where in ("main", "thread")]
