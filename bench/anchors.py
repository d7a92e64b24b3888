"""The anchors seqlab's quality recipes are compared with, run from their own code on this machine.

* nanoGPT (karpathy/nanoGPT), the CPU recipe of its README on tinyshakespeare characters: a 4-layer, 4-head,
  128-wide Transformer, 64-character windows, batch 12, 2000 iterations, evaluated on random 64-character
  windows of the validation split.  Its log prints every iteration's time; the training time is their sum,
  with the iterations that also evaluated counted at the median iteration time.  Its final checkpoint is
  scored again by its own code with 200 evaluation batches (the recipe's 20 are noisy).
* pytorch/examples word_language_model on Penn Treebank: ``main.py --epochs 3`` with its defaults (2x200 LSTM,
  SGD lr 20, clip 0.25, batch 20, bptt 35, dropout 0.2, a full softmax).  The training time is the sum over
  its epochs of the logged ms/batch times the batches (its validation passes excluded); its last line is
  the test perplexity.

Both are cloned by the user outside this repository (nothing of theirs is copied here) and passed as
folders; the data are the same local files seqlab's recipes read.  Each function returns the figures and the
exact command, and keeps the anchor's whole log next to seqlab's outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

NANOGPT_RECIPE = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
                  "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                  "--lr_decay_iters=2000", "--dropout=0.0"]
WLM_RECIPE = ["--epochs", "3"]


def _run(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> str:
    print("$", " ".join(cmd), f"(in {cwd}, load {os.getloadavg()[0]:.2f})", flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"{cmd[1]} failed (exit {result.returncode}); see {log}")
    print(f"  {time.perf_counter() - start:.0f} s wall; log {log}", flush=True)
    return result.stdout


def nanogpt(repo: Path, text: Path, out: Path, env: dict[str, str]) -> dict:
    """nanoGPT's README CPU recipe on ``text`` (tinyshakespeare's input.txt)."""
    data = repo / "data" / "shakespeare_char"
    shutil.copy(text, data / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True, env=env)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "nanogpt-ckpt"
    base = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_RECIPE, f"--out_dir={ckpt_dir}"]
    log = _run(base, repo, out / "nanogpt-train.log", env)
    pairs = re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", log, re.M)
    iters, times = [int(i) for i, _ in pairs], [float(t) for _, t in pairs]
    evals = {int(s) for s in re.findall(r"^step (\d+):", log, re.M)}
    plain = [t for i, t in zip(iters, times, strict=True) if i not in evals]
    train_seconds = (sum(plain) + statistics.median(plain) * (len(times) - len(plain))) / 1000
    val_logged = float(re.findall(r"^step \d+: train loss [\d.]+, val loss ([\d.]+)", log, re.M)[-1])
    rescored = _run([*base, "--init_from=resume", "--eval_only=True", "--eval_iters=200"], repo,
                    out / "nanogpt-eval.log", env)
    val = float(re.findall(r"val loss ([\d.]+)", rescored)[-1])
    return {"command": " ".join(["python train.py config/train_shakespeare_char.py", *NANOGPT_RECIPE]),
            "iterations": len(times), "train_seconds": round(train_seconds, 1), "val_loss_logged_20_batches":
            val_logged, "val_loss": val, "protocol": "random 64-char windows of the last 10% (200 batches of 12)"}


def word_language_model(repo: Path, ptb: Path, out: Path, env: dict[str, str]) -> dict:
    """pytorch/examples word_language_model's defaults for 3 epochs on Penn Treebank (``ptb`` holds ptb.*.txt)."""
    data = out / "wlm-data"
    data.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("valid", "valid"), ("test", "test")):
        shutil.copy(ptb / f"ptb.{split}.txt", data / f"{name}.txt")
    cmd = [sys.executable, "main.py", "--data", str(data), *WLM_RECIPE, "--save", str(out / "wlm-model.pt")]
    log = _run(cmd, repo / "word_language_model", out / "wlm-train.log", env)
    train_seconds = 0.0
    for epoch in sorted({int(e) for e in re.findall(r"^\| epoch\s+(\d+) \|", log, re.M)}):
        rows = re.findall(rf"^\| epoch\s+{epoch} \|\s+(\d+)/\s*(\d+) batches .*?ms/batch\s+([\d.]+)", log, re.M)
        total = int(rows[0][1])
        train_seconds += statistics.mean(float(r[2]) for r in rows) * total / 1000
    test = re.search(r"End of training \| test loss\s+([\d.]+) \| test ppl\s+([\d.]+)", log)
    return {"command": " ".join(["python main.py --data <ptb> ", *WLM_RECIPE]),
            "train_seconds": round(train_seconds, 1), "test_loss": float(test[1]), "test_perplexity": float(test[2]),
            "valid_perplexity": [float(v) for v in re.findall(r"valid ppl\s+([\d.]+)", log)]}
