"""GPU check: the CUDA tests, the quality recipes, throughput against a minimal loop, and exact resume, in one call.

First run on an H200 on 2026-11-30 (results in BENCHMARKS.md, "GPU check": 534 s in all).  Written to run in
ONE device call of about 8 minutes on an NVIDIA H200 (16 CPU cores):
estimated ~30 s of tests, ~165 s for tinyshakespeare (120 s of training plus start-ups, validations, epoch-end
checkpoints and the evaluation), ~235 s for PTB (180 s of training), then throughput and resume, which run last
and shrink to end by the 8th minute (20 s each at least).  Every step is time-boxed, a failed step is recorded
and the next one runs, and the results file is rewritten after every step, so a call cut short still returns
what was done.  Steps:

1. ``tests``: the CUDA tests (``-m cuda`` if pyproject declares that marker, else ``tests/test_*cuda*.py`` plus
   the tests elsewhere that skip without CUDA), with passed / failed / skipped counts.
2. ``quality-char``: tinyshakespeare, 120 s of training, through the pipeline's stages (download with a ``path``
   source -> tokenize -> train -> evaluate, as bench/quality.py runs them) with ``bench/quality/gpu-params.yaml``;
   target val loss <= 1.42 (whole stream).
3. ``quality-word``: Penn Treebank, 180 s of training, same way; target test perplexity <= 80.
4. ``throughput``: tokens/s of the pipeline's ``fit`` against a minimal loop over the same model (cuDNN
   ``nn.LSTM``), both imported from bench/bench_train.py (``run_seqlab``, ``run_minimal``), for the char and the
   word recipe, interleaved, medians; target ratio >= 0.95.  Plus the achieved share of the bf16 matmul peak
   measured in the same run (an 8192^3 ``torch.mm``), with FLOPs per token from bench/quality_speed.py.
5. ``resume``: ``fit`` interrupted (``max_steps``) and resumed against an uninterrupted run and against a plain
   repeat, by default and with ``torch.use_deterministic_algorithms`` + ``cudnn.deterministic`` +
   ``CUBLAS_WORKSPACE_CONFIG=:4096:8``: the largest weight difference and whether it is bit-exact.

Writes to ``$OUT`` (default ``./gpu-out``): ``gpu-results.json``, ``gpu-summary.md`` (the table it prints),
``gpu.log`` (everything every step printed) and ``gpu-curves.png`` (validation loss against training seconds).
Models, tokens and the rest go to ``--work`` (default ``/dev/shm/seqlab-gpu`` where a roomy tmpfs exists, else
``bench/out/gpu``: see :func:`default_work`).

**On the lent GPU machine.**  It cannot reach a package registry, and its ``python3`` (3.12, torch 2.11 + CUDA
13, numpy, pyyaml, matplotlib, pytest, pandas, requests, tqdm) is what runs; mlflow, dvc and music21 are not
there and none of these steps needs them (``tracking: none``), so nothing is installed and no venv is made
(the project's .venv is ~1.9 GB and cannot travel): ``bench/gpu.sh`` puts the checkout on ``PYTHONPATH``.
``../shared`` does not travel either: stage the two corpora (~6.7 MB) into the ignored ``bench/out/gpu-data``
here first, then carry that folder.  The next session with a GPU:

    .venv/bin/python bench/gpu.py --stage-data            # here, once: ../shared/data -> bench/out/gpu-data
    run(command="bash bench/gpu.sh", carry=["bench/out/gpu-data"], timeout_s=600)

Device time is 15 minutes a session, the machine's start (1-2 minutes) included, and no machine starts with
under 4 minutes left; a machine stays warm only 30 s after a call.  So a missed recipe can be rerun once, at
once (same carry): ``bash bench/gpu.sh --steps quality-word --word-run ptb-gpu-3min-alt`` (timeout_s 300), or
``--steps quality-char --char-run shakespeare-gpu-2min-alt``; then give the machine back.

Elsewhere:

    python bench/gpu.py                                   # a machine with a CUDA GPU and ../shared/data
    python bench/gpu.py --steps quality-char quality-word # only the recipes
    OUT=/tmp/gpu-dry .venv/bin/python bench/gpu.py --dry-run   # CPU rehearsal of every step, ~1-2 min

``--dry-run`` shrinks every budget to seconds and every model to a toy on the CPU, and falls back to generated
text when there is no corpus, so every code path runs end to end (the CUDA tests then report skipped).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "bench/quality/gpu-params.yaml"
SHARED = "../shared/data"  # the prefix of the params' path sources, relative to the repository root
STAGED = ROOT / "bench/out/gpu-data"  # ignored by git, so it can be carried to the device
STEPS = ("tests", "quality-char", "quality-word", "throughput", "resume")
TARGETS = {"quality-char": 1.42, "quality-word": 80.0, "fit_vs_minimal": 0.95}
RESULTS, SUMMARY, LOG, CURVES = "gpu-results.json", "gpu-summary.md", "gpu.log", "gpu-curves.png"
DEFAULT_VOCAB = {"shakespeare-char": 67, "ptb-word": 10_001}
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Seconds per step (upper bounds: a step stops early when done) and the sizes that scale with the mode."""

    total: float  # the flexible steps (throughput, resume) run last and shrink to end by then
    tests: float
    quality_slack: float  # wall time allowed beyond a run's training budget: start-up, validations, evaluation
    throughput: float
    resume: float
    matmul_n: int
    resume_steps: tuple[int, int]  # (uninterrupted steps, interrupted after)


