"""DVC stage ``encode_midi``: one MIDI corpus -> ``vocab.json``, ``{train,val,test}.npy``, ``stats.json``, ``skipped.json``."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline import files
from pipeline.config import ConfigError, Params
from pipeline.midi.corpus import MidiCorpusError, encode_corpus
from stages._common import option, stage_main


def run(params: Params, name: str, raw: str, out: str, workers: int) -> int:
    started = time.perf_counter()
    if name not in params.encode_midi:
        raise ConfigError(f"{params.path}: encode_midi: no dataset {name!r} (valid: {', '.join(params.encode_midi)})")
    try:
        data = encode_corpus(Path(raw), params.encode_midi[name], name, workers)
    except MidiCorpusError as e:
        if not e.skipped:
            raise
        # The full list is what the user needs to fix the corpus; the dataset itself is not written.
        listing = Path(out) / "skipped.json"
        files.write_json(listing, [{"file": s.file, "reason": s.reason} for s in e.skipped])
        raise MidiCorpusError(f"{e} (every skipped file and its reason: {listing})") from None
    skipped = [{"file": s.file, "reason": s.reason} for s in data.skipped]
    files.write_dataset(out, data.vocab, data.ids, data.stats, {"skipped.json": skipped})
    s = data.stats
    print(
        f"encode_midi: {name}: {s['files'] - s['skipped']}/{s['files']} files, vocab {s['vocab_size']}, "
        f"tokens train/val/test {s['train']['tokens']}/{s['val']['tokens']}/{s['test']['tokens']}, "
        f"<unk> val {s['val']['unk_rate']:.2%}, {time.perf_counter() - started:.1f}s"
    )
    for skipped in data.skipped:
        print(f"encode_midi: {name}: skipped {skipped.file}: {skipped.reason}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main(
        argv, __doc__, "encode_midi", run,
        option("--name", help="dataset name: a key of the encode_midi section"),
        option("--raw", help="the MIDI corpus folder, data/raw/<corpus>"),
        option("--out", help="output folder, data/tokens/<name>"),
        option("--workers", type=int, default=0, help="processes (0: every CPU); results do not depend on it"),
        requires=("corpora", "encode_midi"))


if __name__ == "__main__":
    sys.exit(main())
