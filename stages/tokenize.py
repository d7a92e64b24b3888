"""DVC stage ``tokenize``: one text dataset -> ``vocab.json``, ``{train,val,test}.npy`` and ``stats.json``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stages._common import run_main


def run(params_path: str, name: str, raw: str, out: str) -> int:
    from pipeline import io
    from pipeline.config import ConfigError, load_params
    from pipeline.data.text import load_split_records
    from pipeline.tokenization import tokenize_splits

    params = load_params(params_path, required=("tokenize",))
    if name not in params.tokenize:
        raise ConfigError(f"{params_path}: tokenize: no dataset {name!r} (valid: {', '.join(params.tokenize)})")
    cfg = params.tokenize[name]
    records = load_split_records(Path(raw), cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe)
    dataset = tokenize_splits(records, cfg, name)
    out_dir = Path(out)
    # Write every output to a temporary folder first: a failure leaves no half-written dataset.
    with io.atomic_dir(out_dir) as tmp:
        dataset.vocab.save(tmp / "vocab.json")
        for split, ids in dataset.ids.items():
            io.write_tokens(tmp / f"{split}.npy", ids, len(dataset.vocab))
        io.write_json(tmp / "stats.json", dataset.stats)
    s = dataset.stats
    print(
        f"tokenize: {name}: vocab {s['vocab_size']}, tokens train/val/test "
        f"{s['train']['tokens']}/{s['val']['tokens']}/{s['test']['tokens']}, val OOV {s['val']['oov_rate']:.2%}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.tokenize", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--name", required=True, help="dataset name: a key of the tokenize section")
    parser.add_argument("--raw", required=True, help="the corpus folder, data/raw/<corpus>")
    parser.add_argument("--out", required=True, help="output folder, data/tokens/<name>")
    args = parser.parse_args(argv)
    return run_main(lambda: run(args.params, args.name, args.raw, args.out))


if __name__ == "__main__":
    sys.exit(main())
