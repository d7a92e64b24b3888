"""Tokenize stage speed and peak memory on a large corpus, through the command users run.

    .venv/bin/python bench/bench_tokenize.py [--mb 100] [--corpus PATH] [--levels char word] [--repeats 1]
                                             [--record line] [--reference]

Without ``--corpus`` the corpus is real text generated on the spot: the ``.py`` files of this virtualenv's
site-packages, concatenated in sorted order (files that are not UTF-8 skipped) up to ``--mb`` MB (10^6 bytes),
cut at a line end, written under the system temp folder (never into the repository).  ``--corpus`` takes a
file or a corpus folder instead (enwik8, WikiText-103, a source tree).

Each case runs ``python -m stages.tokenize`` in a process of its own, started by a small wrapper process that
reports the stage's peak RSS (``ru_maxrss`` of its child: a process forked from this one would report this
process's memory too) and CPU time.  Cases: char level, and word level with ``word_split: punctuation`` and
``max_size: 50000``; records ``--record`` (default ``line``), the default random 90/5/5 split.  ``--reference``
also runs the in-memory path the stage used before it streamed (``load_split_records`` + ``tokenize_splits`` +
``write_dataset``), for comparison.  The machine is shared: wall time depends on the load (printed), CPU time
much less.  Raw results go to ``bench/results/tokenize-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SITE_PACKAGES = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
CASES = {
    "char": {"level": "char"},
    "word": {"level": "word", "word_split": "punctuation", "max_size": 50000},
}
# Runs its arguments as a child; prints the child's peak RSS (KiB) and CPU seconds.
_WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(u.ru_maxrss, u.ru_utime + u.ru_stime)")
_REFERENCE = """
import sys
from pathlib import Path
from pipeline import files
from pipeline.config import load_params
from pipeline.data.text import load_split_records
from pipeline.tokenization import tokenize_splits
params, name, raw, out = sys.argv[1:]
cfg = load_params(params, required=("tokenize",)).tokenize[name]
records = load_split_records(Path(raw), cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe)
ds = tokenize_splits(records, cfg, name)
files.write_dataset(out, ds.vocab, ds.ids, ds.stats)
"""


def site_packages_corpus(megabytes: float, folder: Path) -> Path:
    """The first ``megabytes`` MB of the sorted ``.py`` files of site-packages, as one file (made once)."""
    path = folder / f"site-packages-{megabytes:g}MB.txt"
    if path.exists():
        return path
    limit, written = int(megabytes * 1e6), 0
    folder.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "wb") as out:
        for source in sorted(SITE_PACKAGES.rglob("*.py")):
            data = source.read_bytes()
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if written + len(data) >= limit:
                data = data[: data.rfind(b"\n", 0, limit - written) + 1]  # end on a whole line
            out.write(data)
            written += len(data)
            if written >= limit - 1000:
                break
    os.replace(path.with_suffix(".tmp"), path)
    return path


def corpus_folder(corpus: Path, tmp: Path) -> Path:
    """The stage reads a folder: a single file is linked into one."""
    if corpus.is_dir():
        return corpus
    folder = tmp / "raw"
    folder.mkdir(exist_ok=True)
    (folder / corpus.name).symlink_to(corpus.resolve())
    return folder


def run_case(tmp: Path, raw: Path, name: str, reference: bool) -> dict:
    """One timed run: wall seconds, CPU seconds, peak RSS and the stage's stats."""
    out = tmp / "tokens" / name
    if reference:
        command = [sys.executable, "-c", _REFERENCE, str(tmp / "params.yaml"), name, str(raw), str(out)]
    else:
        command = [sys.executable, "-m", "stages.tokenize", "--params", str(tmp / "params.yaml"), "--name", name,
                   "--raw", str(raw), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *command], cwd=REPO, env=env, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - start
    rss_kib, cpu = done.stdout.split()[-2:]
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": round(wall, 3), "cpu_s": round(float(cpu), 3), "peak_rss_mb": round(int(rss_kib) / 1024, 1),
            "tokens": {s: stats[s]["tokens"] for s in ("train", "val", "test")}, "vocab_size": stats["vocab_size"]}


def machine() -> dict:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = re.search(r"Model name:\s*(.+)", cpu)
    return {"cpu": model.group(1).strip() if model else platform.processor(), "cores": os.cpu_count(),
            "avx512": sorted(set(re.findall(r"avx512[a-z_0-9]*", cpu))), "python": platform.python_version(),
            "numpy": np.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated corpus, MB (default 100)")
    ap.add_argument("--corpus", type=Path, help="a corpus file or folder instead of the generated one")
    ap.add_argument("--levels", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--record", default="line", choices=["line", "verbatim_line", "paragraph"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--reference", action="store_true", help="also run the in-memory path (slow, GBs of memory)")
    args = ap.parse_args()
    corpus = args.corpus or site_packages_corpus(args.mb, Path(tempfile.gettempdir()) / "seqlab-bench-tokenize")
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "corpus": str(corpus),
               "record": args.record, "load_average_start": os.getloadavg()[0], "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = corpus_folder(corpus, tmp)
        size = sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
        results["corpus_bytes"] = size
        block = "\n".join(f"  {level}: {{corpus: c, record: {args.record}, {json.dumps(CASES[level])[1:-1]}}}"
                          for level in args.levels)
        (tmp / "params.yaml").write_text(f"corpora:\n  c: {{kind: text, source: {{type: path, path: x}}}}\ntokenize:\n{block}\n")
        print(f"corpus {corpus}: {size / 1e6:.1f} MB; load average (1 min) {os.getloadavg()[0]:.2f}")
        print(f"{'case':16} {'wall s':>8} {'cpu s':>7} {'MB/s':>6} {'MB/s cpu':>9} {'peak RSS MB':>12}")
        for level in args.levels:
            for path in (["stream", "reference"] if args.reference else ["stream"]):
                runs = [run_case(tmp, raw, level, path == "reference") for _ in range(args.repeats)]
                wall, cpu = statistics.median(r["wall_s"] for r in runs), statistics.median(r["cpu_s"] for r in runs)
                peak = max(r["peak_rss_mb"] for r in runs)
                case = {"level": level, "path": path, **CASES[level], "runs": runs, "mb_per_s": round(size / 1e6 / wall, 2),
                        "mb_per_cpu_s": round(size / 1e6 / cpu, 2), "peak_rss_mb": peak}
                results["cases"].append(case)
                print(f"{level + ' ' + path:16} {wall:8.2f} {cpu:7.2f} {case['mb_per_s']:6.1f} "
                      f"{case['mb_per_cpu_s']:9.1f} {peak:12.0f}")
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average (1 min) at end: {results['load_average_end']:.2f}")
    out = REPO / "bench" / "results" / f"tokenize-{results['date']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"raw results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
