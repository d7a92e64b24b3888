"""The model registry: ``cell`` name -> a builder of the recurrent stack, and :func:`build_model`.

``rnn``, ``gru`` and ``lstm`` use torch's fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (cuDNN on a GPU, oneDNN or
native kernels on a CPU); ``lstm_peephole`` and ``gru_minimal`` are the custom cells of :mod:`.cells`, which
no fused kernel implements.  Every stack takes (B, T, E) batch-first input, returns ((B, T, H), state) and has
``init_state(batch_size, device, dtype)``; state follows torch's (L, B, H) layout, a tuple (h, c) for LSTMs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pipeline.config import ConfigError, ModelConfig
from pipeline.models.cells import CellStack, MinimalGRUCell, PeepholeLSTMCell
from pipeline.models.language_model import BidirectionalLM, SequenceModel, State


class _ZeroStateMixin:
    """``init_state`` for torch's fused modules, matching what they use for ``hx=None``."""

    has_memory_cell = False

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone()) if self.has_memory_cell else zeros


class FusedRNN(_ZeroStateMixin, nn.RNN):
    """``nn.RNN`` (Elman, tanh or relu), batch-first."""


class FusedGRU(_ZeroStateMixin, nn.GRU):
    """``nn.GRU``, batch-first."""


class FusedLSTM(_ZeroStateMixin, nn.LSTM):
    """``nn.LSTM``, batch-first; state ``(h, c)``."""

    has_memory_cell = True


def _fused_kwargs(cfg: ModelConfig) -> dict:
    # torch warns about (and ignores) dropout on a single layer: it only acts between layers.
    return dict(input_size=cfg.embedding_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, batch_first=True)


def _build_rnn(cfg: ModelConfig) -> nn.Module:
    return FusedRNN(nonlinearity=cfg.nonlinearity, **_fused_kwargs(cfg))


def _build_gru(cfg: ModelConfig) -> nn.Module:
    return FusedGRU(**_fused_kwargs(cfg))


def _build_lstm(cfg: ModelConfig) -> nn.Module:
    return FusedLSTM(**_fused_kwargs(cfg))


def _build_lstm_peephole(cfg: ModelConfig) -> nn.Module:
    return CellStack(PeepholeLSTMCell, cfg.embedding_size, cfg.hidden_size, cfg.num_layers, cfg.dropout)


def _build_gru_minimal(cfg: ModelConfig) -> nn.Module:
    return CellStack(MinimalGRUCell, cfg.embedding_size, cfg.hidden_size, cfg.num_layers, cfg.dropout)


#: cell name -> builder of the recurrent stack (``ModelConfig`` -> module).  The keys are the valid ``cell`` values.
MODEL_REGISTRY: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "rnn": _build_rnn,
    "gru": _build_gru,
    "lstm": _build_lstm,
    "lstm_peephole": _build_lstm_peephole,
    "gru_minimal": _build_gru_minimal,
}


def build_model(cfg: ModelConfig, vocab_size: int, where: str = "model") -> SequenceModel:
    """Build the LM ``cfg`` describes over a vocabulary of ``vocab_size`` ids; ``where`` prefixes error messages.

    ``direction: uni`` gives a causal :class:`SequenceModel`, ``bi`` a :class:`BidirectionalLM`.
    """
    builder = MODEL_REGISTRY.get(cfg.cell)
    if builder is None:
        raise ConfigError(f"{where}.cell: unknown cell {cfg.cell!r} (valid: {', '.join(MODEL_REGISTRY)})")
    if cfg.nonlinearity != "tanh" and cfg.cell != "rnn":
        raise ConfigError(
            f"{where}.nonlinearity: {cfg.nonlinearity!r} applies only to cell 'rnn' (got cell {cfg.cell!r}); "
            "remove the key or set it to 'tanh'"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ConfigError(f"{where}: vocab_size must be a positive integer, got {vocab_size!r}")
    if cfg.softmax == "adaptive" and cfg.cutoffs[-1] >= vocab_size:
        raise ConfigError(
            f"{where}.cutoffs: {list(cfg.cutoffs)} must all be below the vocabulary size {vocab_size} "
            "(lower them, or use softmax: full for a small vocabulary)")
    model_class = BidirectionalLM if cfg.direction == "bi" else SequenceModel
    return model_class(cfg, vocab_size, builder)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (tied weights counted once, as ``model.parameters()`` yields them once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
