"""DVC stage ``styles``: one-to-many, music generation conditioned on a style id.

Reads the MIDI token datasets ``<tokens>/<name>/{vocab.json,train.npy,val.npy}`` named by
``curriculum.styles.datasets`` (style id = position in that list); writes ``history.csv``, ``metrics.json``,
``styles.png`` (a sample per style) and ``samples/`` (MIDI + piano roll per sample) to ``--out``; one MLflow
run in experiment ``styles``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline import files
from pipeline.config import Params
from pipeline.curriculum.outputs import ExperimentRuns, prepare
from pipeline.curriculum.styles import render_samples, run_styles, write_styles
from pipeline.vocab import Vocabulary
from stages._common import option, stage_main


def run(params: Params, tokens: str, out: str) -> int:
    cur, cfg = params.curriculum, params.curriculum.styles
    device = prepare(cur.device, cur.threads)
    folders = {name: Path(tokens) / name for name in cfg.datasets}
    vocabs = {name: Vocabulary.load(folder / "vocab.json") for name, folder in folders.items()}
    datasets = {name: (vocab, {s: files.read_tokens(folders[name] / f"{s}.npy", len(vocab)) for s in ("train", "val")})
                for name, vocab in vocabs.items()}
    data_files = [folder / f for folder in folders.values() for f in ("vocab.json", "train.npy", "val.npy")]
    with ExperimentRuns(cur.tracking, "styles", data_files=data_files, device=device) as runs:
        result = run_styles(cfg, datasets, runs, device)
        with files.atomic_dir(Path(out) / "samples") as tmp:
            samples = render_samples(result, tmp)
        runs.log_artifacts(write_styles(Path(out), result))
        runs.log_artifacts([Path(out) / "samples" / p.name for p in samples], "samples")
    m = result.metrics
    print(f"styles: val loss {m['loss']:.3f} with the right style, {m['loss_wrong_style']:.3f} with a wrong one; "
          + ", ".join(f"{n} samples {m[f'sample_polyphony_{n}']:.2f} notes per onset" for n in cfg.datasets))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "styles", run,
                      option("--tokens", help="data/tokens (holds every dataset of curriculum.styles)"),
                      option("--out", help="output folder, curriculum/styles"), requires=("curriculum",))


if __name__ == "__main__":
    sys.exit(main())