GPU = Budgets(total=480, tests=120, quality_slack=110, throughput=45, resume=30, matmul_n=8192,
              resume_steps=(120, 60))
DRY = Budgets(total=240, tests=90, quality_slack=90, throughput=30, resume=30, matmul_n=512,
              resume_steps=(12, 6))
MIN_BOX = 20  # the least a flexible step gets, even when the run is late


class StepFailed(RuntimeError):
    """A step could not produce its figures; the message says which command and why."""


# --------------------------------------------------------------------------- output, commands, results


class Check:
    """The run: where things go, the log, the results written after every step."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.budgets = args, DRY if args.dry_run else GPU
        self.out = Path(os.environ.get("OUT") or "gpu-out").resolve()
        self.work = Path(args.work).resolve() if args.work else default_work(args.dry_run)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_file = (self.out / LOG).open("w", encoding="utf-8")
        self.start = time.monotonic()
        self.results: dict[str, Any] = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                        "work": str(self.work), "targets": TARGETS, "steps": {}}

    def log(self, message: str) -> None:
        print(message, flush=True)
        self.log_file.write(message + "\n")
        self.log_file.flush()

    def remaining(self) -> float:
        return self.budgets.total - (time.monotonic() - self.start)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "CI": "true", "MPLBACKEND": "Agg"}
        if self.args.dry_run:  # toy models on a small, maybe shared CPU: one thread each never stalls on a busy core
            env.setdefault("OMP_NUM_THREADS", "1")
        return {**env, **(extra or {})}

    def run(self, cmd: list, timeout: float, env: dict[str, str] | None = None) -> int:
        """Run ``cmd`` in the repository root, its output streamed to the console and the log; kill it (and its
        children) after ``timeout`` seconds."""
        cmd = [str(c) for c in cmd]
        self.log(f"$ {' '.join(cmd)}   (time box {timeout:.0f} s)")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    return
                time.sleep(5)

        timer = threading.Timer(max(timeout, 1), kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.log("    " + line.rstrip())
            rc = proc.wait()
        finally:
            timer.cancel()
        if killed.is_set():
            name = cmd[2] if cmd[1] == "-m" else Path(cmd[1]).name
            raise StepFailed(f"{name}: stopped after its time box of {timeout:.0f} s")
        return rc

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.out / (RESULTS + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.out / RESULTS)

    def step(self, name: str, body, *args) -> None:
        self.log(f"\n=== {name} (elapsed {time.monotonic() - self.start:.0f} s) ===")
        start = time.monotonic()
        try:
            result = {"status": "ok", **body(*args)}
        except Exception as e:  # a failed step is recorded and the next one runs
            self.log(traceback.format_exc())
            result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        result["wall_s"] = round(time.monotonic() - start, 1)
        self.results["steps"][name] = result
        self.log(f"=== {name}: {result['status']} in {result['wall_s']:.0f} s ===")
        self.save()


def default_work(dry_run: bool) -> Path:
    """bench/out/gpu-dry for a dry run; else /dev/shm/seqlab-gpu where there is a roomy tmpfs, or bench/out/gpu.

    The loop writes a checkpoint at every epoch end and fsyncs it (~600 MB for the 2x1500 PTB model, ~40-60
    epochs in its 3 minutes): on a tmpfs the fsync costs nothing, on a disk it can add a minute of wall time.
    """
    shm = Path("/dev/shm")
    if not dry_run and shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 8 * 2**30:
        return shm / "seqlab-gpu"
    return ROOT / ("bench/out/gpu-dry" if dry_run else "bench/out/gpu")


# --------------------------------------------------------------------------- environment and data


def environment() -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__, "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
        "cpu": _cpu_model(), "load_average": os.getloadavg(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}")
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            info["nvidia_smi"] = f"unavailable: {e}"
    else:
        info["device"] = "cpu (no CUDA GPU)"
    for name in ("mlflow", "dvc", "music21"):  # absent on the GPU machine; none of the steps needs them
        info[f"has_{name}"] = _importable(name)
    return info


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model, flags = re.search(r"model name\s*:\s*(.+)", text), re.search(r"flags\s*:\s*(.+)", text)
    flags = set(flags.group(1).split()) if flags else set()
    extra = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (model.group(1).strip() if model else platform.processor()) + (f" ({', '.join(extra)})" if extra else "")


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def data_root(args: argparse.Namespace) -> Path | None:
    """Where the corpora are: --data, $SEQLAB_DATA, ../shared/data, or the staged copy; None if nowhere."""
    if args.data:
        return Path(args.data).resolve() if Path(args.data).exists() else None
    for candidate in (os.environ.get("SEQLAB_DATA"), ROOT / SHARED, STAGED):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def corpus_files(raw: dict) -> list[str]:
    """The data files the params' path sources read, relative to ../shared/data."""
    files = []
    for corpus in raw["corpora"].values():
        rel = corpus["source"]["path"].removeprefix(SHARED + "/")
        src = ROOT / SHARED / rel
        if src.is_file():
            files.append(rel)
        else:
            files.extend(p.relative_to(ROOT / SHARED).as_posix() for p in sorted(src.glob(corpus["source"]["pattern"])))
    return files


