"""The tokenize stage's dataset writer: a corpus streamed in blocks of records, straight into the output files.

The files are byte for byte those :func:`pipeline.files.write_dataset` writes for
:func:`pipeline.tokenization.tokenize_splits` (tests/test_tokenize_stream.py), built without ever holding a
split.  ``blocks()`` starts a fresh pass over the corpus and yields, per block, its train, val and test records
(:func:`pipeline.data.text.iter_split_blocks`, after the pass that planned the splits).

Char level reads the corpus twice: pass 2 counts the training code points (``np.bincount`` over UTF-32 units)
and every split's length, so each array's size is known before it is written; pass 3 maps code points through
a code point -> id table.  Word level splits the text once: pass 2 numbers each distinct token in order of
first appearance (:class:`~pipeline.tokenization.word.FirstSeenIds`), appends these provisional ids to a
temporary file per split and counts the training ones; pass 3 maps the temporary files through a provisional
-> final id table once the vocabulary exists.  No Python code runs per character, nor per known token.

Memory: one block's copies, the count arrays and, at word level, one dict entry per distinct token of the whole
corpus (as large as the Counter the in-memory reference keeps for train); disk: 4 bytes per word token in the
temporary files, inside the output's temporary folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline import files
from pipeline.config import TokenizeConfig
from pipeline.tokenization import char, dataset_stats, word
from pipeline.vocab import SPECIALS, UNK_ID, Vocabulary

SPLITS = ("train", "val", "test")
#: A fresh pass over the corpus: per block, the records of each of :data:`SPLITS`.
Blocks = Callable[[], Iterable[Sequence[list[str]]]]
_READ_IDS = 1 << 20  # provisional ids read back per step in pass 3


def check_config(cfg: TokenizeConfig) -> None:
    """Fail on vocabulary limits that cannot work before the corpus is read, not after."""
    Vocabulary.build({}, cfg.min_freq, cfg.max_size)


def write_dataset(blocks: Blocks, records: dict[str, int], cfg: TokenizeConfig, name: str, out: str | Path) -> dict:
    """Tokenize the corpus of ``blocks`` (``records``: kept records per split) into folder ``out``, all or
    nothing; returns ``stats.json``'s content."""
    meta = {"kind": "text", "dataset": name, "level": cfg.level, "lowercase": cfg.lowercase}
    if cfg.level == "word":
        meta["word_split"] = cfg.word_split
    with files.atomic_dir(out) as tmp:
        level = _write_chars if cfg.level == "char" else _write_words
        vocab, tokens, unk = level(blocks, cfg, meta, tmp)
        stats = dataset_stats(len(vocab), records, dict(zip(SPLITS, tokens, strict=True)),
                              dict(zip(SPLITS, unk, strict=True)))
        vocab.save(tmp / "vocab.json")
        files.write_json(tmp / "stats.json", stats)
    return stats


def _write_chars(blocks: Blocks, cfg: TokenizeConfig, meta: dict, tmp: Path) -> tuple[Vocabulary, list[int], list[int]]:
    counts, tokens = np.zeros(char.CODE_POINTS, np.int64), [0] * len(SPLITS)
    for parts in blocks():
        for i, records in enumerate(parts):
            if records:
                text = char.block_text(records, cfg.lowercase)
                tokens[i] += len(text)
                if i == 0:
                    counts = _add_counts(counts, char.code_points(text))
    vocab = Vocabulary.build(char.counts_to_tokens(counts), cfg.min_freq, cfg.max_size, meta)
    table = char.id_table(vocab, files.smallest_uint_dtype(len(vocab) - 1))
    unk = [0] * len(SPLITS)
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(files.stream_tokens(tmp / f"{split}.npy", n, len(vocab)))
                   for split, n in zip(SPLITS, tokens, strict=True)]
        for parts in blocks():
            for i, records in enumerate(parts):
                if records:
                    ids = table[char.code_points(char.block_text(records, cfg.lowercase))]
                    writers[i].write(ids)
                    unk[i] += int(np.count_nonzero(ids == UNK_ID))
    return vocab, tokens, unk


def _write_words(blocks: Blocks, cfg: TokenizeConfig, meta: dict, tmp: Path) -> tuple[Vocabulary, list[int], list[int]]:
    split_fn, ids = word.splitter(cfg.word_split), word.FirstSeenIds()
    counts, tokens = np.zeros(0, np.int64), [0] * len(SPLITS)
    temp = [tmp / f".{split}.ids" for split in SPLITS]  # removed below; atomic_dir drops them on failure
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(open(path, "wb")) for path in temp]
        for parts in blocks():
            for i, records in enumerate(parts):
                if records:
                    found = word.block_tokens(records, split_fn, cfg.lowercase)
                    provisional = np.fromiter(map(ids.__getitem__, found), np.uint32, len(found))
                    outs[i].write(provisional.data)
                    tokens[i] += provisional.size
                    if i == 0:
                        counts = _add_counts(counts, provisional)
    vocab = Vocabulary.build(_word_counts(ids, counts, cfg), cfg.min_freq, cfg.max_size, meta)
    remap = np.full(len(ids), UNK_ID, files.smallest_uint_dtype(len(vocab) - 1))
    for token, final in vocab.index.items():  # the specials too: a literal "<unk>" in the text is the special
        if (provisional_id := ids.get(token)) is not None:
            remap[provisional_id] = final
    unk = [_remap_file(path, remap, tmp / f"{split}.npy", n, len(vocab)) for path, split, n in zip(temp, SPLITS, tokens, strict=True)]
    return vocab, tokens, unk


def _remap_file(path: Path, remap: np.ndarray, out: Path, n: int, vocab_size: int) -> int:
    """Map a temporary file of provisional ids into the token array ``out``; returns its ``<unk>`` count."""
    unk = 0
    with open(path, "rb") as f, files.stream_tokens(out, n, vocab_size) as writer:
        while (provisional := np.fromfile(f, np.uint32, _READ_IDS)).size:
            ids = remap[provisional]
            writer.write(ids)
            unk += int(np.count_nonzero(ids == UNK_ID))
    path.unlink()
    return unk


def _word_counts(ids: word.FirstSeenIds, counts: np.ndarray, cfg: TokenizeConfig) -> dict[str, int]:
    """The training counts of the tokens that can enter the vocabulary, for :meth:`Vocabulary.build`.

    With ``max_size``, tokens below the count of the last one that fits are left out first: the build sorts
    by (-count, token), so the result is the same, and a corpus with millions of distinct words (a source tree,
    WikiText-103's 267k) does not sort them all in Python.
    """
    counts = counts.copy()
    for special in SPECIALS:  # never vocabulary entries of their own (the build drops them too)
        if (i := ids.get(special)) is not None and i < counts.size:
            counts[i] = 0
    keep = counts >= cfg.min_freq
    room = None if cfg.max_size is None else cfg.max_size - len(SPECIALS)
    if room is not None and np.count_nonzero(keep) > room:
        keep &= counts >= (np.partition(counts[keep], -room)[-room] if room > 0 else np.inf)
    tokens = list(ids)  # provisional id -> token
    return {tokens[i]: int(counts[i]) for i in np.flatnonzero(keep)}


def _add_counts(total: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``total`` plus the occurrences of each id in ``ids``, grown when a larger id appears."""
    found = np.bincount(ids)
    if found.size > total.size:
        total = np.concatenate([total, np.zeros(found.size - total.size, total.dtype)])
    total[: found.size] += found
    return total
