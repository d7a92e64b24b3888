"""Quality within a CPU budget: tinyshakespeare characters and Penn Treebank words.

Runs the pipeline's own stages (download -> tokenize -> train -> evaluate) with ``bench/quality/params.yaml``,
which points the download stage's ``path`` source at ../shared/data, into ``bench/out/quality/``; each run is an
MLflow run like any other (the project's store).  Then it prints the table BENCHMARKS.md quotes and draws the
loss-against-training-time curves into ``docs/quality_curves.png``.

    python bench/quality.py                      # all four runs (~87 min of training, ~95 min in all, on 2 cores)
    python bench/quality.py --runs shakespeare-144s ptb-15min
    python bench/quality.py --report-only        # re-read finished runs
    python bench/quality.py --anchors --nanogpt ../scratch/nanoGPT --examples ../scratch/examples --avx2

``--anchors`` runs the two anchors from their own code (clones outside this repository: see bench/anchors.py)
and, right after each, seqlab's recipe for the same corpus with the anchor's measured training time as its
budget: tinyshakespeare against nanoGPT's README CPU recipe (validation loss on random 64-character windows,
nanoGPT's protocol) and Penn Treebank against pytorch/examples word_language_model's ``main.py --epochs 3``
(test perplexity); it prints both sides and seqlab / anchor, and writes bench/out/quality/anchors.json.
``--avx2`` caps oneDNN, MKL and ATen at AVX2 for both sides (an AVX2-only CPU as far as the kernels go).

Run it on a quiet machine: the budgets are wall-clock training time, so another process on the cores
costs the runs steps (the script prints the load average before each run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAMS = "bench/quality/params.yaml"
OUT = Path("bench/out/quality")
RUNS = ("shakespeare-144s", "shakespeare-10min", "ptb-15min", "ptb-60min")
ANCHORED = {"shakespeare-vs-nanogpt": "nanogpt", **{run: "word_language_model" for run in (
    "ptb-vs-wlm", "ptb-vs-wlm-light-dropout", "ptb-vs-wlm-no-dropout", "ptb-vs-wlm-lr5e-3",
    "ptb-vs-wlm-batch20", "ptb-vs-wlm-batch16", "ptb-vs-wlm-batch12")}}
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
# Published or measured-here anchors the targets refer to (see the issue and BENCHMARKS.md).
TARGETS = {"shakespeare-144s": ("val", "loss", 1.55), "shakespeare-10min": ("val", "loss", 1.42),
           "ptb-15min": ("test", "perplexity", 115.0), "ptb-60min": ("test", "perplexity", 100.0)}


def stage(*args: str) -> None:
    """Run one pipeline stage (``args[0]``: its module) with this interpreter, from the repository root."""
    cmd = [sys.executable, "-m", *args]
    print("$", " ".join(cmd[1:]), f"(load {os.getloadavg()[0]:.2f})", flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def prepare(runs: list[str], params_file: str = PARAMS) -> None:
    """download and tokenize what ``runs`` train on."""
    sys.path.insert(0, str(ROOT))
    from pipeline.config import load_params

    params = load_params(ROOT / params_file)
    datasets = sorted({params.train.runs[r].dataset for r in runs})
    corpora = sorted({params.sections["tokenize"][d].corpus for d in datasets})
    stage("stages.download", "--params", params_file, "--out", str(OUT / "raw"), "--only", *corpora)
    for d in datasets:
        corpus = params.sections["tokenize"][d].corpus
        stage("stages.tokenize", "--params", params_file, "--name", d, "--raw", str(OUT / "raw" / corpus),
              "--out", str(OUT / "tokens" / d))


def run_all(runs: list[str], params_file: str = PARAMS, prepared: bool = False) -> None:
    from pipeline.config import load_params

    if not prepared:
        prepare(runs, params_file)
    params = load_params(ROOT / params_file)
    for r in runs:
        cfg = params.train.runs[r]
        data, model = OUT / "tokens" / cfg.dataset, OUT / "models" / cfg.dataset / cfg.variant
        start = time.perf_counter()
        stage("stages.train", "--params", params_file, "--run", r, "--data", str(data), "--out", str(model))
        stage("stages.evaluate", "--params", params_file, "--run", r, "--data", str(data), "--model", str(model),
              "--metrics", str(OUT / "metrics" / f"{r}.json"), "--samples", str(OUT / "samples" / r))
        print(f"{r}: {time.perf_counter() - start:.0f} s wall with validation and evaluation", flush=True)


def report(runs: list[str]) -> None:
    import csv

    rows = []
    for r in runs:
        metrics_path = OUT / "metrics" / f"{r}.json"
        if not metrics_path.exists():
            continue
        sys.path.insert(0, str(ROOT))
        from pipeline.config import load_params

        cfg = load_params(ROOT / PARAMS).train.runs[r]
        model = OUT / "models" / cfg.dataset / cfg.variant
        figures, train = json.loads(metrics_path.read_text()), json.loads((model / "metrics.json").read_text())
        split, key, target = TARGETS[r]
        value = figures[split][key]
        rows.append((r, train, figures, value, target, list(csv.DictReader((model / "epochs.csv").open()))))
        extra = f", windows(64) {figures['val']['window_loss']:.4f}" if "window_loss" in figures["val"] else ""
        print(f"{r}: {split} {key} {value:.4f} (target <= {target}) {'MET' if value <= target else 'MISSED'}; "
              f"val loss {figures['val']['loss']:.4f}{extra}; {train['steps']} steps, "
              f"{train['train_seconds']:.0f} s training, {train['tokens_per_s']:,.0f} tokens/s")
    if rows:
        plot(rows)


def plot(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r, _train, _figures, _value, _target, epochs in rows:
        ax = axes[0] if r.startswith("shakespeare") else axes[1]
        x = [float(e["train_seconds"]) for e in epochs]
        y = [float(e["val_loss"]) if ax is axes[0] else float(e["val_perplexity"]) for e in epochs]
        ax.plot(x, y, marker="o", markersize=3, label=r)
    axes[0].axhline(1.886, color="grey", ls=":", label="nanoGPT CPU recipe @144 s (1.886)")
    axes[0].axhline(1.55, color="C0", ls="--", lw=0.8, label="target @144 s (1.55)")
    axes[0].axhline(1.42, color="C1", ls="--", lw=0.8, label="target @600 s (1.42)")
    axes[0].set(title="tinyshakespeare, validation (whole stream)", xlabel="training seconds (validation excluded)",
                ylabel="loss, nats/char", ylim=(1.3, 2.4))
    axes[1].axhline(115, color="C0", ls="--", lw=0.8, label="target @15 min (test 115)")
    axes[1].axhline(100, color="C1", ls="--", lw=0.8, label="target @60 min (test 100)")
    axes[1].set(title="Penn Treebank, validation perplexity", xlabel="training seconds (validation excluded)",
                ylabel="perplexity", ylim=(80, 250))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "docs" / "quality_curves.png"
    fig.savefig(out, dpi=110)
    print(f"curves: {out}")


def with_budget(run: str, seconds: float) -> str:
    """A copy of the params file (under bench/out) where ``run`` trains for ``seconds``; its path from ROOT."""
    import yaml

    raw = yaml.safe_load((ROOT / PARAMS).read_text())
    raw["train"]["runs"][run].setdefault("overrides", {})["time_budget_s"] = round(seconds, 1)
    path = OUT / f"params-{run}.yaml"
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def run_anchors(nanogpt_repo: Path, examples_repo: Path, which: list[str], reuse: bool = False) -> None:
    """Each anchor, then seqlab's recipe for its corpus with the anchor's training time; both sides printed.
    ``reuse``: take the anchor's figures from an earlier run of this script (anchors.json) instead of running it."""
    import anchors

    sys.path.insert(0, str(ROOT))
    from pipeline.config import load_params

    params = load_params(ROOT / PARAMS)
    sources = {name: Path(ROOT / c.source.path) for name, c in params.sections["corpora"].items()}
    results_path = ROOT / OUT / "anchors.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    env = dict(os.environ)
    for run in which:
        earlier = [r["anchor"] for name, r in results.items() if ANCHORED.get(name) == ANCHORED[run]]
        if reuse and earlier:
            anchor = max(earlier, key=lambda a: a.get("measured_at", ""))  # the newest measurement
            print(f"{ANCHORED[run]}: reusing its figures from {results_path} (--reuse-anchor)", flush=True)
        elif ANCHORED[run] == "nanogpt":
            anchor = anchors.nanogpt(nanogpt_repo, sources["tinyshakespeare"], ROOT / OUT / "anchors", env)
        else:
            anchor = anchors.word_language_model(examples_repo, sources["ptb"], ROOT / OUT / "anchors", env)
        anchor.setdefault("measured_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        cfg = params.train.runs[run]
        prepare([run])
        # An n-gram mixed in at evaluation is trained too: its fit comes out of the network's budget.
        ngram_s = ngram_fit_seconds(cfg.dataset, params.evaluate.interpolate[cfg.dataset].order) \
            if cfg.dataset in params.evaluate.interpolate else 0.0
        run_all([run], with_budget(run, anchor["train_seconds"] - ngram_s), prepared=True)
        figures = json.loads((ROOT / OUT / "metrics" / f"{run}.json").read_text())
        train = json.loads((ROOT / OUT / "models" / cfg.dataset / cfg.variant / "metrics.json").read_text())
        if ANCHORED[run] == "nanogpt":
            ours, theirs, what = figures["val"]["window_loss"], anchor["val_loss"], "val loss, 64-char windows"
        else:
            ours, theirs, what = figures["test"]["perplexity"], anchor["test_perplexity"], "test perplexity"
        mixed = figures.get("interpolated")
        seconds = train["train_seconds"] + (mixed["ngram_fit_seconds"] if mixed else 0.0)
        results[run] = {"anchor": anchor, "seqlab": {"value": ours, "train_seconds": train["train_seconds"],
                        "steps": train["steps"], "tokens_per_s": train["tokens_per_s"],
                        "val": figures["val"], "test": figures.get("test")},
                        "figure": what, "ratio": round(ours / theirs, 4), "load": os.getloadavg()[0],
                        "capability_caps": {k: os.environ.get(k) for k in AVX2}}
        print(f"{run}: {what}: seqlab {ours:.4f} in {train['train_seconds']:.0f} s of training "
              f"({train['steps']} steps) vs {ANCHORED[run]} {theirs:.4f} in {anchor['train_seconds']:.0f} s: "
              f"ratio {ours / theirs:.3f}", flush=True)
        if mixed:
            value = mixed["test"]["perplexity"]
            results[run]["with_ngram"] = {"value": value, "ratio": round(value / theirs, 4), "seconds": seconds,
                                          "ngram_order": mixed["ngram_order"], "model_weight": mixed["model_weight"],
                                          "ngram_fit_seconds": mixed["ngram_fit_seconds"],
                                          "ngram_fit_seconds_reserved": round(ngram_s, 3)}
            print(f"{run}: {what}, the network mixed with a Kneser-Ney {mixed['ngram_order']}-gram (weight "
                  f"{mixed['model_weight']:.3f}, fitted on val): seqlab {value:.4f} in {seconds:.0f} s of training "
                  f"(network {train['train_seconds']:.0f} s + n-gram {mixed['ngram_fit_seconds']:.1f} s) vs "
                  f"{theirs:.4f} in {anchor['train_seconds']:.0f} s: ratio {value / theirs:.3f}", flush=True)
        results_path.write_text(json.dumps(results, indent=1))


def ngram_fit_seconds(dataset: str, order: int) -> float:
    """How long fitting the evaluate stage's n-gram on ``dataset``'s training split takes here (the same code)."""
    import numpy as np

    from pipeline.evaluation.ngram import KneserNeyLM
    from pipeline.vocab import Vocabulary

    tokens = ROOT / OUT / "tokens" / dataset
    train = np.load(tokens / "train.npy")
    start = time.perf_counter()
    KneserNeyLM(order, len(Vocabulary.load(tokens / "vocab.json"))).fit(train)
    seconds = time.perf_counter() - start
    print(f"{dataset}: a Kneser-Ney {order}-gram fits in {seconds:.1f} s: the network's budget is that much shorter",
          flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--anchors", nargs="*", choices=list(ANCHORED),
                        help="run these anchored comparisons (default with no names: both)")
    parser.add_argument("--nanogpt", type=Path, help="a clone of karpathy/nanoGPT (outside this repository)")
    parser.add_argument("--examples", type=Path, help="a clone of pytorch/examples (outside this repository)")
    parser.add_argument("--avx2", action="store_true", help="cap oneDNN, MKL and ATen at AVX2 for both sides")
    parser.add_argument("--reuse-anchor", action="store_true",
                        help="take an anchor's figures from bench/out/quality/anchors.json when it has them")
    args = parser.parse_args()
    if args.avx2:
        os.environ.update(AVX2)
    if args.anchors is not None:
        which = args.anchors or list(ANCHORED)
        needs = {ANCHORED[r] for r in which}
        if not args.reuse_anchor and (("nanogpt" in needs and not args.nanogpt)
                                      or ("word_language_model" in needs and not args.examples)):
            parser.error("--anchors needs --nanogpt and/or --examples: clones of the anchors' repositories")
        run_anchors(args.nanogpt and args.nanogpt.resolve(), args.examples and args.examples.resolve(), which,
                    args.reuse_anchor)
        return 0
    if not args.report_only:
        run_all(args.runs)
    report(list(RUNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
