"""Recurrent language models: embedding -> recurrent stack -> dropout -> linear to the vocabulary.

:class:`SequenceModel` is the one interface the training loop, evaluation and sampling use:
``forward(ids, state=None) -> (logits, state)`` with ids (B, T) int64 batch-first and logits (B, T, V), where
``logits[:, t]`` predicts ``ids[:, t + 1]``.  :class:`BidirectionalLM` is the ELMo-style bidirectional LM: a
second, separate stack reads the window backwards and predicts x<t-1>; it is not causal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pipeline.config import ModelConfig
from pipeline.errors import UserError
from pipeline.models.softmax import AdaptiveSoftmax

State = Tensor | tuple[Tensor, Tensor]
StackBuilder = Callable[[ModelConfig], nn.Module]


class NonCausalModelError(UserError, ValueError):
    """A model that sees the future was asked to generate or to train as a next-token model."""


class BiLogits(NamedTuple):
    """Logits of a bidirectional LM: ``forward[:, t]`` predicts x<t+1>, ``backward[:, t]`` predicts x<t-1>."""

    forward: Tensor  # (B, T, V)
    backward: Tensor  # (B, T, V)


class SequenceModel(nn.Module):
    """A causal recurrent LM: ``logits[:, t]`` depends on ``ids[:, :t + 1]`` (and the carried state) only.

    Dropout (``config.dropout``) acts between stacked layers and before the output layer, in training mode only.
    With ``tie_weights`` the output layer reuses the embedding matrix (Press & Wolf), saving V x E parameters;
    ``embedding_dropout`` drops embedded inputs; ``softmax: adaptive`` makes the output an
    :class:`~pipeline.models.softmax.AdaptiveSoftmax`, whose ``forward`` gives log-probabilities (valid
    logits for sampling) and whose :meth:`~pipeline.models.softmax.AdaptiveSoftmax.nll_sum` the loss uses.
    """

    causal: bool = True

    def __init__(self, config: ModelConfig, vocab_size: int, stack_builder: StackBuilder) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_size)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = stack_builder(config)
        self.dropout = nn.Dropout(config.dropout)
        # Layers are created, then initialised, in this order: the RNG draws (and so every seeded result) stay
        # those of the models trained before the adaptive softmax existed.
        if config.softmax == "adaptive":
            self.output: nn.Module = AdaptiveSoftmax(config.hidden_size, vocab_size, config.cutoffs, config.div_value)
        else:
            self.output = nn.Linear(config.hidden_size, vocab_size)
        # pytorch/examples' word LM init: N(0, 1) embeddings would saturate the first layer's gates.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if config.softmax == "full":
            nn.init.uniform_(self.output.weight, -0.1, 0.1)
            nn.init.zeros_(self.output.bias)
        if config.tie_weights:
            self.output.weight = self.embedding.weight

    def forward(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> (logits (B, T, V), final state of the stack).

        ``lengths`` (B,) is accepted for interface parity with :class:`BidirectionalLM` and ignored: a causal
        model's outputs at real tokens never depend on the right padding that follows them.
        """
        hidden, state = self.features(ids, state)
        return self.output(hidden), state  # (B, T, V): logits, or log-probabilities from an adaptive softmax

    def features(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> (what the output layer reads (B, T, H), after dropout; the stack's final state)."""
        embedded = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        hidden, state = self.rnn(embedded, state)  # (B, T, H)
        return self.dropout(hidden), state

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The zero state for a batch (what ``state=None`` means), in the stack's layout."""
        return self.rnn.init_state(batch_size, device, self.embedding.weight.dtype)

    @staticmethod
    def detach_state(state: State | None) -> State | None:
        """Cut the graph behind a carried state (truncated BPTT); a tensor or an (h, c) tuple."""
        return detach_state(state)

    def extra_repr(self) -> str:
        return f"cell={self.config.cell}, direction={self.config.direction}, vocab_size={self.vocab_size}"


class BidirectionalLM(SequenceModel):
    """ELMo-style bidirectional LM: two separate stacks sharing the embedding and the output layer.

    The forward stack ``rnn`` reads x<1..t> and predicts x<t+1>; the backward stack ``backward_rnn`` reads
    x<T..t> (the window reversed) and predicts x<t-1>.  Neither direction sees the token it predicts at any
    depth, because the two stacks never exchange states (unlike ``nn.LSTM(bidirectional=True)``, whose upper
    layers read both directions and so would see the answer).  The returned state is the forward stack's; the
    backward stack starts from zeros at the end of every window, since carrying its state would need the future.

    ``causal`` is False: the forward half could generate, but the model as a whole is trained on both
    directions, and sampling refuses it (train a ``direction: uni`` variant to sample).
    """

    causal: bool = False

    def __init__(self, config: ModelConfig, vocab_size: int, stack_builder: StackBuilder) -> None:
        super().__init__(config, vocab_size, stack_builder)
        self.backward_rnn = stack_builder(config)

    def forward(self, ids: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[BiLogits, State]:
        """ids (B, T) -> (BiLogits(forward (B, T, V), backward (B, T, V)), forward stack's final state).

        ``lengths`` (B,) gives each row's real length for right-padded record batches: the backward stack
        then reverses each row within its length, so it reads the row's last real token first instead of
        the padding (without it a row's backward logits would depend on how much padding follows it).
        """
        batch = ids.shape[0]
        embedded = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        forward_hidden, state = self.rnn(embedded, state)  # (B, T, H)
        order = _reversal_index(ids, lengths)  # (B, T)
        backward_hidden, _ = self.backward_rnn(_gather_time(embedded, order))  # (B, T, H), reversed time
        backward_hidden = _gather_time(backward_hidden, order)  # the reversal is its own inverse
        # One matmul for both directions: the output layer is shared.
        logits = self.output(self.dropout(torch.cat([forward_hidden, backward_hidden], dim=0)))  # (2B, T, V)
        forward_logits, backward_logits = logits.split(batch, dim=0)
        return BiLogits(forward_logits, backward_logits), state

    def forward_lm(self) -> SequenceModel:
        """The forward direction alone: a causal LM sharing this model's embedding, forward stack and output.

        It reads x<1..t> and predicts x<t+1> exactly as inside the bidirectional model, so it can be sampled
        from (its perplexity is this model's ``forward_perplexity``); the backward stack is left out.
        """
        lm = SequenceModel.__new__(SequenceModel)
        nn.Module.__init__(lm)
        lm.config = dataclasses.replace(self.config, direction="uni")
        lm.vocab_size = self.vocab_size
        lm.embedding, lm.rnn, lm.dropout, lm.output = self.embedding, self.rnn, self.dropout, self.output
        lm.embedding_dropout = self.embedding_dropout
        lm.train(self.training)
        return lm


def _reversal_index(ids: Tensor, lengths: Tensor | None) -> Tensor | None:
    """Per-row time index reversing positions [0, length) and leaving the padding in place; None: flip all."""
    if lengths is None:
        return None
    steps = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)  # (1, T)
    lengths = lengths.to(ids.device).unsqueeze(1)  # (B, 1)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, T)


def _gather_time(x: Tensor, order: Tensor | None) -> Tensor:
    """x (B, T, D) reordered in time: ``x[b, order[b, t]]``, or flipped when ``order`` is None."""
    if order is None:
        return x.flip(1)
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def detach_state(state: State | None) -> State | None:
    """Detach a carried state: a tensor, an (h, c) tuple, or None."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def ensure_causal(model: nn.Module, action: str = "generate",
                  remedy: str = "train a direction: uni variant to sample") -> None:
    """Raise :class:`NonCausalModelError` for a model that sees the future.

    ``action`` says what was attempted ("generate", "be trained as a next-token model") and ``remedy`` what to do.
    """
    if not getattr(model, "causal", True):
        config = getattr(model, "config", None)
        cell = f" ({config.cell})" if config is not None else ""
        raise NonCausalModelError(
            f"model{cell} is bidirectional (direction: bi): it sees the future, so it cannot {action}; {remedy}"
        )
