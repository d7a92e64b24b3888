"""Typed, strict params: one frozen dataclass per ``params.yaml`` section.

A stage calls :func:`load_params` once and passes the sections it needs down
explicitly; nothing else in ``pipeline/`` reads ``params.yaml``.  Parsing is
strict: an unknown key, a missing key or a value of the wrong type raises
:class:`ConfigError` with one line that names the key path and lists what is
valid, e.g. ``params.yaml: corpora.austen.source: unknown key 'fiels'
(valid: type, package, files)``.

Sections are registered in :data:`SECTIONS`; a section's dataclass may live in
this module or be registered by the subpackage that owns it via
:func:`register_section` (so that ``pipeline.config`` imports nothing from
``pipeline``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union
from urllib.parse import urlparse

import yaml

from pipeline.errors import UserError


class ConfigError(UserError, ValueError):
    """A params file or value that does not match the schema; the message names the key."""


# --------------------------------------------------------------------------- generic parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _parse_value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not valid (choose one of: {', '.join(map(str, args))})")
        return value
    if origin in (Union, types.UnionType):
        return _parse_union(args, value, where)
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return tuple(_parse_value(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        inner = args[1] if args else Any
        return {str(k): _parse_value(inner, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # programming error


def _parse_union(args: tuple[Any, ...], value: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    classes = [a for a in options if dataclasses.is_dataclass(a)]
    if classes and len(classes) == len(options) and isinstance(value, dict):
        # Tagged union of dataclasses: the ``type`` field picks the class.
        tags = {typing.get_args(typing.get_type_hints(c)["type"])[0]: c for c in classes}
        tag = value.get("type")
        if tag not in tags:
            raise ConfigError(f"{where}.type: {tag!r} is not valid (choose one of: {', '.join(tags)})")
        return parse_dataclass(tags[tag], value, where)
    for option in options:
        try:
            return _parse_value(option, value, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")


def parse_dataclass(cls: type, data: Any, where: str) -> Any:
    """Build ``cls`` from a mapping, rejecting unknown and missing keys by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    valid = ", ".join(fields)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r} (valid: {valid})")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _parse_value(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key {name!r} (required: {_required(cls)})")
    try:
        return cls(**kwargs)
    except ValueError as e:  # __post_init__ validation
        raise ConfigError(f"{where}: {e}") from e


