"""Text tokenizers (pure Python/NumPy) and the dataset builders the tokenize stage calls.

:func:`tokenize_splits` builds the vocabulary on the training split only, encodes
every split into a flat id stream (each record closed by ``<eos>``) and reports
the statistics the stage writes as a DVC metric, all in memory: the simple reference.
The stage streams instead (:mod:`pipeline.tokenization.stream`): the same files, byte for
byte, with memory that does not grow with the corpus.  :func:`detokenize` turns ids back
into text using only what ``vocab.json`` records (its ``meta``); :func:`samples_text` does so for sampled
sequences (music as its tokens, space-separated).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from pipeline.config import TokenizeConfig
from pipeline.tokenization import char, word
from pipeline.vocab import EOS_ID, PAD_ID, UNK_ID, Vocabulary


@dataclasses.dataclass
class TokenizedDataset:
    vocab: Vocabulary
    ids: dict[str, np.ndarray]  # split -> (N,) int64, every record closed by <eos>
    stats: dict


def tokenize_splits(records: dict[str, list[str]], cfg: TokenizeConfig, name: str) -> TokenizedDataset:
    if cfg.lowercase:
        records = {split: [r.lower() for r in recs] for split, recs in records.items()}
    meta = {"kind": "text", "dataset": name, "level": cfg.level, "lowercase": cfg.lowercase}
    if cfg.level == "char":
        counts = char.count(records["train"])
        vocab = Vocabulary.build(counts, cfg.min_freq, cfg.max_size, meta)
        ids = {split: char.encode(recs, vocab) for split, recs in records.items()}
    else:
        meta["word_split"] = cfg.word_split
        split_fn = word.splitter(cfg.word_split)
        counts = word.count(records["train"], split_fn)
        vocab = Vocabulary.build(counts, cfg.min_freq, cfg.max_size, meta)
        ids = {split: word.encode(recs, vocab, split_fn) for split, recs in records.items()}
    return TokenizedDataset(vocab, ids, _stats(vocab, records, ids))


def _stats(vocab: Vocabulary, records: dict[str, list[str]], ids: dict[str, np.ndarray]) -> dict:
    return dataset_stats(len(vocab), {split: len(recs) for split, recs in records.items()},
                         {split: int(arr.size) for split, arr in ids.items()},
                         {split: int(np.count_nonzero(arr == UNK_ID)) for split, arr in ids.items()})


def dataset_stats(vocab_size: int, records: dict[str, int], tokens: dict[str, int], unk: dict[str, int]) -> dict:
    """``stats.json``: per split its records, tokens and ``<unk>`` tokens, and the training coverage."""
    stats: dict = {"vocab_size": vocab_size}
    for split, n in tokens.items():
        stats[split] = {
            "records": records[split],
            "tokens": n,
            "unk_tokens": unk[split],
            "unk_rate": round(unk[split] / n, 6) if n else 0.0,  # the share of <unk> tokens, as the MIDI stats name it
        }
    stats["train_coverage"] = round(1.0 - stats["train"]["unk_rate"], 6)
    return stats


def detokenize(ids: Iterable[int], vocab: Vocabulary, eos: str = "\n") -> str:
    """Ids -> text: characters joined directly, words with spaces; ``<eos>`` ends a record (``eos``)."""
    sep = "" if vocab.meta.get("level") == "char" else " "
    out, current = [], []
    for i in ids:
        i = int(i)
        if i == EOS_ID:
            out.append(sep.join(current) + eos)
            current = []
        elif i != PAD_ID:
            current.append(vocab.tokens[i])
    if current:
        out.append(sep.join(current))
    return "".join(out)


def samples_text(vocab: Vocabulary, sequences: Iterable[Iterable[int]]) -> str:
    """Sampled id sequences as one text, a blank line between them (each read as one record)."""
    texts = [detokenize([*seq, EOS_ID], vocab).rstrip("\n") for seq in sequences]
    return "\n\n".join(texts) + "\n"
