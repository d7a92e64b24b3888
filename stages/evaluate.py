"""DVC stage ``evaluate``: one trained variant -> held-out perplexity, samples, and the same in its MLflow run.

Reads ``models/<dataset>/<variant>/model.pt`` (the best checkpoint) and ``data/tokens/<dataset>/``;
writes ``metrics/<dataset>/<variant>.json`` (val and test figures, per direction for a bidirectional model;
for music, the samples judged against the held-out pieces under ``music``; with ``evaluate.interpolate`` for
the dataset, the model mixed with an n-gram fitted on ``train.npy`` under ``interpolated``) and ``samples/<dataset>/<variant>/``
(text, or MIDI plus piano rolls), and logs both into the training run recorded in ``mlflow_run.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.tracking.companion import stage_companion
from stages._common import option, stage_main


def run(params_path: str, name: str, data: str, model_dir: str, metrics: str, samples: str) -> int:
    from pipeline import files
    from pipeline.config import load_params
    from pipeline.evaluation.evaluate import draw_and_judge, generator_of, score_splits
    from pipeline.evaluation.judge import music_line
    from pipeline.evaluation.mixture import interpolate_dataset, mixture_line
    from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
    from pipeline.runtime import resolve_device, set_seed
    from pipeline.vocab import Vocabulary

    params = load_params(params_path, required=("train", "evaluate"))
    cfg, settings = params.evaluate, params.train.settings_for(name)
    data_dir, model_dir = Path(data), Path(model_dir)
    vocab = Vocabulary.load(data_dir / "vocab.json")
    device = resolve_device(cfg.device)
    for flag, path in (("--metrics", Path(metrics).parent), ("--samples", Path(samples).parent)):
        files.ensure_writable_dir(path, flag)
    run_info = _training_run(settings.tracking, model_dir)  # checked before any work, as are the files above
    model = model_from_checkpoint(load_checkpoint(model_dir / "model.pt", map_location=device), device)
    splits = {split: files.read_tokens(data_dir / f"{split}.npy") for split in ("val", "test")}
    char_level = vocab.meta.get("level") == "char"
    mixed = interpolate_dataset(generator_of(model), cfg, params.train.runs[name].dataset, data_dir, splits,
                                where=params_path, vocab_size=len(vocab), mode=settings.batching,
                                batch_size=cfg.batch_size, bptt=cfg.bptt, device=device, char_level=char_level)
    figures = score_splits(model, splits, cfg, mode=settings.batching, char_level=char_level, device=device)
    if mixed is not None:  # the model mixed with an n-gram fitted on train (evaluate.interpolate)
        figures["interpolated"] = mixed
    set_seed(cfg.seed)
    with files.atomic_dir(samples) as tmp:
        drawn, music = draw_and_judge(model, vocab, cfg, tmp, splits, device=device)
    figures.update(music)  # music: the samples judged against the held-out pieces
    files.write_json(metrics, figures)
    if run_info is not None:
        _log_to_run(run_info, figures, Path(samples), [f.name for f in drawn])
    test = figures.get("test", figures.get("val", {}))
    print(f"evaluate: {name}: test perplexity {test.get('perplexity', float('nan')):.3f}"
          + (f", {test['bpc']:.3f} bpc" if "bpc" in test else "") + mixture_line(figures)
          + f", {len(drawn)} sample files in {samples}" + music_line(figures))
    return 0


def _training_run(kind: str, model_dir: Path) -> dict | None:
    """The training run to add the figures to (``mlflow_run.json`` plus the step from ``metrics.json``), or None
    when tracking is off or the model was trained untracked."""

    info_path = model_dir / "mlflow_run.json"
    if kind == "none" or not info_path.exists():
        return None
    info, figures = _training_file(info_path, "run_id"), _training_file(model_dir / "metrics.json", "steps")
    return {**info, "step": int(figures["steps"])}


def _training_file(path: Path, key: str) -> dict:
    """A JSON file the train stage wrote, with ``key`` in it; one line naming the file otherwise."""
    from pipeline import files
    from pipeline.errors import UserError

    try:
        content = files.read_json(path)
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}; the training outputs are incomplete: rerun the train stage "
                        f"(dvc repro)") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); rerun the train stage (dvc repro)") from None
    if not isinstance(content, dict) or key not in content:
        raise UserError(f"{path}: no {key!r} in it; rerun the train stage (dvc repro)")
    return content


def _log_to_run(info: dict, figures: dict, samples: Path, files: list[str]) -> None:
    """Add the test figures and samples to the training run; its status stays what training left."""
    from pipeline.evaluation.mixture import mixture_metrics
    from pipeline.evaluation.music import flat_metrics
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.lifecycle import tracked_run

    with tracked_run(open_tracker("mlflow", info["experiment"], info["run_name"], run_id=info["run_id"],
                                  tracking_uri=info.get("tracking_uri"), mode="append")) as tracker:
        tracker.log_metrics({f"test_{k}": v for k, v in figures.get("test", {}).items()}, step=info["step"])
        tracker.log_metrics(mixture_metrics(figures), step=info["step"])
        tracker.log_metrics(flat_metrics(figures.get("music", {})), step=info["step"])
        for name in files:
            tracker.log_artifact(samples / name, "samples")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(
        argv, __doc__, "evaluate", run,
        option("--run", dest="name", help="a key of train.runs, e.g. austen-char-lstm"),
        option("--data", help="data/tokens/<dataset>"),
        option("--model", dest="model_dir", help="models/<dataset>/<variant>"),
        option("--metrics", help="metrics/<dataset>/<variant>.json"),
        option("--samples", help="samples/<dataset>/<variant>"),
        tracking=lambda a: stage_companion(a["params_path"], run=a["name"], model_dir=a["model_dir"]))


if __name__ == "__main__":
    sys.exit(main())