def stage_data() -> int:
    """Copy the corpora of gpu-params.yaml from ../shared/data into bench/out/gpu-data (to carry to the device)."""
    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    if not (ROOT / SHARED).is_dir():
        raise SystemExit(f"no {ROOT / SHARED}: nothing to stage")
    for rel in corpus_files(raw):
        target = STAGED / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / SHARED / rel, target)
        print(f"staged {rel} ({target.stat().st_size / 1e6:.2f} MB)")
    print(f"carry: {STAGED.relative_to(ROOT)} (ignored by git: /bench/out/)")
    return 0


def generate_corpora(folder: Path) -> Path:
    """Tiny stand-ins with the real corpora's layout (dry run without ../shared/data): verse and 'sentences'."""
    rng = random.Random(0)
    words = ["the", "king", "my", "lord", "good", "sir", "love", "death", "night", "day", "blood", "heart", "crown",
             "sweet", "fair", "noble", "hath", "thou", "thee", "shall", "will", "not", "speak", "come", "go", "see"]
    lines = [f"{rng.choice(['KING', 'QUEEN', 'ROMEO', 'JULIET'])}:" if i % 5 == 0 else
             " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + rng.choice(".,!?")
             for i in range(1500)]
    char = folder / "karpathy_char-rnn/tinyshakespeare/input.txt"
    char.parent.mkdir(parents=True, exist_ok=True)
    char.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ptb = folder / "wojzaremba_lstm"
    ptb.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 3000), ("valid", 300), ("test", 300)):
        sentences = (" ".join(rng.choice(words + ["<unk>", "N"]) for _ in range(rng.randint(5, 15))) for _ in range(n))
        (ptb / f"ptb.{split}.txt").write_text("".join(f" {s} \n" for s in sentences), encoding="utf-8")
    return folder


