"""Sections ``evaluate`` (scoring, samples, baselines, champion) and ``retrain`` (CI regression gate)."""

from __future__ import annotations

import dataclasses

from pipeline.config.training import SampleConfig

# --------------------------------------------------------------------------- sections: evaluate


@dataclasses.dataclass(frozen=True)
class NgramConfig:
    """A count-based baseline for one dataset: interpolated Kneser-Ney of order ``order``."""

    order: int = 5
    max_train_tokens: int | None = None  # fit on the first this-many training tokens; null: all of them

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 10:
            raise ValueError(f"order must be in 1..10, got {self.order}")
        if self.max_train_tokens is not None and self.max_train_tokens < 1:
            raise ValueError(f"max_train_tokens must be >= 1 or null, got {self.max_train_tokens}")


@dataclasses.dataclass(frozen=True)
class WindowsConfig:
    """nanoGPT's evaluation protocol: ``count`` random windows of ``length`` tokens, state reset per window."""

    length: int = 64
    count: int = 2400

    def __post_init__(self) -> None:
        if self.length < 1 or self.count < 1:
            raise ValueError("length and count must be >= 1")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section: scoring trained variants, their samples, baselines and the champion.

    ``batch_size: 1`` scores each split as ONE stream with the state carried from its first token to its
    last (no truncation artefacts: every token sees all the context before it); a larger value cuts the
    split into that many streams, which is faster but restarts the context at each cut.  A split longer than
    ``lanes_above_tokens`` is scored as ``lanes`` streams instead (each carrying its state through its part
    of the split): on millions of tokens the cuts cost a negligible share of context and scoring runs at
    batch speed (BENCHMARKS.md gives the difference on the shipped datasets).  Each split's figures record
    the ``lanes`` they were scored with.
    ``windows`` (off by default) adds ``window_loss``/``window_perplexity`` per split: the mean over random
    windows with the state reset per window (:func:`pipeline.models.scoring.evaluate_windows`), the
    protocol nanoGPT reports, for a fair side-by-side with models measured that way.
    ``interpolate`` (dataset -> n-gram, empty by default) also scores each of that dataset's causal variants
    (a bidirectional one: its forward direction) mixed with a Kneser-Ney n-gram fitted on its training split,
    the mixture's weight fitted on validation (:mod:`pipeline.evaluation.mixture`): ``interpolated`` figures.
    """

    device: str = "auto"
    batch_size: int = 1
    bptt: int = 256
    lanes_above_tokens: int | None = 1_000_000  # null: every split is scored with batch_size streams
    lanes: int = 64
    seed: int = 1337
    samples: SampleConfig = SampleConfig(n=8, max_length=400, temperature=0.8)
    baselines: dict[str, NgramConfig] = dataclasses.field(default_factory=dict)
    interpolate: dict[str, NgramConfig] = dataclasses.field(default_factory=dict)
    windows: WindowsConfig | None = None
    register_champion: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.bptt < 1 or self.lanes < 1:
            raise ValueError("batch_size, bptt and lanes must be >= 1")
        if self.lanes_above_tokens is not None and self.lanes_above_tokens < 1:
            raise ValueError(f"lanes_above_tokens must be >= 1 or null, got {self.lanes_above_tokens}")



# --------------------------------------------------------------------------- retrain

CHAMPION_METRIC = "val.perplexity"  # the figure the report registers a champion with, as dvc metrics diff names it


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """The ``retrain`` section: what ``seqlab retrain`` (and .github/workflows/retrain.yml) accepts.

    A retrained model fails the check when its ``metric`` (lower is better; a key as ``dvc metrics diff``
    flattens it) is more than ``max_regression`` (a fraction: 0.05 = 5 %) worse than on the ``base`` revision
    or, with ``compare_champion``, than the registered ``seqlab-<dataset>@champion``.  Both sides of each
    comparison are one measurement: the champion is registered with the evaluate stage's validation
    perplexity, ``val.perplexity`` of ``metrics/<dataset>/<variant>.json``, so that is the metric it is
    compared on.
    """

    max_regression: float = 0.05
    metric: str = "val.perplexity"
    base: str = "HEAD"  # git revision compared against locally; CI passes the base branch (--base)
    compare_champion: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.max_regression < 10:
            raise ValueError(f"max_regression must be a fraction in [0, 10), got {self.max_regression}")
        if self.compare_champion and self.metric != CHAMPION_METRIC:
            raise ValueError(f"compare_champion compares {CHAMPION_METRIC} (the evaluate stage's figure the champion "
                             f"is registered with), not {self.metric!r}: set metric: {CHAMPION_METRIC}, or "
                             f"compare_champion: false")
