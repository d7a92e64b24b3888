"""The report stage's one call: every file of the report folder from what train, evaluate and baseline wrote.

:func:`write_report` writes ``summary.md`` (the comparison table of :mod:`pipeline.evaluation.report` and, for
MIDI datasets, the music table of :mod:`pipeline.evaluation.music_report`), ``summary.csv``, ``metrics.json`` (the
figures users compare, :func:`pipeline.evaluation.compare.summary_metrics`) and four plots, and returns a
:class:`Report`: the table, the files worth keeping with a tracking run, and each dataset's champion candidate,
which :func:`register_champions` registers in the model registry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from pipeline import files
from pipeline.config import NgramConfig, TrainRunConfig
from pipeline.evaluation import plots
from pipeline.evaluation.compare import SUMMARY_FILE, summary_metrics
from pipeline.evaluation.music_report import collect_music, music_markdown
from pipeline.evaluation.report import champion_candidates, collect, to_markdown, variant_folder
from pipeline.run_folder import RunFolder
from pipeline.tracking.registry import register_champion


@dataclasses.dataclass(frozen=True)
class Champion:
    """A dataset's causal trained variant with the lowest validation perplexity, and its run folder."""

    variant: str
    val_perplexity: float
    folder: RunFolder


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: ``files`` are the summary, its CSV and the plots (``metrics.json`` is for DVC)."""

    table: pd.DataFrame
    summary: Path
    files: list[Path]
    champions: dict[str, Champion]

    @property
    def summary_line(self) -> str:
        return f"{len(self.table)} rows over {self.table['dataset'].nunique()} datasets -> {self.summary}"


def write_report(runs: dict[str, TrainRunConfig], baselines: dict[str, NgramConfig], models: Path, metrics: Path,
                 out: Path) -> Report:
    """Every trained variant (``models/``, ``metrics/``) against its dataset's n-gram baseline, written into ``out``;
    nothing is written when an input is missing (one line naming it)."""
    table = collect(runs, baselines, models, metrics)
    out_dir = files.ensure_writable_dir(out, "report folder")
    music = collect_music(runs, baselines, metrics)  # samples against real music, per MIDI dataset
    summary, csv = out_dir / "summary.md", out_dir / "summary.csv"
    files.write_text(summary, to_markdown(table) + music_markdown(music) + "\n")
    files.write_json(out_dir / SUMMARY_FILE, summary_metrics(table, music))  # the DVC metrics users compare
    with files.atomic_path(csv, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    folders: dict[str, list[tuple[str, RunFolder]]] = {}
    for run in runs.values():
        folders.setdefault(run.dataset, []).append((run.variant, variant_folder(models, run)))
    pictures = [
        plots.plot_perplexity(table, out_dir / "perplexity.png"),
        plots.plot_series({d: [(v, f.epochs) for v, f in fs] for d, fs in folders.items()}, out_dir / "val_curves.png",
                          x="epoch", y="val_loss", ylabel="validation loss (nats/token)"),
        plots.plot_series({d: [(v, f.grad_norms) for v, f in fs] for d, fs in folders.items()},
                          out_dir / "grad_norms.png", x="step", y="grad_norm_mean",
                          ylabel="gradient norm before clipping", logy=True),
        plots.plot_music(music, out_dir / "music.png"),
    ]
    champions = {dataset: Champion(best["variant"], best["val_perplexity"], dict(folders[dataset])[best["variant"]])
                 for dataset, best in champion_candidates(table).items()}
    return Report(table, summary, [summary, csv, *pictures], champions)


def register_champions(champions: dict[str, Champion]) -> dict[str, str]:
    """Register each champion as ``seqlab-<dataset>`` (alias ``champion``) where it beats the current one on
    validation perplexity; per model name, what happened.  A champion trained untracked cannot be registered."""
    outcomes = {}
    for dataset, champion in champions.items():
        name, info = f"seqlab-{dataset}", champion.folder.read_run()
        if info is None:
            outcomes[name] = f"not registered: {champion.folder.run_file} is missing (trained untracked)"
            continue
        outcomes[name] = register_champion(name, info["run_id"], champion.val_perplexity,
                                           tracking_uri=info.get("tracking_uri"))
    return outcomes
