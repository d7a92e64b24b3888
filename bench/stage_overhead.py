"""Stage start-up: the fixed cost of the train, evaluate and baseline stages above ``python -c "import torch"``.

Builds a tiny workspace in a temporary folder (a character dataset of made-up tune names, a params.yaml with
one tiny GRU run, ``tracking: mlflow`` into a sqlite store in that folder), trains once to create the store and
a model (not counted), then runs interleaved repeats of

* ``python -c "import torch"`` (the floor every stage pays),
* ``python -m stages.train`` (a fresh ``--out`` each repeat: a new run in the store),
* ``python -m stages.evaluate`` (into the warm-up model's run),
* ``python -m stages.baseline`` (a new ``ngram`` run),

and prints a markdown table: median and min wall seconds, the median minus the ``import torch`` median, and the
CPU seconds used (user + system, of the stage and its child processes), with the load average and the CPU's
vector flags.  ``--avx2`` caps every subprocess's kernels to AVX2
(oneDNN, MKL and ATen), as on a CPU without AVX-512.

    .venv/bin/python bench/stage_overhead.py                  # 5 repeats
    .venv/bin/python bench/stage_overhead.py --repeats 3 --avx2 --json
    .venv/bin/python bench/stage_overhead.py --repo . --repo /tmp/seqlab-head   # two checkouts, interleaved
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's pipeline, whatever the environment has installed
AVX2_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
WORDS = ["the", "little", "hill", "of", "monks", "glen", "boys", "fair", "child", "woman", "dark"]
TRAIN = {"device": "cpu", "threads": 1, "batch_size": 4, "bptt": 16, "epochs": 2, "log_every_steps": 5,
         "checkpoint_every_steps": 10, "eval_batch_size": 2, "progress": False, "tracking": "mlflow",
         "sample": {"n": 2, "max_length": 20}}
RUN = {"dataset": "names-char", "variant": "gru", "model": {"cell": "gru", "embedding_size": 8, "hidden_size": 16}}


def write_dataset(folder: Path) -> None:
    """``folder/{vocab.json,train,val,test}.npy``: <eos>-closed character records, as the tokenize stage writes."""
    from pipeline import files
    from pipeline.vocab import EOS_ID, Vocabulary

    rng = np.random.default_rng(0)
    records = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)))) for _ in range(160)]
    vocab = Vocabulary.build({c: 1 for c in sorted({c for r in records for c in r})},
                             meta={"kind": "text", "level": "char"})
    splits = {"train": records[:120], "val": records[120:140], "test": records[140:]}
    folder.mkdir(parents=True, exist_ok=True)
    vocab.save(folder / "vocab.json")
    for split, rows in splits.items():
        ids = np.concatenate([np.append(vocab.encode(r), EOS_ID) for r in rows]).astype(np.int64)
        files.write_tokens(folder / f"{split}.npy", ids, len(vocab))


def write_params(path: Path) -> None:
    """A complete params.yaml: every ``train.defaults`` key (defaults, then the tiny settings) and one run."""
    from pipeline.config import TrainSettings, to_plain

    train = {"defaults": {**to_plain(TrainSettings()), **TRAIN}, "runs": {"names-gru": RUN}}
    evaluate = {"device": "cpu", "samples": {"n": 2, "max_length": 20}, "baselines": {"names-char": {"order": 3}}}
    path.write_text(yaml.safe_dump({"train": train, "evaluate": evaluate}, sort_keys=False))


def commands(python: str) -> dict[str, list[str]]:
    data = ["--data", "data/tokens/names-char"]
    return {
        "import torch": [python, "-c", "import torch"],
        "train": [python, "-m", "stages.train", "--params", "params.yaml", "--run", "names-gru", *data, "--out"],
        "evaluate": [python, "-m", "stages.evaluate", "--params", "params.yaml", "--run", "names-gru", *data,
                     "--model", "models/warm", "--metrics", "metrics/gru.json", "--samples", "samples/gru"],
        "baseline": [python, "-m", "stages.baseline", "--params", "params.yaml", "--name", "names-char", *data,
                     "--metrics", "metrics/ngram.json"],
    }


def timed(command: list[str], root: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its waited-for children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {flag: flag in flags for flag in ("avx2", "avx512f", "avx512_bf16")}


def measure(repeats: int, avx2: bool, repos: list[Path]) -> dict:
    root = Path(tempfile.mkdtemp(prefix="seqlab-overhead-"))
    try:
        write_dataset(root / "data/tokens/names-char")
        write_params(root / "params.yaml")
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "OMP_NUM_THREADS": "1",
               **(AVX2_CAPS if avx2 else {})}
        env.pop("DVC_ROOT", None)
        envs = {repo: {**env, "PYTHONPATH": str(repo)} for repo in repos}
        cmds = commands(sys.executable)
        timed([*cmds["train"], "models/warm"], root, envs[repos[0]])  # creates the store and the model evaluate reads
        label = {repo: f" ({repo})" if len(repos) > 1 else "" for repo in repos}
        times: dict[str, list[tuple[float, float]]] = {"import torch": []}
        times.update({f"{name}{label[repo]}": [] for name in cmds if name != "import torch" for repo in repos})
        loads = [os.getloadavg()[0]]
        for i in range(repeats):
            for name, command in cmds.items():
                for repo in repos[:1] if name == "import torch" else repos:
                    extra = [f"models/r{i}-{repos.index(repo)}"] if name == "train" else []
                    key = name if name == "import torch" else f"{name}{label[repo]}"
                    times[key].append(timed([*command, *extra], root, envs[repo]))
            loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(wall for wall, _ in times["import torch"])
    rows = {}
    for name, runs in times.items():
        walls = [wall for wall, _ in runs]
        rows[name] = {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
                      "above_import_torch_s": round(statistics.median(walls) - floor, 3),
                      "cpu_s": round(statistics.median(cpu for _, cpu in runs), 3), "runs": [round(x, 3) for x in walls]}
    return {"repeats": repeats, "avx2_capped": avx2, "cpu_flags": cpu_flags(), "load_average_1min": loads,
            "python": sys.version.split()[0], "stages": rows}


def table(result: dict) -> str:
    lines = ["| command | median s | min s | median - import torch s | CPU s (median) |", "|---|---|---|---|---|"]
    for name, row in result["stages"].items():
        lines.append(f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['above_import_torch_s']:+.2f} "
                     f"| {row['cpu_s']:.2f} |")
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["cpu_flags"].items())
    load = result["load_average_1min"]
    lines += ["", f"{result['repeats']} interleaved repeats; kernels capped to AVX2: "
              f"{'yes' if result['avx2_capped'] else 'no'}; CPU flags: {flags}; "
              f"1-min load average {min(load):.2f}-{max(load):.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--avx2", action="store_true", help="cap oneDNN, MKL and ATen kernels to AVX2")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--repo", action="append", type=Path, metavar="PATH",
                        help="the checkout whose stages run (default: this one); give it twice to compare two "
                        "checkouts, interleaved (e.g. an export of the previous commit)")
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.avx2, [p.resolve() for p in args.repo or [REPO]])
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