def prepare_params(check: Check) -> Path:
    """work/params.yaml: gpu-params.yaml with its path sources pointed at the data found, shrunk for a dry run."""
    raw = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))
    root = data_root(check.args)
    if root is None and check.args.dry_run:
        root = generate_corpora(check.work / "generated-data")
        check.log(f"no corpora found: generated tiny stand-ins in {root}")
    if root is None:
        raise StepFailed(f"no corpora: neither --data, $SEQLAB_DATA, {SHARED} nor {STAGED.relative_to(ROOT)} exists "
                         "(run `python bench/gpu.py --stage-data` where ../shared/data is, and carry bench/out/gpu-data)")
    for corpus in raw["corpora"].values():
        corpus["source"]["path"] = str(root / corpus["source"]["path"].removeprefix(SHARED + "/"))
    if check.args.dry_run:
        shrink(raw)
    check.results["data"] = str(root)
    path = check.work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def shrink(raw: dict) -> None:
    """The dry run's params: CPU, toy models, a few seconds of training each."""
    raw["train"]["defaults"].update(device="cpu", threads=1, precision="auto", log_every_steps=10,
                                    layer_norms_every_steps=20)
    raw["evaluate"].update(device="cpu", windows={"length": 32, "count": 64})
    for run in raw["train"]["runs"].values():
        model = run["model"]
        model.update(hidden_size=32, embedding_size=32 if model.get("tie_weights") else 16)
        # a few validations each: the char run makes ~600 toy steps in 2 s, the word run ~60
        every = 150 if "char" in run["dataset"] else 25
        run["overrides"].update(time_budget_s=2, batch_size=8, bptt=32, warmup_steps=5, val_every_steps=every)


# --------------------------------------------------------------------------- step 1: the CUDA tests


def cuda_test_args() -> list[str]:
    """``-m cuda tests`` when pyproject declares the marker, else the CUDA test files and CUDA-only tests."""
    import tomllib

    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("markers", [])
    if any(m.split(":")[0].strip() == "cuda" for m in markers):
        return ["-m", "cuda", "tests"]
    files = sorted(ROOT.glob("tests/test_*cuda*.py"))
    nodes = [f.relative_to(ROOT).as_posix() for f in files]
    skip = re.compile(r"skipif\(not torch\.cuda\.is_available\(\)[^\n]*\n(?:@[^\n]*\n)*def (\w+)")
    for f in sorted(set(ROOT.glob("tests/test_*.py")) - set(files)):
        nodes += [f"{f.relative_to(ROOT).as_posix()}::{m.group(1)}" for m in skip.finditer(f.read_text())]
    return nodes


def step_tests(check: Check) -> dict:
    junit = check.work / "pytest-cuda.xml"
    junit.unlink(missing_ok=True)
    selection = cuda_test_args()
    rc = check.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    *selection], check.budgets.tests)
    if not junit.exists():
        raise StepFailed(f"pytest exited {rc} without a report")
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    root = ET.parse(junit).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    failed = counts["failures"] + counts["errors"]
    passed = counts["tests"] - failed - counts["skipped"]
    return {"selection": selection, "exit_code": rc, "passed": passed, "failed": failed, "skipped": counts["skipped"],
            "met": failed == 0 and counts["skipped"] == 0 and passed > 0}


# --------------------------------------------------------------------------- steps 2-3: the recipes, through the stages


def step_quality(check: Check, params: Path, run: str, target: float) -> dict:
    from pipeline.config import load_params

    loaded = load_params(params)
    cfg, settings = loaded.train.runs[run], loaded.train.settings_for(run)
    dataset = cfg.dataset
    corpus = loaded.sections["tokenize"][dataset].corpus
    w = check.work
    tokens, model, metrics = w / "tokens" / dataset, w / "models" / run, w / "metrics" / f"{run}.json"
    deadline = time.monotonic() + settings.time_budget_s + check.budgets.quality_slack
    commands = [
        ("download", ["--out", w / "raw", "--only", corpus]),
        ("tokenize", ["--name", dataset, "--raw", w / "raw" / corpus, "--out", tokens]),
        ("train", ["--run", run, "--data", tokens, "--out", model]),
        ("evaluate", ["--run", run, "--data", tokens, "--model", model, "--metrics", metrics,
                      "--samples", w / "samples" / run]),
    ]
    shutil.rmtree(model, ignore_errors=True)  # a fresh run, never a resumed one
    stage_seconds = {}
    for stage, extra in commands:
        start = time.monotonic()
        rc = check.run([sys.executable, "-m", f"stages.{stage}", "--params", params, *extra],
                       deadline - time.monotonic())
        stage_seconds[stage] = round(time.monotonic() - start, 1)
        if rc != 0:
            raise StepFailed(f"stages.{stage} exited {rc}")
    train, figures = json.loads((model / "metrics.json").read_text()), json.loads(metrics.read_text())
    word = dataset.startswith("ptb")
    value = figures["test"]["perplexity"] if word else figures["val"]["loss"]
    epochs = list(csv.DictReader((model / "epochs.csv").open()))
    m = cfg.model
    samples = sorted((w / "samples" / run).glob("*.txt"))
    return {
        "run": run, "dataset": dataset,
        "model": f"{m.cell.upper()} {m.num_layers}x{m.hidden_size}, E {m.embedding_size}, dropout {m.dropout}/"
                 f"{m.embedding_dropout}{', tied' if m.tie_weights else ''}, {m.softmax} softmax",
        "batch": f"{settings.batch_size} x {settings.bptt}", "lr": settings.lr, "precision": settings.precision,
        "time_budget_s": settings.time_budget_s, "steps": train["steps"], "epochs": train["epochs"],
        "train_seconds": train["train_seconds"], "tokens_per_s": train["tokens_per_s"], "stage_seconds": stage_seconds,
        "parameters": train.get("parameters"), "best_step": train.get("best_step"),
        "val": figures.get("val"), "test": figures.get("test"),
        "figure": "test perplexity" if word else "val loss (whole stream)", "value": value, "target": target,
        "met": value <= target,
        "curve": [{"train_seconds": float(e["train_seconds"]), "step": int(float(e["step"])),
                   "val_loss": float(e["val_loss"]), "val_perplexity": float(e["val_perplexity"])} for e in epochs],
        "sample": samples[0].read_text(encoding="utf-8")[:300] if samples else None,
    }


