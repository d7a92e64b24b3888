"""DVC stage ``download``: materialise every enabled corpus of params.yaml into ``data/raw/<name>/``.

Run by DVC (``DVC_STAGE`` set), it first checks that every enabled ``path`` source is one of its deps in
dvc.yaml, so that editing the source re-runs it (see :mod:`pipeline.data.sources`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import Params
from pipeline.data.download import materialise, prune
from pipeline.data.sources import check_tracked
from pipeline.midi.io import export_music21_corpus
from stages._common import option, stage_main


def _exporters() -> dict:
    """Source types handled outside pipeline.data (music21 stays confined to pipeline.midi.io)."""
    return {"music21": export_music21_corpus}


def run(params: Params, out: str, only: Sequence[str] = ()) -> int:
    if os.environ.get("DVC_STAGE") and Path("dvc.yaml").is_file():  # run by DVC: it must watch every path source
        check_tracked(params.corpora, Path("dvc.yaml"), os.environ["DVC_STAGE"])
    enabled = {name: c for name, c in params.corpora.items() if c.enabled and (not only or name in only)}
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for name in prune(root, keep=set(enabled) if not only else set(params.corpora)):
        print(f"download: removed {name} (no longer enabled)")
    for name, corpus in enabled.items():
        report = materialise(name, corpus, root, exporters=_exporters())
        state = "up to date" if report.skipped else "materialised"
        print(f"download: {name}: {state}, {report.files} files, {report.bytes / 1e6:.2f} MB")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return stage_main(argv, __doc__, "download", run,
                      option("--out", default="data/raw", help="output folder (default: data/raw)"),
                      option("--only", nargs="*", default=(), help="materialise only these corpora"),
                      requires=("corpora",))


if __name__ == "__main__":
    sys.exit(main())
