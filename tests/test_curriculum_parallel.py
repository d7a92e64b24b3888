"""An experiment's trainings side by side (pipeline.curriculum.parallel): same results and tracking as one by one,
and every failure (an error, a killed child, a stopped or killed stage) ends with no child left training.

Real forked processes throughout; the stage-level test trains real (tiny) models into a real MLflow store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pipeline.curriculum.parallel import Job, JobDiedError, plan_workers, run_jobs
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children are forked on Linux only")


class Recording:
    """A tracker that keeps every call it gets, in order."""

    run_id = "run-under-test"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.calls.append((method, args, kwargs))


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _sleep_then_pid(seconds: float):
    def run(tracker):
        time.sleep(seconds)
        return os.getpid()
    return run


def test_results_come_back_in_job_order_from_child_processes(one_thread):
    jobs = [Job(f"job{i}", Recording, _sleep_then_pid(s)) for i, s in enumerate([0.6, 0.0, 0.3, 0.0])]
    pids = run_jobs(jobs, workers=2)
    assert os.getpid() not in pids and len(set(pids)) == 4  # each job in its own child
    # the first job sleeps longest and finishes last: the order is the jobs', not the finishing order
    jobs = [Job("slow", Recording, lambda t: ("slow", os.getpid())), Job("fast", Recording, lambda t: ("fast", 0))]
    assert [name for name, _ in run_jobs(jobs, workers=2)] == ["slow", "fast"]


def test_one_worker_runs_the_jobs_here_with_their_own_runs(one_thread):
    opened: list[Recording] = []

    def open_run() -> Recording:
        opened.append(Recording())
        return opened[-1]

    def job(tracker):
        tracker.log_metrics({"x": 1.0}, step=1)
        return os.getpid()

    assert run_jobs([Job("a", open_run, job), Job("b", open_run, job)], workers=1) == [os.getpid()] * 2
    assert [t.calls for t in opened] == [[("log_metrics", ({"x": 1.0},), {"step": 1})]] * 2


def test_every_tracking_call_reaches_the_stage_run_in_the_order_it_was_made(one_thread):
    model = torch.nn.Linear(3, 2)
    opened: list[Recording] = []

    def open_run() -> Recording:
        opened.append(Recording())
        return opened[-1]

    def job(tracker):
        assert tracker.run_id == "run-under-test"  # the stage's run id, for files that name it
        tracker.log_params({"lr": 0.1})
        for step in range(1, 6):
            tracker.log_metrics({"loss": 1.0 / step}, step=step)
        tracker.set_tags({"cell": "lstm"})
        tracker.log_artifact("some/file.png", "plots")
        tracker.log_model(model, "model", pip_requirements=["torch"])
        tracker.finish("FINISHED")
        tracker.log_metrics({"test_accuracy": 0.75}, step=5)  # after the last other call: must not be lost
        return "done"

    assert run_jobs([Job("a", open_run, job), Job("b", open_run, lambda t: "other")], workers=2) == ["done", "other"]
    calls = opened[0].calls
    assert [c[0] for c in calls] == ["log_params", *["log_metrics"] * 5, "set_tags", "log_artifact", "log_model",
                                     "finish", "log_metrics"]
    assert [c[1][0]["loss"] for c in calls[1:6]] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert calls[7] == ("log_artifact", ("some/file.png", "plots"), {})
    sent = calls[8][1][0]
    assert isinstance(sent, torch.nn.Linear) and torch.equal(sent.weight, model.weight)
    assert calls[8][2] == {"pip_requirements": ["torch"], "code_paths": []}
    assert calls[-1] == ("log_metrics", ({"test_accuracy": 0.75},), {"step": 5})
    assert opened[1].calls == []


@pytest.mark.timeout(120)  # a child left running would keep run_jobs waiting for its 10 minutes
def test_a_job_error_is_raised_as_itself_after_the_other_children_are_stopped(one_thread, tmp_path):
    def slow(tracker):
        (tmp_path / "slow.pid").write_text(str(os.getpid()))
        time.sleep(600)

    def failing(tracker):
        assert _wait_for(lambda: (tmp_path / "slow.pid").exists())
        tracker.log_metrics({"loss": 2.0}, step=1)
        raise ValueError("curriculum.agreement.distances: 0 is not a distance")

    opened: list[Recording] = []

    def open_run() -> Recording:
        opened.append(Recording())
        return opened[-1]

    with pytest.raises(ValueError, match="0 is not a distance"):
        run_jobs([Job("slow", open_run, slow), Job("failing", open_run, failing)], workers=2)
    assert not _alive(int((tmp_path / "slow.pid").read_text()))  # stopped and reaped, not left training
    assert opened[1].calls == [("log_metrics", ({"loss": 2.0},), {"step": 1})]  # its points before the error


class _Unloadable(Exception):
    """An error whose pickle cannot be loaded again (a required keyword-only argument)."""

    def __init__(self, *, where: str) -> None:
        super().__init__(f"broken at {where}")


def test_a_job_error_that_cannot_cross_the_pipe_is_described_with_its_class_and_traceback(one_thread):
    def failing(tracker):
        raise _Unloadable(where="step 3")

    with pytest.raises(RuntimeError, match=r"test_curriculum_parallel\._Unloadable: broken at step 3") as raised:
        run_jobs([Job("ok", Recording, lambda t: 1), Job("failing", Recording, failing)], workers=2)
    note = raised.value.__notes__[0]
    assert note.startswith("in the job's process:") and 'raise _Unloadable(where="step 3")' in note


@pytest.mark.timeout(120)
def test_a_child_that_ignores_sigterm_is_killed(one_thread, tmp_path, monkeypatch):
    import pipeline.curriculum.parallel as parallel

    monkeypatch.setattr(parallel, "STOP_SECONDS", 0.2)

    def stubborn(tracker):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (tmp_path / "stubborn.pid").write_text(str(os.getpid()))
        time.sleep(600)

    def failing(tracker):
        assert _wait_for(lambda: (tmp_path / "stubborn.pid").exists())
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run_jobs([Job("stubborn", Recording, stubborn), Job("failing", Recording, failing)], workers=2)
    assert not _alive(int((tmp_path / "stubborn.pid").read_text()))


def test_a_job_whose_process_is_killed_is_an_error_naming_it(one_thread):
    def killed(tracker):
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(JobDiedError, match=r"layers_3: its process ended without a result \(killed by SIGKILL\)"):
        run_jobs([Job("layers_1", Recording, lambda t: 1), Job("layers_3", Recording, killed)], workers=2)


STAGE = """
import os, sys, time
import torch
from pipeline.process import install_stop_signals
from pipeline.errors import Terminated
from pipeline.curriculum.parallel import Job, run_jobs
from pathlib import Path

