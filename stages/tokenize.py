"""DVC stage ``tokenize``: one text dataset -> ``vocab.json``, ``{train,val,test}.npy`` and ``stats.json``.

The corpus is streamed (pipeline.data.text, pipeline.tokenization.stream): memory stays bounded whatever its size.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import ConfigError, Params
from pipeline.data.text import iter_split_blocks, plan_splits
from pipeline.tokenization import stream
from stages._common import option, stage_main


def run(params: Params, name: str, raw: str, out: str) -> int:
    if name not in params.tokenize:
        raise ConfigError(f"{params.path}: tokenize: no dataset {name!r} (valid: {', '.join(params.tokenize)})")
    cfg = params.tokenize[name]
    stream.check_config(cfg)
    plan = plan_splits(Path(raw), cfg.record, cfg.split, cfg.record_pattern, cfg.dedupe)
    s = stream.write_dataset(lambda: iter_split_blocks(plan, cfg.record, cfg.record_pattern), plan.records, cfg, name, out)
    print(
        f"tokenize: {name}: vocab {s['vocab_size']}, tokens train/val/test "
        f"{s['train']['tokens']}/{s['val']['tokens']}/{s['test']['tokens']}, <unk> val {s['val']['unk_rate']:.2%}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(argv, __doc__, "tokenize", run,
                      option("--name", help="dataset name: a key of the tokenize section"),
                      option("--raw", help="the corpus folder, data/raw/<corpus>"),
                      option("--out", help="output folder, data/tokens/<name>"), requires=("tokenize",))


if __name__ == "__main__":
    sys.exit(main())
