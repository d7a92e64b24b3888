"""Sections ``corpora``, ``tokenize`` and ``encode_midi``: where corpora come from and how they become tokens."""

from __future__ import annotations

import dataclasses
import re
from typing import Literal
from urllib.parse import urlparse

# --------------------------------------------------------------------------- sections: data


@dataclasses.dataclass(frozen=True)
class UrlFile:
    """One https file: its URL, its pinned sha256, and optionally the name to store it under."""

    url: str
    sha256: str
    filename: str | None = None
    extract: bool = True  # unpack .zip/.tar.* archives into the corpus folder

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        loopback = parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")
        if parsed.scheme != "https" and not loopback:
            raise ValueError(f"url {self.url!r} must start with https:// (plain http only for a local test server)")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower()):
            raise ValueError(f"sha256 {self.sha256!r} must be 64 hex digits")
        if self.filename is not None and (self.filename in ("", ".", "..") or any(c in self.filename for c in "/\\\0")):
            raise ValueError(f"filename {self.filename!r} must be a plain file name, without folders or '..' (it is "
                             f"stored in the corpus folder data/raw/<corpus>/): e.g. 'corpus.txt'")


@dataclasses.dataclass(frozen=True)
class UrlSource:
    """Files fetched over https, each pinned by sha256; resumed and retried."""

    type: Literal["url"]
    files: tuple[UrlFile, ...]
    timeout_s: float = 30.0
    retries: int = 4


@dataclasses.dataclass(frozen=True)
class PathSource:
    """A local file or folder (relative paths are relative to the repository root)."""

    type: Literal["path"]
    path: str
    pattern: str = "*"  # glob applied when ``path`` is a folder


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """Files shipped inside an installed Python package (the offline default)."""

    type: Literal["package"]
    package: str
    files: tuple[str, ...]  # paths inside the package; globs (``corpus/oneills1850/*.abc``) allowed


@dataclasses.dataclass(frozen=True)
class Music21Source:
    """Works from music21's bundled corpus, exported to real ``.mid`` files with music21's MIDI writer.

    ``paths`` name works as music21's ``corpus.parse`` knows them (``bach/bwv66.6``);
    ``composer`` + ``limit`` take the first ``limit`` works of a composer in music21's sorted order.
    """

    type: Literal["music21"]
    composer: str | None = None
    paths: tuple[str, ...] = ()
    limit: int | None = None
    file_extensions: tuple[str, ...] = (".mxl", ".xml", ".musicxml", ".krn", ".abc")

    def __post_init__(self) -> None:
        if not self.composer and not self.paths:
            raise ValueError("set 'composer' or 'paths' (works in music21's corpus)")


