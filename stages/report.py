"""DVC stage ``report``: every variant against its n-gram baseline -> ``reports/summary.{md,csv}`` and plots.

Reads ``models/`` and ``metrics/`` (what train, evaluate and baseline wrote), writes the table (and, for MIDI
datasets, a music table: samples against real pieces) and four pictures (test perplexity per variant, validation
curves, gradient norms over training, music distances), logs them to an
MLflow run ``report`` in the experiment ``seqlab-report``, and registers each dataset's best causal variant
as ``seqlab-<dataset>`` with alias ``champion`` when it beats the current champion on validation perplexity.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stages._common import option, stage_main


def run(params_path: str, models: str, metrics: str, out: str) -> int:
    from pipeline import files
    from pipeline.config import load_params
    from pipeline.evaluation import plots
    from pipeline.evaluation.music_report import collect_music, music_markdown
    from pipeline.evaluation.report import champion_candidates, collect, to_markdown

    params = load_params(params_path, required=("train", "evaluate"))
    runs, cfg = params.train.runs, params.evaluate
    table = collect(runs, cfg.baselines, Path(models), Path(metrics))
    out_dir = files.ensure_writable_dir(out, "--out")
    music = collect_music(runs, cfg.baselines, Path(metrics))  # samples against real music, per MIDI dataset
    files.write_text(out_dir / "summary.md", to_markdown(table) + music_markdown(music) + "\n")
    with files.atomic_path(out_dir / "summary.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    pictures = [
        plots.plot_perplexity(table, out_dir / "perplexity.png"),
        plots.plot_series(runs, Path(models), out_dir / "val_curves.png", file="epochs.csv", x="epoch",
                          y="val_loss", ylabel="validation loss (nats/token)"),
        plots.plot_series(runs, Path(models), out_dir / "grad_norms.png", file="grad_norms.csv", x="step",
                          y="grad_norm_mean", ylabel="gradient norm before clipping", logy=True),
        plots.plot_music(music, out_dir / "music.png"),
    ]
    champions = champion_candidates(table)
    if params.train.tracking == "mlflow":
        _track(out_dir, pictures, champions, Path(models), register=cfg.register_champion)
    print(f"report: {len(table)} rows over {table['dataset'].nunique()} datasets -> {out_dir / 'summary.md'}")
    return 0


def _track(out_dir: Path, pictures: list[Path], champions: dict, models: Path, register: bool) -> None:
    from pipeline import files
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.lifecycle import tracked_run
    from pipeline.tracking.registry import register_champion

    with tracked_run(open_tracker("mlflow", "seqlab-report", "report")) as tracker:
        for path in [out_dir / "summary.md", out_dir / "summary.csv", *pictures]:
            tracker.log_artifact(path)
    if not register:
        return
    for dataset, best in champions.items():
        info = files.read_json(models / dataset / best["variant"] / "mlflow_run.json")
        outcome = register_champion(f"seqlab-{dataset}", info["run_id"], best["val_perplexity"],
                                    tracking_uri=info.get("tracking_uri"))
        print(f"report: seqlab-{dataset}: {outcome}")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "report", run, option("--models", default="models"),
                      option("--metrics", default="metrics"), option("--out", default="reports"))


if __name__ == "__main__":
    sys.exit(main())
