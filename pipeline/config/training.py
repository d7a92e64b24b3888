"""Section ``train`` (``defaults`` shared by every run, and ``runs``) and the ``ModelConfig`` every model uses."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pipeline.config._schema import ConfigError, apply_overrides, parse_overrides

# --------------------------------------------------------------------------- sections: models


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A recurrent language model; ``cell`` is a key of ``pipeline.models`` registry.

    ``softmax: adaptive`` replaces the output layer with an adaptive softmax (Grave et al. 2017,
    ``torch.nn.AdaptiveLogSoftmaxWithLoss``): ids are frequency-ranked by the tokenizer, so the ``cutoffs[0]``
    most frequent ones are scored in a small head and the rare ones in narrower tail clusters; on a 10k word
    vocabulary that makes the output layer several times cheaper (see BENCHMARKS.md).

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
    embedding_dropout: float = 0.0  # on the embedded inputs, as pytorch/examples' word LM does
    softmax: Literal["full", "adaptive"] = "full"
    cutoffs: tuple[int, ...] = (2000, 6000)  # adaptive only: word ids below 2000 in the head, then two tails
    div_value: float = 2.0  # adaptive only: each tail's projection is div_value times narrower than the last

    def __post_init__(self) -> None:
        if min(self.embedding_size, self.hidden_size, self.num_layers) < 1:
            raise ValueError("embedding_size, hidden_size and num_layers must be >= 1")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.softmax == "adaptive":
            if self.tie_weights:
                raise ValueError("tie_weights needs softmax: full (the adaptive softmax has no V x E matrix to share)")
            if self.direction == "bi":
                raise ValueError("softmax: adaptive supports direction: uni only")
            if not self.cutoffs or list(self.cutoffs) != sorted(set(self.cutoffs)) or self.cutoffs[0] < 1:
                raise ValueError(f"cutoffs must be increasing positive ids, got {list(self.cutoffs)}")
            if self.div_value < 1.0:
                raise ValueError(f"div_value must be >= 1, got {self.div_value}")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"tie_weights needs embedding_size == hidden_size (got {self.embedding_size} and {self.hidden_size})"
            )


# --------------------------------------------------------------------------- sections: train


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """What is sampled: by the training loop at every validation (``n: 0`` turns it off), by evaluate and baseline.

    The training loop logs its samples as text (music as its tokens).  Music only, for evaluate and baseline:
    decoding to MIDI closes every note held longer than ``max_note_quarters`` (null: never), and
    ``forbid_sounding_note_on`` bans a note-on for a pitch already sounding while they sample.
    """

    n: int = 4
    max_length: int = 200
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    max_note_quarters: float | None = 4.0
    forbid_sounding_note_on: bool = False

    def __post_init__(self) -> None:
        if self.max_note_quarters is not None and self.max_note_quarters <= 0:
            raise ValueError(f"max_note_quarters must be > 0 or null, got {self.max_note_quarters}")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The optimizer and the gradient clipping (:mod:`pipeline.training.optim`), shared by the ``train``
    section's runs (:class:`TrainSettings`) and the curriculum's experiments (``CurriculumTraining``).  The keys are written
    flat beside the other settings: ``train.defaults.lr``, ``curriculum.<stage>.train.lr``."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 0.002
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    clip: Literal["norm", "value", "none"] = "norm"
    clip_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.clip_threshold <= 0:
            raise ValueError(f"lr ({self.lr}) and clip_threshold ({self.clip_threshold}) must be > 0")


@dataclasses.dataclass(frozen=True)
class TrainSettings(OptimizerSettings):
    """``train.defaults``: the hyper-parameters shared by every run (``dvc exp run -S train.defaults.lr=...``).

    A run may override any of them in its ``overrides`` mapping.  Step counts (``*_every_steps``) are
    optimizer steps; ``val_every_steps: 0`` validates once per epoch.  ``threads: 0`` on a CPU decides from the
    size of the run's recurrent step (:func:`pipeline.training.devices.thread_plan`: one thread, plus one per
    12 MFLOP of LSTM or GRU work per time step, 24 for a basic RNN, up to the usable CPUs); on CUDA it keeps
    torch's default.  ``threads: N`` > 0 sets N threads.

    ``time_budget_s`` stops the run after that many seconds of training (validation, checkpoints and samples
    are not counted), and the ``cosine`` schedule then decays over whichever of the steps and the time runs
    out first (see :class:`pipeline.training.optim.StepSchedule`).  A budgeted run is only as reproducible as
    the machine's speed: how many steps fit in the budget varies from run to run, so pin ``max_steps``
    instead where the exact result matters more than the wall time.
    ``val_tokens`` bounds what a validation during training scores: a val split longer than that is scored on
    a fixed sample of about ``val_tokens`` tokens (``eval_batch_size`` segments at seeded offsets, the same
    at every validation; nanoGPT's ``eval_iters`` idea), so that validating a large corpus costs no more
    than a small one; the evaluate stage still scores the whole split once.  null: always the whole split.
    ``precision: bf16`` on a CPU pays off where the cores have bf16 dot products (AVX512-BF16, AMX): see
    BENCHMARKS.md.
    """

    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    batching: Literal["stream", "records", "windows"] = "stream"
    batch_size: int = 32
    bptt: int = 64  # stream: tokens per truncated-BPTT window; records: longer records are cut to this
    epochs: int = 10
    max_steps: int | None = None
    schedule: Literal["none", "plateau", "cosine"] = "none"
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr (schedules none and cosine)
    time_budget_s: float | None = None  # stop after this much training time (validation excluded)
    plateau_factor: float = 0.5
    plateau_patience: int = 0
    min_lr: float = 0.0
    early_stopping_patience: int | None = 3  # validations without improvement; null: never stop early
    val_every_steps: int = 0
    eval_batch_size: int = 8
    eval_bptt: int = 256
    val_tokens: int | None = 262144
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
        super().__post_init__()
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_steps and self.schedule == "plateau":
            raise ValueError("warmup_steps works with schedule none or cosine, not plateau (set warmup_steps: 0)")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0 seconds or null, got {self.time_budget_s}")
        if self.val_tokens is not None and self.val_tokens < 1:
            raise ValueError(f"val_tokens must be >= 1 or null (the whole split), got {self.val_tokens}")
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
        # A new dict: the mapping passed in is left as it was.
        object.__setattr__(self, "overrides", parse_overrides(TrainSettings, self.overrides))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section: shared settings at ``train.defaults``, one entry per variant in ``runs``
    (name -> :class:`TrainRunConfig`).  Every run's settings are merged and checked when the file is read."""

    defaults: TrainSettings
    runs: dict[str, TrainRunConfig] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, run in self.runs.items():  # a bad combination stops every stage, not only the run's
            apply_overrides(self.defaults, run.overrides, f"runs.{name}.overrides")

    def settings_for(self, run: str) -> TrainSettings:
        """``train.defaults`` with run ``run``'s overrides applied."""
        if run not in self.runs:
            raise ConfigError(f"train.runs: unknown run {run!r} (valid: {', '.join(self.runs) or 'none'})")
        return apply_overrides(self.defaults, self.runs[run].overrides, f"train.runs.{run}.overrides")
