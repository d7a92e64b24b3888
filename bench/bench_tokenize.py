"""Tokenization speed on real corpora, through the same stages users run.

    .venv/bin/python bench/bench_tokenize.py [--shared ../shared/data] [--repeats 5]

Penn Treebank train (word level, 5.1 MB) and tinyshakespeare (char level, 1.1 MB) are
materialised with the download stage's ``path`` source, then tokenized by the tokenize
stage's ``run`` (vocabulary, three .npy arrays, stats.json: everything it writes).
The baseline, measured interleaved in the same run, is the minimal loop a person would
write: read, split, build a dict, map every token to an id, save one array.  Reports
median seconds, MB/s and the ratio seqlab/baseline.  Torch threads are irrelevant here
(pure Python/NumPy); the one-minute load average is printed because the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stages import download as download_stage  # noqa: E402
from stages import tokenize as tokenize_stage  # noqa: E402

CASES = {
    "ptb-word": ("wojzaremba_lstm", "ptb.train.txt", "word", "whitespace"),
    "shakespeare-char": ("karpathy_char-rnn/tinyshakespeare", "input.txt", "char", "punctuation"),
}


def baseline(path: Path, level: str, out: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tokens = [t for line in text.split("\n") if line.strip() for t in ([*line.split(), "<eos>"] if level == "word" else [*line, "<eos>"])]
    vocab = {t: i for i, (t, _) in enumerate(Counter(tokens).most_common())}
    np.save(out, np.array([vocab[t] for t in tokens], dtype=np.int32))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = tmp / "params.yaml"
        corpora, tokenize = [], []
        for name, (folder, fname, level, split) in CASES.items():
            corpora.append(f"  {name}: {{kind: text, source: {{type: path, path: '{Path(args.shared) / folder / fname}'}}}}")
            tokenize.append(
                f"  {name}: {{corpus: {name}, level: {level}, word_split: {split}, "
                f"split: {{method: contiguous, val: 0.0, test: 0.0}}}}"
            )
        params.write_text("corpora:\n" + "\n".join(corpora) + "\ntokenize:\n" + "\n".join(tokenize) + "\n")
        assert download_stage.main(["--params", str(params), "--out", str(tmp / "raw")]) == 0
        print(f"{'dataset':18} {'MB':>6} {'seqlab s':>9} {'MB/s':>7} {'baseline s':>11} {'ratio':>6}")
        for name, (_, fname, level, _) in CASES.items():
            raw = tmp / "raw" / name
            mb = (raw / fname).stat().st_size / 1e6
            ours, base = [], []
            for _ in range(args.repeats):  # interleaved: both see the same background load
                t0 = time.perf_counter()
                tokenize_stage.run(str(params), name, str(raw), str(tmp / "tokens" / name))
                ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                baseline(raw / fname, level, tmp / "baseline.npy")
                base.append(time.perf_counter() - t0)
            o, b = statistics.median(ours), statistics.median(base)
            print(f"{name:18} {mb:6.2f} {o:9.3f} {mb / o:7.1f} {b:11.3f} {o / b:6.2f}")
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