# --------------------------------------------------------------------------- steps 4-5: in child processes


def step_child(check: Check, params: Path, which: str, box: float, extra_env: dict | None = None,
               variant: str = "default") -> dict:
    out = check.work / f"{which}-{variant}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", which, "--child-out", out, "--work", check.work,
           "--char-run", check.args.char_run, "--word-run", check.args.word_run, "--child-box", f"{box:.0f}"]
    if check.args.dry_run:
        cmd.append("--dry-run")
    if variant == "deterministic":
        cmd.append("--deterministic")
    rc = check.run(cmd, box + 30, env=check.env(extra_env))
    if rc != 0 or not out.exists():
        raise StepFailed(f"the {which} ({variant}) child exited {rc}")
    return json.loads(out.read_text())


def step_throughput(check: Check, params: Path) -> dict:
    b = check.budgets
    box = max(MIN_BOX, min(b.throughput, check.remaining() - b.resume))
    return step_child(check, params, "throughput", box)


def step_resume(check: Check, params: Path) -> dict:
    box = max(MIN_BOX, min(check.budgets.resume, check.remaining())) / 2
    default = step_child(check, params, "resume", box)
    deterministic = step_child(check, params, "resume", box, DETERMINISTIC_ENV, "deterministic")
    if default["bit_exact_resume"]:
        verdict = "bit-exact with the default settings"
    elif deterministic["bit_exact_resume"]:
        verdict = ("bit-exact only with torch.use_deterministic_algorithms(True), torch.backends.cudnn.deterministic"
                   " = True and CUBLAS_WORKSPACE_CONFIG=:4096:8")
    else:
        verdict = "not bit-exact even with deterministic algorithms (see nondeterministic_ops)"
    return {"default": default, "deterministic": deterministic, "verdict": verdict,
            "max_abs_diff": default["max_abs_diff_resume"], "met": default["bit_exact_resume"]}