Source = UrlSource | PathSource | PackageSource | Music21Source


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """One corpus the download stage materialises into ``data/raw/<name>/``."""

    kind: Literal["text", "midi"]
    source: Source
    enabled: bool = True
    description: str = ""


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How records are assigned to train/val/test.

    ``random``: each record goes to a split by a seeded shuffle; records keep their
    corpus order inside a split, so streams stay readable.  ``contiguous``: the first
    ``1 - val - test`` share of records is train, then val, then test (nanoGPT's
    tinyshakespeare split).  ``files``: the corpus already has one file per split
    (Penn Treebank); ``files`` maps split name to file name.
    """

    method: Literal["random", "contiguous", "files"] = "random"
    val: float = 0.05
    test: float = 0.05
    seed: int = 1337
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method == "files":
            if set(self.files) != {"train", "val", "test"}:
                raise ValueError("split.files must map exactly train, val and test to file names")
        elif not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ValueError(f"split.val ({self.val}) + split.test ({self.test}) must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TokenizeConfig:
    """One tokenized text dataset ``data/tokens/<name>/`` built from a raw corpus.

    The tokenize stage streams the corpus (enwik8, WikiText-103, a source tree of a gigabyte), so memory does
    not grow with its text, except where a setting asks for it: ``dedupe`` keeps a 16-byte hash of every
    distinct record (it is meant for name lists), ``record: regex`` reads each file whole (memory for the
    largest file), and word level keeps each distinct word of the corpus while it counts.

    ``max_size`` (the three specials included) keeps the most frequent tokens.  WikiText-103 has 267k distinct
    words; a word vocabulary of tens of thousands or more pairs with the adaptive softmax the models already
    have (a model's ``softmax: adaptive`` with its ``cutoffs``): ids are numbered by frequency here, so its
    head scores the frequent words and the long tail costs little.
    """

    corpus: str
    level: Literal["char", "word"]
    lowercase: bool = False
    min_freq: int = 1
    max_size: int | None = None  # includes the three specials
    record: Literal["line", "paragraph", "regex", "verbatim_line"] = "line"  # verbatim_line keeps blank lines
    record_pattern: str | None = None  # record: regex -> each match's first group (multiline) is a record
    dedupe: bool = False  # keep only the first occurrence of a repeated record (name lists)
    word_split: Literal["whitespace", "punctuation"] = "punctuation"
    split: SplitConfig = SplitConfig()

    def __post_init__(self) -> None:
        if self.min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {self.min_freq}")
        if (self.record == "regex") != (self.record_pattern is not None):
            raise ValueError("record_pattern is required with record: regex, and only then")
        if self.record_pattern is not None:
            try:
                compiled = re.compile(self.record_pattern, re.MULTILINE)
            except re.error as e:
                raise ValueError(f"record_pattern {self.record_pattern!r} is not a valid regex: {e}") from None
            if compiled.groups < 1:
                raise ValueError(f"record_pattern {self.record_pattern!r} needs one capturing group: (...)")



# --------------------------------------------------------------------------- sections: encode_midi


@dataclasses.dataclass(frozen=True)
class EncodeMidiConfig:
    """One MIDI token dataset ``data/tokens/<name>/`` built from a ``kind: midi`` corpus (see pipeline/midi).

    ``encoding: note`` writes one token per slice of sound (note, chord or rest + length);
    ``event`` writes note-on/note-off/time-shift(/velocity) events, lossless at the grid.
    ``max_steps`` is the longest duration or time shift one token carries (null: one 4/4 bar).
    ``transpose`` adds copies of every training piece shifted by these semitones.
    ``max_quarters``: a piece whose notes reach further is skipped as having absurd tick values.
    """

    corpus: str
    encoding: Literal["note", "event"] = "note"
    steps_per_quarter: int = 4
    max_steps: int | None = None
    chords: Literal["pitches", "pitch_classes"] = "pitches"  # note encoding only
    velocity_bins: int = 0  # event encoding only; 0: velocity not encoded
    voices: Literal["all", "top"] = "all"  # top: monophonic melody (highest note wins)
    keep_drums: bool = False  # drums (channel 10) are dropped unless true
    normalize_key: bool = False  # move every piece to C major / A minor (music21's key analysis)
    transpose: tuple[int, ...] = ()
    min_freq: int = 1
    max_size: int | None = None  # includes the three specials
    max_quarters: float = 4096.0
    max_skipped_share: float = 0.2  # the stage fails when a larger share of files is skipped
    split: SplitConfig = SplitConfig()

    def __post_init__(self) -> None:
        if not 1 <= self.steps_per_quarter <= 96:
            raise ValueError(f"steps_per_quarter must be in 1..96, got {self.steps_per_quarter}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if not 0 <= self.velocity_bins <= 127:
            raise ValueError(f"velocity_bins must be in 0..127, got {self.velocity_bins}")
        if self.velocity_bins and self.encoding != "event":
            raise ValueError("velocity_bins applies to encoding: event only (set it to 0)")
        if self.chords != "pitches" and self.encoding != "note":
            raise ValueError("chords applies to encoding: note only (remove it)")
        if any(abs(s) > 24 for s in self.transpose):
            raise ValueError(f"transpose shifts must be within -24..24 semitones, got {list(self.transpose)}")
        if self.min_freq < 1 or self.max_quarters <= 0 or not 0 <= self.max_skipped_share <= 1:
            raise ValueError("min_freq must be >= 1, max_quarters > 0, max_skipped_share in [0, 1]")
        if self.split.method == "files":
            raise ValueError("split.method: files is for text corpora; use random or contiguous")
