"""The vocabulary shared by text and music: ordered tokens with three specials.

Ids are positions in :attr:`Vocabulary.tokens`.  The specials always come first:
``<pad>`` = 0 (ignored by losses), ``<unk>`` = 1 (anything not in the vocabulary),
``<eos>`` = 2 (closes every record: a line, a name, a sentence, a piece).  The
vocabulary is built on the training split by the tokenize / encode_midi stages,
saved as ``vocab.json`` and read back downstream; it is never rebuilt at sampling
time and never pickled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import files
from pipeline.errors import UserError

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIALS = (PAD, UNK, EOS)
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2
FORMAT_VERSION = 1


class VocabularyError(UserError, ValueError):
    """A vocabulary that cannot be built or read; the message says which and why."""


class Vocabulary:
    """An ordered, immutable token list with a reverse index."""

    def __init__(self, tokens: Sequence[str], meta: dict[str, Any] | None = None) -> None:
        tokens = list(tokens)
        if tuple(tokens[:3]) != SPECIALS:
            raise VocabularyError(f"a vocabulary starts with {', '.join(SPECIALS)}; got {tokens[:3]}")
        index = {tok: i for i, tok in enumerate(tokens)}
        if len(index) != len(tokens):
            dupes = [t for t, n in Counter(tokens).items() if n > 1]
            raise VocabularyError(f"duplicate tokens in vocabulary: {dupes[:5]}")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = index
        self.meta: dict[str, Any] = dict(meta or {})

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        counts: Counter[str] | dict[str, int],
        min_freq: int = 1,
        max_size: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Vocabulary:
        """Keep tokens seen at least ``min_freq`` times, most frequent first (ties by token).

        ``max_size`` counts the three specials, so it must be at least 3.
        """
        if max_size is not None and max_size < len(SPECIALS):
            raise VocabularyError(
                f"max_size={max_size} leaves no room for the {len(SPECIALS)} specials {', '.join(SPECIALS)}"
                f" (use max_size >= {len(SPECIALS)} or null)"
            )
        kept = [(tok, n) for tok, n in counts.items() if n >= min_freq and tok not in SPECIALS]
        kept.sort(key=lambda item: (-item[1], item[0]))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *(tok for tok, _ in kept)], meta)

    # ------------------------------------------------------------------ use

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, meta={self.meta})"

    def id(self, token: str) -> int:
        return self.index.get(token, UNK_ID)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token strings -> ids (unknown tokens become ``<unk>``), as an int64 array."""
        get = self.index.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        tokens = self.tokens
        return [tokens[int(i)] for i in ids]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "specials": list(SPECIALS), "tokens": list(self.tokens), "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "vocabulary") -> Vocabulary:
        try:
            version, tokens = data["format_version"], data["tokens"]
        except (KeyError, TypeError) as e:
            raise VocabularyError(f"{where}: not a seqlab vocabulary (missing {e}); rerun the tokenize stage") from e
        if version != FORMAT_VERSION:
            raise VocabularyError(f"{where}: format_version {version} is not supported (expected {FORMAT_VERSION})")
        return cls(tokens, data.get("meta"))

    def save(self, path: str | Path) -> None:
        files.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            data = files.read_json(path)
        except FileNotFoundError as e:
            raise VocabularyError(f"{path}: vocabulary not found; run the tokenize/encode_midi stage first") from e
        except ValueError as e:
            raise VocabularyError(f"{path}: not valid JSON ({e})") from e
        return cls.from_dict(data, str(path))
