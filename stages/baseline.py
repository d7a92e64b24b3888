"""DVC stage ``baseline``: an interpolated Kneser-Ney n-gram model for one dataset, scored like the RNNs.

Fits on ``data/tokens/<dataset>/train.npy`` (its first ``max_train_tokens``, recorded as ``train_tokens``, when
the dataset's baseline sets a cap), scores val and test (every token, ``<eos>`` included) and
writes ``metrics/<dataset>/ngram.json``; with ``--samples``, samples the n-gram like the RNNs (``evaluate.samples``)
into ``samples/<dataset>/ngram/`` and, for music, judges the samples against the held-out pieces (``music``);
logs an MLflow run ``ngram`` in the dataset's experiment, so every comparison has the row a user would pick
instead of a neural model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.tracking.companion import stage_companion
from stages._common import option, stage_main


def run(params_path: str, name: str, data: str, metrics: str, samples: str | None = None) -> int:
    from pipeline import files
    from pipeline.config import ConfigError, load_params
    from pipeline.evaluation.judge import draw_ngram_and_judge, music_line
    from pipeline.evaluation.music import flat_metrics
    from pipeline.evaluation.ngram import KneserNeyLM
    from pipeline.tracking.factory import open_tracker
    from pipeline.tracking.lifecycle import tracked_run
    from pipeline.vocab import Vocabulary

    params = load_params(params_path, required=("evaluate",))
    if name not in params.evaluate.baselines:
        valid = ", ".join(params.evaluate.baselines) or "none"
        raise ConfigError(f"{params_path}: evaluate.baselines: no dataset {name!r} (valid: {valid})")
    ngram = params.evaluate.baselines[name]
    order = ngram.order
    data_dir = Path(data)
    files.ensure_writable_dir(Path(metrics).parent, "--metrics")
    if samples:
        files.ensure_writable_dir(Path(samples).parent, "--samples")
    vocab = Vocabulary.load(data_dir / "vocab.json")
    splits = {s: files.read_tokens(data_dir / f"{s}.npy") for s in ("train", "val", "test")}
    train = splits["train"][: ngram.max_train_tokens]  # a view of the memory map: None keeps every token
    start = time.perf_counter()
    lm = KneserNeyLM(order, len(vocab)).fit(train)
    figures: dict = {"order": order, "ngrams": lm.num_ngrams(order), "fit_seconds": round(time.perf_counter() - start, 3)}
    if ngram.max_train_tokens is not None:  # recorded only when capped, so an uncapped file keeps its keys
        figures["train_tokens"] = len(train)
    char_level = vocab.meta.get("level") == "char"
    for split in ("val", "test"):
        if splits[split].size:
            figures[split] = _figures(lm, splits[split], char_level)
    if samples:  # drawn like the RNNs' samples; for music, judged against the held-out pieces
        with files.atomic_dir(samples) as tmp:
            figures.update(draw_ngram_and_judge(lm, vocab, params.evaluate, tmp, splits)[1])
    files.write_json(metrics, figures)
    tracking = params.sections["train"].tracking if "train" in params.sections else "none"
    with tracked_run(open_tracker(tracking, name, "ngram",
                                  tags={"dataset": name, "variant": "ngram", "cell": "kneser-ney"})) as tracker:
        tracker.log_params({"model": "interpolated-kneser-ney", "order": order, "dataset": name})
        tracker.log_metrics({f"{s}_{k}": v for s in ("val", "test") if s in figures for k, v in figures[s].items()},
                            step=0)
        tracker.log_metrics(flat_metrics(figures.get("music", {})), step=0)
    test = figures.get("test", figures.get("val", {}))
    print(f"baseline: {name}: Kneser-Ney {order}-gram, test perplexity {test.get('perplexity', float('nan')):.3f}"
          + music_line(figures))
    return 0


def _figures(lm, ids, char_level: bool) -> dict:
    """The n-gram's figures for one split, computed and reported exactly as the RNNs' are."""
    from pipeline.figures import reported_figures, summarize

    nll, n = lm.nll(ids)
    return reported_figures(summarize([nll], [n], ("forward",)), char_level)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(
        argv, __doc__, "baseline", run,
        option("--name", help="a dataset: a key of evaluate.baselines"),
        option("--data", help="data/tokens/<dataset>"),
        option("--metrics", help="metrics/<dataset>/ngram.json"),
        option("--samples", default=None, help="samples/<dataset>/ngram: also sample the n-gram (evaluate.samples)"),
        tracking=lambda a: stage_companion(a["params_path"]))


if __name__ == "__main__":
    sys.exit(main())
