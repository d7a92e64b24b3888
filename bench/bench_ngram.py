"""The Kneser-Ney baseline at scale: fit time, scoring time and peak memory on a real character corpus.

    .venv/bin/python bench/bench_ngram.py [--order 6] [--sizes 10000000 100000000] [--reference-size 2000000]

The corpus is the ``.py`` files of this virtualenv's site-packages, concatenated in sorted path order into
``--workdir`` (default /tmp/seqlab-ngram-bench, never the repository) up to 101 MB: the first 100M bytes
are the training stream, the last 1M the held-out split.  Bytes map to ids as a char vocabulary would:
newline -> ``<eos>``, tab and printable ASCII -> their own ids, anything else -> ``<unk>`` (99 ids), stored as
uint8 ``.npy`` and read memory-mapped, as the stages read token files.

Each case runs in its own process, so each peak RSS (``VmHWM``) is that case's alone: fit on the first
``size`` training tokens, then score the 1M-token split (``nll``).  The old tuple-and-Counter model
(tests/ngram_reference.py) runs on ``--reference-size`` tokens beside the new one on the same tokens, for the
ratio and to check that both give the same ``nll`` to the bit.  Raw results: bench/results/ngram-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
TRAIN_BYTES, HELD_OUT_BYTES = 100_000_000, 1_000_000


def build_corpus(workdir: Path) -> tuple[Path, Path]:
    """train.npy (100M ids) and test.npy (1M ids) in ``workdir``, built once from site-packages' sources."""
    train, test = workdir / "train.npy", workdir / "test.npy"
    if train.exists() and test.exists():
        return train, test
    workdir.mkdir(parents=True, exist_ok=True)
    text, limit = bytearray(), TRAIN_BYTES + HELD_OUT_BYTES
    for path in sorted(SITE.rglob("*.py")):
        text += path.read_bytes()
        if len(text) >= limit:
            break
    if len(text) < limit:
        raise SystemExit(f"{SITE}: only {len(text)} bytes of .py files, need {limit}")
    table = np.full(256, 1, np.uint8)  # <unk>
    table[ord("\n")], table[ord("\t")] = 2, 3  # <eos>, tab
    table[32:127] = np.arange(4, 99)  # printable ASCII
    ids = table[np.frombuffer(bytes(text[:limit]), np.uint8)]
    np.save(train, ids[:TRAIN_BYTES])
    np.save(test, ids[TRAIN_BYTES:])
    return train, test


def run_case(impl: str, size: int, order: int, train: Path, test: Path) -> dict:
    """One case in this process (the child): fit, score, and this process's peak RSS."""
    from pipeline.files import read_tokens

    if impl == "reference":
        from tests.ngram_reference import KneserNeyLM
    else:
        from pipeline.evaluation.ngram import KneserNeyLM
    ids, held_out = read_tokens(train)[:size], read_tokens(test)
    start = time.perf_counter()
    lm = KneserNeyLM(order, 99).fit(ids)
    fitted = time.perf_counter()
    nll, n = lm.nll(held_out)
    scored = time.perf_counter()
    ngrams = len(lm.counts[order]) if impl == "reference" else lm.num_ngrams(order)
    return {"impl": impl, "train_tokens": int(len(ids)), "order": order, "fit_s": round(fitted - start, 3),
            "score_s": round(scored - fitted, 3), "scored_tokens": n, "nll": nll, "perplexity": float(np.exp(nll / n)),
            "ngrams": ngrams, "peak_rss_mb": round(_own_peak_kib() / 1024, 1)}


def _own_peak_kib() -> int:
    """This process's ``VmHWM``: its own high-water mark since exec (``ru_maxrss`` would include the parent's
    size at fork, which Linux carries over exec; see bench/peak_rss.py)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def spawn(impl: str, size: int, args: argparse.Namespace, train: Path, test: Path) -> dict:
    command = [sys.executable, __file__, "--case", impl, str(size), "--order", str(args.order),
               "--workdir", str(args.workdir)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{impl:>10} {size:>11,} tokens: fit {result['fit_s']:8.2f} s, score 1M {result['score_s']:7.2f} s, "
          f"peak RSS {result['peak_rss_mb']:8.1f} MB, {result['ngrams']:,} {args.order}-grams, "
          f"test ppl {result['perplexity']:.4f}", flush=True)
    return result


def machine() -> dict:
    flags = sorted({f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                    for f in line.split() if f.startswith("avx512")})
    return {"cpus": os.cpu_count(), "avx512": flags, "numpy": np.__version__, "python": platform.python_version(),
            "load_1min_at_start": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", type=int, default=6)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    ap.add_argument("--reference-size", type=int, default=2_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/seqlab-ngram-bench"))
    ap.add_argument("--case", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    train, test = build_corpus(args.workdir)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.order, train, test)))
        return 0
    info = machine()
    print(f"load average (1 min) at start: {info['load_1min_at_start']:.2f}; avx512: {' '.join(info['avx512']) or 'none'}")
    cases = [spawn("reference", args.reference_size, args, train, test),
             spawn("vectorised", args.reference_size, args, train, test)]
    same = cases[0]["nll"] == cases[1]["nll"]
    print(f"speed-up on {args.reference_size:,} tokens: fit {cases[0]['fit_s'] / cases[1]['fit_s']:.1f}x, "
          f"score {cases[0]['score_s'] / cases[1]['score_s']:.1f}x; nll bit-identical: {same}")
    cases += [spawn("vectorised", size, args, train, test) for size in args.sizes]
    out = REPO / "bench" / "results" / f"ngram-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    corpus = {"source": f"{SITE}/**/*.py, sorted paths, concatenated", "train_bytes": TRAIN_BYTES,
              "held_out_bytes": HELD_OUT_BYTES, "vocab_size": 99, "dtype": "uint8"}
    out.write_text(json.dumps({"command": " ".join(sys.argv), "machine": info, "corpus": corpus,
                               "nll_bit_identical": same, "cases": cases}, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