torch.set_num_threads(1)
folder = Path(sys.argv[1])

class Tracker:
    run_id = None
    def __getattr__(self, name):
        return lambda *a, **k: None

def job(tracker):
    (folder / f"{os.getpid()}.pid").write_text("")
    for step in range(60000):  # 10 minutes, logging as a training loop does
        tracker.log_metrics({"loss": 1.0}, step=step)
        time.sleep(0.01)

install_stop_signals()
try:
    run_jobs([Job("a", Tracker, job), Job("b", Tracker, job)], workers=2)
except Terminated:
    print("stage: terminated", flush=True)
    sys.exit(3)
"""


def _start_stage(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent(STAGE))
    stage = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             text=True)
    assert _wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2), "the two jobs did not start"
    return stage, [int(p.stem) for p in tmp_path.glob("*.pid")]


@pytest.mark.timeout(120)
def test_a_terminated_stage_stops_its_children_before_it_exits(tmp_path):
    stage, children = _start_stage(tmp_path)
    stage.send_signal(signal.SIGTERM)
    out, _ = stage.communicate(timeout=60)
    assert stage.returncode == 3 and "stage: terminated" in out
    assert not any(_alive(pid) for pid in children)  # reaped by the stage before it went on


def test_children_of_a_killed_stage_end_at_their_next_tracking_call(tmp_path):
    stage, children = _start_stage(tmp_path)
    stage.kill()
    stage.communicate(timeout=60)
    assert _wait_for(lambda: not any(_alive(pid) for pid in children)), "a child trained on for nobody"


def test_side_by_side_only_on_one_thread_on_the_cpu(one_thread):
    assert plan_workers(2, 5) == 2
    assert plan_workers(8, 3) == 3
    assert plan_workers(0, 100) == len(os.sched_getaffinity(0))
    assert plan_workers(2, 5, device="cuda") == 1
    torch.set_num_threads(2)
    assert plan_workers(2, 5) == 1  # an OpenMP pool of several threads is not forked
