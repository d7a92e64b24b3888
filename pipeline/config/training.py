"""Sections ``train`` (shared settings + ``runs``) and the ``ModelConfig`` every run and task model uses."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from pipeline.config._schema import ConfigError, _parse_value

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
