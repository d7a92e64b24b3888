"""DVC stage ``evaluate``: one trained variant -> held-out perplexity, samples, and the same in its MLflow run.

Reads ``models/<dataset>/<variant>/model.pt`` (the best checkpoint) and ``data/tokens/<dataset>/``;
writes ``metrics/<dataset>/<variant>.json`` (val and test figures, per direction for a bidirectional model)
and ``samples/<dataset>/<variant>/`` (text, or MIDI plus piano rolls), and logs both into the training
run recorded in ``mlflow_run.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stages._common import run_main


def run(params_path: str, name: str, data: str, model_dir: str, metrics: str, samples: str) -> int:
    from pipeline import io
    from pipeline.config import load_params
    from pipeline.evaluation.evaluate import draw_samples, score_splits
    from pipeline.models.checkpoint import load_checkpoint, model_from_checkpoint
    from pipeline.runtime import resolve_device, set_seed
    from pipeline.tracking.factory import open_tracker
    from pipeline.vocab import Vocabulary

    params = load_params(params_path, required=("train", "evaluate"))
    cfg, settings = params.evaluate, params.train.settings_for(name)
    data_dir, model_dir = Path(data), Path(model_dir)
    vocab = Vocabulary.load(data_dir / "vocab.json")
    device = resolve_device(cfg.device)
    model = model_from_checkpoint(load_checkpoint(model_dir / "model.pt", map_location=device), device)
    splits = {split: io.read_tokens(data_dir / f"{split}.npy") for split in ("val", "test")}
    figures = score_splits(model, splits, cfg, mode=settings.batching, char_level=vocab.meta.get("level") == "char",
                           device=device)
    set_seed(cfg.seed)
    with io.atomic_dir(samples) as tmp:
        files = draw_samples(model, vocab, cfg.samples, tmp, seed=cfg.seed, device=device)
    io.write_json(metrics, figures)
    _log_to_run(open_tracker, settings.tracking, model_dir, figures, Path(samples), [f.name for f in files])
    test = figures.get("test", figures.get("val", {}))
    print(f"evaluate: {name}: test perplexity {test.get('perplexity', float('nan')):.3f}"
          + (f", {test['bpc']:.3f} bpc" if "bpc" in test else "") + f", {len(files)} sample files in {samples}")
    return 0


def _log_to_run(open_tracker, kind: str, model_dir: Path, figures: dict, samples: Path, files: list[str]) -> None:
    from pipeline import io

    info_path = model_dir / "mlflow_run.json"
    if kind == "none" or not info_path.exists():
        return
    info = io.read_json(info_path)
    tracker = open_tracker(kind, info["experiment"], info["run_name"], run_id=info["run_id"],
                           tracking_uri=info.get("tracking_uri"))
    step = int(io.read_json(model_dir / "metrics.json").get("steps", 0))
    tracker.log_metrics({f"test_{k}": v for k, v in figures.get("test", {}).items()}, step=step)
    for name in files:
        tracker.log_artifact(samples / name, "samples")
    tracker.finish("FINISHED")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--run", required=True, help="a key of train.runs, e.g. austen-char-lstm")
    parser.add_argument("--data", required=True, help="data/tokens/<dataset>")
    parser.add_argument("--model", required=True, help="models/<dataset>/<variant>")
    parser.add_argument("--metrics", required=True, help="metrics/<dataset>/<variant>.json")
    parser.add_argument("--samples", required=True, help="samples/<dataset>/<variant>")
    args = parser.parse_args(argv)
    return run_main(lambda: run(args.params, args.run, args.data, args.model, args.metrics, args.samples))


if __name__ == "__main__":
    sys.exit(main())