def matmul_peak_tflops(device, n: int, repeats: int = 10) -> float:
    """Best-case bf16 matmul rate: the mean of ``repeats`` (n, n) @ (n, n) products after 3 warm-ups."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    c = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=c)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / repeats
    else:
        begin = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
        seconds = (time.perf_counter() - begin) / repeats
    return 2 * n**3 / seconds / 1e12


def _bench_train():
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import bench_train

    return bench_train


def child_throughput(args: argparse.Namespace) -> dict:
    """fit vs the minimal loop on each recipe's model (bench_train's two loops), and the bf16 matmul peak."""
    import tempfile

    import torch

    from pipeline.config import load_params
    from pipeline.models import build_model
    from pipeline.runtime import resolve_device, set_seed

    bench_train = _bench_train()
    import quality_speed
    work = Path(args.work)
    params = load_params(work / "params.yaml")
    device = torch.device(resolve_device(params.train.defaults.device))
    bench_train.DEVICE, bench_train.TRACKING = device.type, "none"
    threads = 1 if device.type == "cpu" else 0
    peak = matmul_peak_tflops(device, DRY.matmul_n if args.dry_run else GPU.matmul_n)
    per_config = (float(args.child_box) - 5) / 2
    rows = []
    with tempfile.TemporaryDirectory() as store_dir:
        store = Path(store_dir) / "unused.db"  # tracking none: no store is opened
        for label, run in (("char", args.char_run), ("word", args.word_run)):
            cfg, s = params.train.runs[run].model, params.train.settings_for(run)
            vocab_file = work / "tokens" / params.train.runs[run].dataset / "vocab.json"
            vocab = (len(json.loads(vocab_file.read_text())["tokens"]) if vocab_file.exists()
                     else DEFAULT_VOCAB.get(params.train.runs[run].dataset, 10_001))
            c = {"vocab": vocab, "batch": s.batch_size, "bptt": s.bptt}
            set_seed(s.seed)
            initial = build_model(cfg, vocab)
            warm = 3 if args.dry_run else 10
            warm_ids = bench_train.make_ids(c, warm)
            if device.type == "cuda":  # cuDNN plans, the caching allocator, Adam's state: out of the timings
                bench_train.run_seqlab(copy.deepcopy(initial), warm_ids, c, warm, threads, store)
            step_s = c["batch"] * c["bptt"] / bench_train.run_minimal(copy.deepcopy(initial), warm_ids, c,
                                                                      warm)["tokens_per_s"]
            repeats = 1 if args.dry_run else 3
            # each timed run ~1/10 of this config's share of the box (fit's set-up and plots take the rest)
            steps = max(5, min(20 if args.dry_run else 2000, int(per_config / 10 / step_s)))
            ids = bench_train.make_ids(c, steps)
            speed: dict[str, list[float]] = {"seqlab": [], "minimal": []}
            for rep in range(repeats):
                for which in (("seqlab", "minimal") if rep % 2 == 0 else ("minimal", "seqlab")):
                    model = copy.deepcopy(initial)
                    r = (bench_train.run_seqlab(model, ids, c, steps, threads, store) if which == "seqlab"
                         else bench_train.run_minimal(model, ids, c, steps))
                    speed[which].append(r["tokens_per_s"])
                    print(f"  {label} rep {rep + 1} {which:8s} {r['tokens_per_s']:12,.0f} tokens/s", flush=True)
            seqlab, minimal = statistics.median(speed["seqlab"]), statistics.median(speed["minimal"])
            flops = quality_speed.forward_flops(cfg, vocab, [])["total"]
            achieved = 3 * flops * seqlab / 1e12
            rows.append({"config": label, "run": run, "model": quality_speed.describe(cfg, vocab),
                         "batch": f"{c['batch']} x {c['bptt']}", "steps": steps, "repeats": repeats,
                         "seqlab_tokens_per_s": round(seqlab), "minimal_tokens_per_s": round(minimal),
                         "ratio": round(seqlab / minimal, 4), "runs": speed,
                         "forward_mflop_per_token": round(flops / 1e6, 2), "training_tflops": round(achieved, 4),
                         "share_of_bf16_peak": round(achieved / peak, 4)})
            del initial
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"device": str(device), "bf16_matmul_peak_tflops": round(peak, 3), "matmul_n": DRY.matmul_n if args.dry_run
            else GPU.matmul_n, "configs": rows, "met": all(r["ratio"] >= TARGETS["fit_vs_minimal"] for r in rows)}


def child_resume(args: argparse.Namespace) -> dict:
    """Train N steps whole, k + (N - k) with a resume, and N again; compare the final weights bit for bit."""
    import warnings

    import torch

    from pipeline.config import ModelConfig, SampleConfig, TrainSettings
    from pipeline.models import build_model
    from pipeline.models.checkpoint import load_checkpoint
    from pipeline.run_folder import WorkFolder
    from pipeline.runtime import set_seed
    from pipeline.training.loop import fit

    bench_train = _bench_train()
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    total, cut = (DRY if args.dry_run else GPU).resume_steps
    hidden, c = (16, {"vocab": 67, "batch": 4, "bptt": 16}) if args.dry_run else (512, {"vocab": 67, "batch": 32,
                                                                                         "bptt": 64})
    cfg = ModelConfig(cell="lstm", embedding_size=64, hidden_size=hidden, num_layers=2, dropout=0.2)
    ids = bench_train.make_ids(c, total + 10)  # one epoch is longer than the run: no epoch-end validation
    val = ids[: 20 * c["bptt"]]
    s = TrainSettings(device=device, threads=1 if device == "cpu" else 0, batch_size=c["batch"], bptt=c["bptt"],
                      epochs=1, max_steps=total, lr=2e-3, schedule="none", warmup_steps=10, clip="norm",
                      early_stopping_patience=None, val_every_steps=0, checkpoint_every_steps=cut, eval_batch_size=4,
                      eval_bptt=c["bptt"], log_every_steps=25, tracking="none", progress=False, sample=SampleConfig(n=0))
    work = Path(args.work) / f"resume-{'deterministic' if args.deterministic else 'default'}"
    shutil.rmtree(work, ignore_errors=True)

    def train(name: str, max_steps: int, resume: bool = False) -> dict:
        set_seed(s.seed)
        model = build_model(cfg, c["vocab"])
        return fit(model, ids, val, dataclasses.replace(s, max_steps=max_steps), work / name, resume=resume).metrics

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        whole = train("whole", total)
        train("parts", cut)
        resumed = train("parts", total, resume=True)
        again = train("again", total)
        seconds = time.perf_counter() - start

    def weights(name: str) -> dict:
        payload = load_checkpoint(WorkFolder(work / name).checkpoint)
        if payload["loop"]["step"] != total:
            raise StepFailed(f"{name}: the last checkpoint is of step {payload['loop']['step']}, not {total}")
        return payload["model_state"]

    def max_diff(a: dict, b: dict) -> float:
        return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)

    w_whole, w_resumed, w_again = weights("whole"), weights("parts"), weights("again")
    ops = sorted({str(w.message).splitlines()[0][:200] for w in caught if "determinis" in str(w.message)})
    return {"device": device, "deterministic": args.deterministic, "model": f"LSTM 2x{hidden}, dropout 0.2",
            "batch": f"{c['batch']} x {c['bptt']}", "steps": total, "interrupted_at": cut,
            "max_abs_diff_resume": max_diff(w_whole, w_resumed), "max_abs_diff_repeat": max_diff(w_whole, w_again),
            "bit_exact_resume": all(torch.equal(w_whole[k], w_resumed[k]) for k in w_whole),
            "bit_exact_repeat": all(torch.equal(w_whole[k], w_again[k]) for k in w_whole),
            "val_loss": {"whole": whole["val_loss"], "resumed": resumed["val_loss"], "again": again["val_loss"]},
            "steps_after_resume": resumed["steps"], "seconds": round(seconds, 1), "nondeterministic_ops": ops}


# --------------------------------------------------------------------------- summary and curves


def summary(results: dict) -> str:
    env, steps, dry = results.get("environment", {}), results["steps"], results["dry_run"]
    rows = [("device", env.get("device", "?"), "", ""),
            ("torch / CUDA / cuDNN", f"{env.get('torch')} / {env.get('cuda')} / {env.get('cudnn')}", "", ""),
            ("CPU", f"{env.get('cpus')} x {env.get('cpu')}", "", "")]

    def met(ok: bool | None) -> str:
        return "(dry run)" if dry else {True: "yes", False: "NO", None: ""}[ok]

    def failed(name: str, label: str) -> bool:
        step = steps.get(name)
        if step is None:
            return True
        if step["status"] != "ok":
            rows.append((label, f"{step['status']}: {step.get('error', '')}"[:150], "", "NO"))
            return True
        return False

    if not failed("tests", "CUDA tests"):
        t = steps["tests"]
        rows.append(("CUDA tests", f"{t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped",
                     "all pass, none skipped", met(t["met"])))
    for name, label in (("quality-char", "tinyshakespeare"), ("quality-word", "Penn Treebank")):
        if not failed(name, label):
            q = steps[name]
            rows.append((f"{label}: {q['figure']} after {q['time_budget_s']:g} s ({q['model']}, batch {q['batch']})",
                         f"{q['value']:.4f} ({q['steps']:,} steps, {q['epochs']:.1f} epochs, "
                         f"{q['tokens_per_s']:,.0f} tokens/s)", f"<= {q['target']:g}", met(q["met"])))
    if not failed("throughput", "throughput"):
        tp = steps["throughput"]
        for r in tp["configs"]:
            rows.append((f"fit / minimal loop, {r['config']} ({r['model']}, batch {r['batch']})",
                         f"{r['ratio']:.3f} ({r['seqlab_tokens_per_s']:,} / {r['minimal_tokens_per_s']:,} tokens/s)",
                         f">= {TARGETS['fit_vs_minimal']}", met(r["ratio"] >= TARGETS["fit_vs_minimal"])))
            rows.append((f"share of the bf16 matmul peak, {r['config']}",
                         f"{r['share_of_bf16_peak']:.1%} ({r['training_tflops']:.3g} of "
                         f"{tp['bf16_matmul_peak_tflops']:.3g} TFLOP/s)", "(reported)", ""))
    if not failed("resume", "resume"):
        rs = steps["resume"]
        for variant in ("default", "deterministic"):
            r = rs[variant]
            rows.append((f"resume after {r['interrupted_at']} of {r['steps']} steps, {variant}",
                         f"max abs diff {r['max_abs_diff_resume']:.3g} (repeat without resume: "
                         f"{r['max_abs_diff_repeat']:.3g})", "bit-exact" if variant == "default" else "(informational)",
                         met(r["bit_exact_resume"]) if variant == "default" else
                         ("exact" if r["bit_exact_resume"] else "not exact")))
        rows.append(("resume verdict", rs["verdict"], "", ""))
    lines = ["| check | value | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def plot_curves(results: dict, path: Path) -> bool:
    runs = [results["steps"].get(n) for n in ("quality-char", "quality-word")]
    if not any(r and r.get("status") == "ok" for r in runs):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, run, key, title in zip(axes, runs, ("val_loss", "val_perplexity"),
                                   ("tinyshakespeare, validation loss (whole stream)", "Penn Treebank, validation "
                                    "perplexity"), strict=True):
        if run and run.get("status") == "ok":
            x, y = [p["train_seconds"] for p in run["curve"]], [p[key] for p in run["curve"]]
            ax.plot(x, y, marker="o", markersize=3, label=f"{run['run']} ({run['model']})")
            label = f"target ({run['target']:g} {'test' if key == 'val_perplexity' else 'val'})"
            ax.axhline(run["target"], color="grey", ls="--", lw=0.8, label=label)
            ax.legend(fontsize=7)
        ax.set(title=title, xlabel="training seconds (validation excluded)", ylabel=key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    dry = " (DRY RUN: toy models, seconds of training)" if results["dry_run"] else ""
    env = results.get("environment", {})
    fig.suptitle(f"{env.get('device', '')}, torch {env.get('torch')}{dry}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy models, seconds per step")
    parser.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS)
    parser.add_argument("--char-run", default="shakespeare-gpu-2min", help="a run of gpu-params.yaml")
    parser.add_argument("--word-run", default="ptb-gpu-3min", help="a run of gpu-params.yaml")
    parser.add_argument("--data", help=f"the corpora folder (default: $SEQLAB_DATA, {SHARED} or {STAGED.relative_to(ROOT)})")
    parser.add_argument("--work", help="models and tokens (default /dev/shm/seqlab-gpu or bench/out/gpu; dry run: "
                                       "bench/out/gpu-dry)")
    parser.add_argument("--stage-data", action="store_true", help="copy the corpora to bench/out/gpu-data and exit")
    parser.add_argument("--child", choices=("throughput", "resume"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-box", default="60", help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage_data:
        return stage_data()
    if args.child:
        sys.path.insert(0, str(ROOT))
        result = (child_throughput if args.child == "throughput" else child_resume)(args)
        Path(args.child_out).write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0
    sys.path.insert(0, str(ROOT))
    check = Check(args)
    check.log(f"seqlab GPU check{' (DRY RUN)' if args.dry_run else ''}: out {check.out}, work {check.work}")
    check.results["environment"] = environment()
    check.log(json.dumps(check.results["environment"], indent=1))
    params = None
    try:
        params = prepare_params(check)
    except StepFailed as e:
        check.log(f"data: {e}")
        check.results["data_error"] = str(e)
    check.save()
    for name in args.steps:
        if name == "tests":
            check.step(name, step_tests, check)
        elif params is None:
            check.results["steps"][name] = {"status": "failed", "error": check.results["data_error"]}
        elif name.startswith("quality"):
            run = args.char_run if name == "quality-char" else args.word_run
            check.step(name, step_quality, check, params, run, TARGETS[name])
        else:
            check.step(name, step_throughput if name == "throughput" else step_resume, check, params)
    try:
        if plot_curves(check.results, check.out / CURVES):
            check.log(f"curves: {check.out / CURVES}")
    except Exception as e:  # the figures matter more than the picture
        check.results["curves_error"] = f"{type(e).__name__}: {e}"
        check.log(traceback.format_exc())
    table = summary(check.results)
    (check.out / SUMMARY).write_text(table + "\n", encoding="utf-8")
    check.save()
    check.log(f"\n{table}\n\nresults: {check.out / RESULTS} ({check.results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