def _required(cls: type) -> str:
    return ", ".join(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


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
    """One tokenized text dataset ``data/tokens/<name>/`` built from a raw corpus."""

    corpus: str
    level: Literal["char", "word"]
    lowercase: bool = False
    min_freq: int = 1
    max_size: int | None = None  # includes the three specials
    record: Literal["line", "paragraph", "regex"] = "line"
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


# --------------------------------------------------------------------------- sections: models


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A recurrent language model; ``cell`` is a key of ``pipeline.models`` registry.

    ``direction: bi`` builds the ELMo-style bidirectional LM (a forward stack that
    predicts x<t+1> and a separate backward stack that predicts x<t-1>), which is
    not causal: it cannot be sampled from or trained as a plain next-token model.
    """

    cell: str
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # basic RNN only
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers and before the output layer
    direction: Literal["uni", "bi"] = "uni"
    tie_weights: bool = False  # needs embedding_size == hidden_size

    def __post_init__(self) -> None:
        if min(self.embedding_size, self.hidden_size, self.num_layers) < 1:
            raise ValueError("embedding_size, hidden_size and num_layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"tie_weights needs embedding_size == hidden_size (got {self.embedding_size} and {self.hidden_size})"
            )


# --------------------------------------------------------------------------- sections: train (issue 4)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """What the training loop samples (and logs) at every validation; ``n: 0`` turns sampling off."""

    n: int = 4
    max_length: int = 200
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The hyper-parameters shared by every run of the ``train`` section (``dvc exp run -S train.lr=...``).

    A run may override any of them in its ``overrides`` mapping.  Step counts (``*_every_steps``) are
    optimizer steps; ``val_every_steps: 0`` validates once per epoch.  ``threads: 0`` times one and two
    threads on the run's own model for a few steps at start (CPU only) and keeps the faster.
    """

    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    batching: Literal["stream", "records"] = "stream"
    batch_size: int = 32
    bptt: int = 64  # stream: tokens per truncated-BPTT window; records: longer records are cut to this
    epochs: int = 10
    max_steps: int | None = None
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.002
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    schedule: Literal["none", "plateau", "cosine"] = "none"
    plateau_factor: float = 0.5
    plateau_patience: int = 0
    min_lr: float = 0.0
    clip: Literal["norm", "value", "none"] = "norm"
    clip_threshold: float = 1.0
    early_stopping_patience: int | None = 3  # validations without improvement; null: never stop early
    val_every_steps: int = 0
    eval_batch_size: int = 8
    eval_bptt: int = 256
    checkpoint_every_steps: int = 200
    log_every_steps: int = 25
    layer_norms_every_steps: int = 100
    tracking: Literal["mlflow", "none"] = "mlflow"
    progress: bool = True
    sample: SampleConfig = SampleConfig()

    def __post_init__(self) -> None:
        positive = ("batch_size", "bptt", "epochs", "eval_batch_size", "eval_bptt", "log_every_steps",
                    "checkpoint_every_steps", "layer_norms_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.clip_threshold <= 0:
            raise ValueError(f"lr ({self.lr}) and clip_threshold ({self.clip_threshold}) must be > 0")
        if self.threads < 0 or self.val_every_steps < 0:
            raise ValueError("threads and val_every_steps must be >= 0 (0: automatic / once per epoch)")


@dataclasses.dataclass(frozen=True)
class TrainRunConfig:
    """One trained variant: ``models/<dataset>/<variant>/``; ``overrides`` replaces shared settings for it."""

    dataset: str
    variant: str
    model: ModelConfig
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(TrainSettings)
        for key, value in self.overrides.items():
            if key not in hints:
                raise ValueError(f"overrides: unknown key {key!r} (valid: {', '.join(hints)})")
            self.overrides[key] = _parse_value(hints[key], value, f"overrides.{key}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(TrainSettings):
    """The ``train`` section: shared settings at ``train.*`` plus ``runs`` (name -> :class:`TrainRunConfig`)."""

    runs: dict[str, TrainRunConfig] = dataclasses.field(default_factory=dict)

    def settings_for(self, run: str) -> TrainSettings:
        """The shared settings with run ``run``'s overrides applied."""
        if run not in self.runs:
            raise ConfigError(f"train.runs: unknown run {run!r} (valid: {', '.join(self.runs) or 'none'})")
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)}
        try:
            return TrainSettings(**{**shared, **self.runs[run].overrides})
        except ValueError as e:
            raise ConfigError(f"train.runs.{run}.overrides: {e}") from e


# --------------------------------------------------------------------------- sections: encode_midi (issue 3)


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


# --------------------------------------------------------------------------- sections: evaluate (issue 5)


@dataclasses.dataclass(frozen=True)
class NgramConfig:
    """A count-based baseline for one dataset: interpolated Kneser-Ney of order ``order``."""

    order: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 10:
            raise ValueError(f"order must be in 1..10, got {self.order}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: scoring trained variants, their samples, baselines and the champion.

    ``batch_size: 1`` scores each split as ONE stream with the state carried from its first token to its
    last (no truncation artefacts: every token sees all the context before it); a larger value cuts the
    split into that many streams, which is faster but restarts the context at each cut.
    """

    device: str = "auto"
    batch_size: int = 1
    bptt: int = 256
    seed: int = 1337
    samples: SampleConfig = SampleConfig(n=8, max_length=400, temperature=0.8)
    baselines: dict[str, NgramConfig] = dataclasses.field(default_factory=dict)
    register_champion: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bptt < 1:
            raise ValueError("batch_size and bptt must be >= 1")


# --------------------------------------------------------------------------- sections: curriculum (issue 6)


@dataclasses.dataclass(frozen=True)
class TaskTraining:
    """One small supervised run (:func:`pipeline.training.supervised.train_supervised`): a fixed number of steps.

    Every task of the ``curriculum`` section trains with it; comparisons inside a task (rnn vs gru vs lstm,
    uni vs bi) give each model the same ``steps`` and ``batch_size``, i.e. the same data budget.
    """

    steps: int = 300
    batch_size: int = 32
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.003
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    clip: Literal["norm", "value", "none"] = "norm"
    clip_threshold: float = 1.0
    eval_every_steps: int = 100  # and once more after the last step
    log_every_steps: int = 10
    seed: int = 1337

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.eval_every_steps, self.log_every_steps) < 1:
            raise ValueError("steps, batch_size, eval_every_steps and log_every_steps must be >= 1")
        if self.lr <= 0 or self.clip_threshold <= 0:
            raise ValueError(f"lr ({self.lr}) and clip_threshold ({self.clip_threshold}) must be > 0")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Gradient of the last step's loss w.r.t. the input embedding at step t, against distance T - t.

    ``variants`` are trained models ``models/<dataset>/<variant>/model.pt`` (and a fresh copy of each);
    ``clipped``/``unclipped`` name the two runs whose ``grad_norms.csv`` give the clipping distributions.
    """

    dataset: str = "tunenames-char"
    variants: tuple[str, ...] = ("rnn", "gru", "lstm")
    split: Literal["val", "test"] = "val"
    window: int = 64  # T: tokens per window (windows of the split's stream, records run together)
    windows: int = 64  # windows averaged
    clipped: str = "rnn"
    unclipped: str = "rnn-noclip"
    seed: int = 1337

    def __post_init__(self) -> None:
        if self.window < 2 or self.windows < 1 or not self.variants:
            raise ValueError("window must be >= 2, windows >= 1 and variants non-empty")


@dataclasses.dataclass(frozen=True)
class AgreementConfig:
    """Synthetic number agreement: the label at the end is the number of the subject ``distance`` tokens back.

    For each cell and each ``d`` of ``distances`` a fresh classifier trains on distances drawn uniformly
    from [1, d] and is tested at exactly d: the longest dependency each cell learns with the same budget.
    """

    cells: tuple[str, ...] = ("rnn", "gru", "lstm")
    embedding_size: int = 16
    hidden_size: int = 32
    distances: tuple[int, ...] = (5, 10, 20, 40, 80)
    eval_examples: int = 500  # test sequences per distance
    attractor_rate: float = 0.25  # share of filler tokens that are nouns (singular or plural): distractors
    forget_bias: float = 1.0  # LSTM forget-gate bias at init (Gers et al. 2000); 0.0: torch's default
    train: TaskTraining = TaskTraining()

    def __post_init__(self) -> None:
        if not self.distances or min(self.distances) < 1 or not self.cells:
            raise ValueError("distances must be >= 1 and cells non-empty")
        if not 0.0 <= self.attractor_rate < 1.0 or self.eval_examples < 1:
            raise ValueError("attractor_rate must be in [0, 1) and eval_examples >= 1")


@dataclasses.dataclass(frozen=True)
class TaggingConfig:
    """Restore removed spaces: tag each character of a char dataset "a word starts here", uni vs bi."""

    dataset: str = "austen-char"
    model: ModelConfig = ModelConfig(cell="lstm", embedding_size=32, hidden_size=64)
    directions: tuple[Literal["uni", "bi"], ...] = ("uni", "bi")
    window: int = 64  # characters (spaces removed) per training row
    train: TaskTraining = TaskTraining()

    def __post_init__(self) -> None:
        if self.window < 2 or not self.directions:
            raise ValueError("window must be >= 2 and directions non-empty")


@dataclasses.dataclass(frozen=True)
class LangIdConfig:
    """Which language is this line in?  Lines of one text file per language in ``data/raw/<corpus>/``."""

    corpus: str = "languages"
    languages: tuple[str, ...] = ("de", "en", "fr", "it", "la", "nl")  # file stems: <corpus>/<lang>.txt
    min_chars: int = 20
    max_chars: int = 80  # longer lines are cut
    lines: dict[str, int] = dataclasses.field(default_factory=lambda: {"train": 600, "val": 100, "test": 200})
    model: ModelConfig = ModelConfig(cell="gru", embedding_size=32, hidden_size=64)
    train: TaskTraining = TaskTraining()

    def __post_init__(self) -> None:
        if set(self.lines) != {"train", "val", "test"} or min(self.lines.values()) < 1:
            raise ValueError("lines must give train, val and test counts >= 1 (per language)")
        if not 1 <= self.min_chars <= self.max_chars or len(self.languages) < 2:
            raise ValueError("need 1 <= min_chars <= max_chars and at least two languages")


@dataclasses.dataclass(frozen=True)
class StylesConfig:
    """One-to-many: one LM over several MIDI datasets, its initial state set by the style id (dataset index)."""

    datasets: tuple[str, ...] = ("chorales-note", "folk-note")
    model: ModelConfig = ModelConfig(cell="lstm", embedding_size=32, hidden_size=128)
    chunk: int = 64  # tokens per training row; every row starts from its style's state
    samples: SampleConfig = SampleConfig(n=2, max_length=120, temperature=0.9)
    train: TaskTraining = TaskTraining()

    def __post_init__(self) -> None:
        if len(self.datasets) < 2 or self.chunk < 2:
            raise ValueError("need at least two datasets (styles) and chunk >= 2")


@dataclasses.dataclass(frozen=True)
class DepthConfig:
    """Deep RNNs: the LM ``model`` with each of ``layers`` trained by ``fit`` with the same settings.

    ``overrides`` change the ``train`` section's shared settings for these runs only (like a run's
    ``overrides``); give ``max_steps`` so that every depth gets the same number of optimizer steps.
    """

    dataset: str = "austen-char"
    model: ModelConfig = ModelConfig(cell="lstm", embedding_size=32, hidden_size=128)
    layers: tuple[int, ...] = (1, 2, 3)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers or min(self.layers) < 1:
            raise ValueError("layers must list depths >= 1")
        TrainRunConfig(self.dataset, "depth", self.model, self.overrides)  # parses and checks the overrides


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """The ``curriculum`` section (issue 6): the probe and the small tasks, each its own DVC stage."""

    device: str = "cpu"  # the task models are tiny: a GPU would mostly wait on Python
    threads: int = 1  # one thread is as fast as two for tiny recurrent steps here (PERF-NOTES.md)
    tracking: Literal["mlflow", "none"] = "mlflow"
    probe: ProbeConfig = ProbeConfig()
    agreement: AgreementConfig = AgreementConfig()
    tagging: TaggingConfig = TaggingConfig()
    langid: LangIdConfig = LangIdConfig()
    styles: StylesConfig = StylesConfig()
    depth: DepthConfig = DepthConfig()

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: torch's default), got {self.threads}")


# --------------------------------------------------------------------------- retrain (issue 7)

@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """The ``retrain`` section: what ``seqlab retrain`` (and .github/workflows/retrain.yml) accepts.

    A retrained model fails the check when its ``metric`` (lower is better) is more than ``max_regression``
    (a fraction: 0.05 = 5 %) worse than on the ``base`` revision (``dvc metrics diff``) or, with
    ``compare_champion``, than the registered ``seqlab-<dataset>@champion``.
    """

    max_regression: float = 0.05
    metric: str = "val_perplexity"
    base: str = "HEAD"  # git revision compared against locally; CI passes the base branch (--base)
    compare_champion: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.max_regression < 10:
            raise ValueError(f"max_regression must be a fraction in [0, 10), got {self.max_regression}")


# --------------------------------------------------------------------------- params as a whole

#: section name -> how to parse it: a dataclass, or ``dict[str, Dataclass]``.
SECTIONS: dict[str, Any] = {
    "corpora": dict[str, CorpusConfig],
    "tokenize": dict[str, TokenizeConfig],
    "encode_midi": dict[str, EncodeMidiConfig],
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "curriculum": CurriculumConfig,
    "retrain": RetrainConfig,
}


def register_section(name: str, tp: Any) -> None:
    """Let a subpackage declare its own params section (parsed like the built-in ones)."""
    SECTIONS[name] = tp


@dataclasses.dataclass(frozen=True)
class Params:
    """Parsed params: ``params.section("corpora")`` or attribute access ``params.corpora``."""

    path: str
    sections: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None


def load_params(path: str | Path = "params.yaml", required: tuple[str, ...] = ()) -> Params:
    """Read and validate a params file; ``required`` sections must be present."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: params file not found (pass --params PATH)") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from e
    return parse_params(raw, str(path), required)


def parse_params(raw: Any, where: str, required: tuple[str, ...] = ()) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    valid = ", ".join(SECTIONS)
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(f"{where}: unknown section {name!r} (valid: {valid})")
        sections[name] = _parse_value(SECTIONS[name], value, f"{where}: {name}")
    for name in required:
        if name not in sections:
            raise ConfigError(f"{where}: missing section {name!r} (valid: {valid})")
    _check_references(sections, where)
    return Params(where, sections)


def _check_references(sections: dict[str, Any], where: str) -> None:
    corpora = sections.get("corpora", {})
    for name, enc in sections.get("encode_midi", {}).items():  # issue 3
        corpus = corpora.get(enc.corpus)
        if corpus is None:
            raise ConfigError(
                f"{where}: encode_midi.{name}.corpus: unknown corpus {enc.corpus!r} (valid: {', '.join(corpora)})"
            )
        if corpus.kind != "midi":
            raise ConfigError(f"{where}: encode_midi.{name}.corpus: {enc.corpus!r} is a {corpus.kind} corpus, not midi")
        if not corpus.enabled:
            raise ConfigError(
                f"{where}: encode_midi.{name}.corpus: corpus {enc.corpus!r} is disabled "
                f"(set corpora.{enc.corpus}.enabled: true)"
            )
    for name, tok in sections.get("tokenize", {}).items():
        corpus = corpora.get(tok.corpus)
        if corpus is None:
            raise ConfigError(
                f"{where}: tokenize.{name}.corpus: unknown corpus {tok.corpus!r} (valid: {', '.join(corpora)})"
            )
        if corpus.kind != "text":
            raise ConfigError(f"{where}: tokenize.{name}.corpus: {tok.corpus!r} is a {corpus.kind} corpus, not text")
        if not corpus.enabled:
            raise ConfigError(
                f"{where}: tokenize.{name}.corpus: corpus {tok.corpus!r} is disabled (set corpora.{tok.corpus}.enabled: true)"
            )


def to_plain(obj: Any) -> Any:
    """Parsed config -> plain JSON-able Python (dataclasses become dicts, tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten parsed config into ``{"a.b.c": value}`` (for MLflow params)."""
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}
