"""DVC stage ``tokenize``: one text dataset -> ``vocab.json``, ``{train,val,test}.npy`` and ``stats.json``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from stages._common import option, stage_main


def run(params_path: str, name: str, raw: str, out: str) -> int:
    from pipeline import files
    from pipeline.config import ConfigError, load_params
    from pipeline.data.text import load_split_records
    from pipeline.tokenization import tokenize_splits

    params = load_params(params_path, required=("tokenize",))
    if name not in params.tokenize:
        raise ConfigError(f"{params_path}: tokenize: no dataset {name!r} (valid: {', '.join(params.tokenize)})")
    cfg = params.tokenize[name]
    records = load_split_records(Path(raw), cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe)
    dataset = tokenize_splits(records, cfg, name)
    files.write_dataset(out, dataset.vocab, dataset.ids, dataset.stats)
    s = dataset.stats
    print(
        f"tokenize: {name}: vocab {s['vocab_size']}, tokens train/val/test "
        f"{s['train']['tokens']}/{s['val']['tokens']}/{s['test']['tokens']}, <unk> val {s['val']['unk_rate']:.2%}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "tokenize", run,
                      option("--name", help="dataset name: a key of the tokenize section"),
                      option("--raw", help="the corpus folder, data/raw/<corpus>"),
                      option("--out", help="output folder, data/tokens/<name>"))


if __name__ == "__main__":
    sys.exit(main())
