"""Section ``curriculum``: the experiments of the curriculum stages (probe, agreement, tagging, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pipeline.config._schema import parse_overrides
from pipeline.config.training import ModelConfig, OptimizerSettings, SampleConfig, TrainSettings

# --------------------------------------------------------------------------- sections: curriculum


@dataclasses.dataclass(frozen=True)
class CurriculumTraining(OptimizerSettings):
    """One small supervised run (:func:`pipeline.training.supervised.train_supervised`): a fixed number of steps,
    with the optimizer and clipping of :class:`OptimizerSettings` (``lr`` 0.003 unless the experiment says otherwise).

    Every experiment of the ``curriculum`` section trains with it; comparisons inside one (rnn vs gru vs lstm,
    uni vs bi) give each model the same ``steps`` and ``batch_size``, i.e. the same data budget.
    """

    lr: float = 0.003
    steps: int = 300
    batch_size: int = 32
    eval_every_steps: int = 100  # and once more after the last step
    log_every_steps: int = 10
    seed: int = 1337

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.eval_every_steps, self.log_every_steps) < 1:
            raise ValueError("steps, batch_size, eval_every_steps and log_every_steps must be >= 1")
        super().__post_init__()


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
    train: CurriculumTraining = CurriculumTraining()

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
    train: CurriculumTraining = CurriculumTraining()

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
    train: CurriculumTraining = CurriculumTraining()

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
    train: CurriculumTraining = CurriculumTraining()

    def __post_init__(self) -> None:
        if len(self.datasets) < 2 or self.chunk < 2:
            raise ValueError("need at least two datasets (styles) and chunk >= 2")


@dataclasses.dataclass(frozen=True)
class DepthConfig:
    """Deep RNNs: the LM ``model`` with each of ``layers`` trained by ``fit`` with the same settings.

    ``overrides`` change the shared ``train.defaults`` for these runs only (like a run's ``overrides``,
    merged by :func:`pipeline.config.apply_overrides`); give ``max_steps`` so that every depth gets the same
    number of optimizer steps.
    """

    dataset: str = "austen-char"
    model: ModelConfig = ModelConfig(cell="lstm", embedding_size=32, hidden_size=128)
    layers: tuple[int, ...] = (1, 2, 3)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.layers or min(self.layers) < 1:
            raise ValueError("layers must list depths >= 1")
        object.__setattr__(self, "overrides", parse_overrides(TrainSettings, self.overrides))  # checked, parsed


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """The ``curriculum`` section: the probe and the small experiments, each its own DVC stage."""

    device: str = "cpu"  # the curriculum's models are tiny: a GPU would mostly wait on Python
    threads: int = 1  # intra-op threads per model (0: torch's default): a second barely speeds up a step this small
    # models of one experiment trained at once, one process each (0: one per usable CPU; 1: one after another).
    # Only with threads: 1 on the CPU; the figures are the same whatever it is (pipeline.curriculum.parallel)
    workers: int = 0
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
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0: one per usable CPU), got {self.workers}")
