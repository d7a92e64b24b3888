"""Heads over the same cells, one model kind each: a tagger (many-to-many, Tx = Ty), a classifier (many-to-one)
and a conditioned LM (one-to-many).  All are batch-first over ids (B, T) with optional ``lengths`` (B,).

* :class:`SequenceTagger` ``forward(ids, lengths) -> logits (B, T, C)``, one label per input position.
* :class:`SequenceClassifier` ``forward(ids, lengths) -> logits (B, C)``, from the state after the last real token.
* :class:`ConditionedLM` ``forward(ids, state=None, lengths=None, conditions=None) -> (logits (B, T, V), state)``:
  a causal :class:`SequenceModel` whose initial state a<0> is computed from an integer condition
  (the one-to-many picture: x is the condition, fed once).

For the tagger and the classifier, ``direction: bi`` means the standard concatenated BRNN
(:class:`pipeline.models.brnn.BidirectionalStack`): they label given input, so seeing both sides is the point.
``build_head_model(kind, cfg, vocab_size, num_outputs)`` builds one; ``HEAD_MODELS`` names the kinds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pipeline.config import ConfigError, ModelConfig
from pipeline.models.brnn import BidirectionalStack
from pipeline.models.cells import PeepholeLSTMCell
from pipeline.models.language_model import SequenceModel, State
from pipeline.models.registry import MODEL_REGISTRY

StackBuilder = Callable[[ModelConfig], nn.Module]


class _Encoder(nn.Module):
    """Embedding -> uni stack (B, T, H) or concatenated BRNN (B, T, 2H)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, builder: StackBuilder) -> None:
        super().__init__()
        self.config, self.vocab_size = cfg, vocab_size
        self.bidirectional = cfg.direction == "bi"
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # as SequenceModel: N(0, 1) saturates the gates
        self.rnn = BidirectionalStack(cfg, builder) if self.bidirectional else builder(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.features = cfg.hidden_size * (2 if self.bidirectional else 1)

    @property
    def causal(self) -> bool:
        """Whether position t depends on ids[:, :t + 1] only (a uni stack)."""
        return not self.bidirectional

    def encode(self, ids: Tensor, lengths: Tensor | None) -> Tensor:
        embedded = self.embedding(ids)  # (B, T, E)
        hidden = self.rnn(embedded, lengths) if self.bidirectional else self.rnn(embedded)[0]  # (B, T, D)
        return self.dropout(hidden)


class SequenceTagger(_Encoder):
    """Many-to-many with Tx = Ty: ``logits[:, t]`` labels ``ids[:, t]``."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, builder: StackBuilder) -> None:
        super().__init__(cfg, vocab_size, builder)
        self.num_classes = num_classes
        self.output = nn.Linear(self.features, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """ids (B, T) -> logits (B, T, C)."""
        return self.output(self.encode(ids, lengths))


class SequenceClassifier(_Encoder):
    """Many-to-one: one label per sequence from the final activations (both directions' for a BRNN)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int, builder: StackBuilder) -> None:
        super().__init__(cfg, vocab_size, builder)
        self.num_classes = num_classes
        self.output = nn.Linear(self.features, num_classes)

    def forward(self, ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """ids (B, T) right-padded, lengths (B,) -> logits (B, C)."""
        hidden = self.encode(ids, lengths)  # (B, T, D)
        if lengths is None:
            lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long, device=ids.device)
        last = (lengths.to(ids.device) - 1).clamp_min(0)  # (B,)
        rows = torch.arange(ids.shape[0], device=ids.device)
        summary = hidden[rows, last]  # (B, D): the forward direction has read the whole row here
        if self.bidirectional:  # the backward direction has read the whole row at position 0
            size = self.config.hidden_size
            summary = torch.cat([summary[:, :size], hidden[:, 0, size:]], dim=-1)  # (B, 2H)
        return self.output(summary)


class ConditionedLM(SequenceModel):
    """A causal LM whose initial state a<0> (and c<0> for an LSTM) is a learned function of a condition id.

    ``condition_state(conditions (B,))`` gives that state; ``forward(..., conditions=...)`` starts from it
    when no state is passed.  :meth:`conditioned` fixes one condition, for :func:`pipeline.models.sampling.sample`.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_conditions: int, builder: StackBuilder) -> None:
        super().__init__(cfg, vocab_size, builder)
        self.num_conditions = num_conditions
        self.state_parts = 2 if isinstance(self.rnn.init_state(1), tuple) else 1
        self.condition = nn.Embedding(num_conditions, self.state_parts * cfg.num_layers * cfg.hidden_size)
        nn.init.uniform_(self.condition.weight, -0.1, 0.1)

    def condition_state(self, conditions: Tensor) -> State:
        """conditions (B,) int64 -> the initial state in the stack's layout: (L, B, H), or (h, c)."""
        cfg, batch = self.config, conditions.shape[0]
        parts = self.condition(conditions).view(batch, self.state_parts, cfg.num_layers, cfg.hidden_size)
        parts = parts.permute(1, 2, 0, 3)  # (P, L, B, H)
        hidden = torch.tanh(parts[0]).contiguous()  # a<0> in (-1, 1), like every later a<t>
        return (hidden, parts[1].contiguous()) if self.state_parts == 2 else hidden

    def forward(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None,
                conditions: Tensor | None = None) -> tuple[Tensor, State]:
        if state is None and conditions is not None:
            state = self.condition_state(conditions.to(ids.device))
        return super().forward(ids, state, lengths)

    def conditioned(self, condition: int) -> FixedCondition:
        if not 0 <= condition < self.num_conditions:
            raise ValueError(f"condition {condition} is outside 0..{self.num_conditions - 1}")
        return FixedCondition(self, condition)


class FixedCondition(nn.Module):
    """A :class:`ConditionedLM` with its condition fixed: the plain ``forward(ids, state)`` sampling expects."""

    causal = True

    def __init__(self, lm: ConditionedLM, condition: int) -> None:
        super().__init__()
        self.lm, self.condition = lm, condition
        self.vocab_size, self.config = lm.vocab_size, lm.config

    def forward(self, ids: Tensor, state: State | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.lm.condition_state(torch.full((ids.shape[0],), self.condition, device=ids.device))
        return self.lm(ids, state)


def set_forget_bias(model: nn.Module, value: float) -> int:
    """Set the forget-gate bias Γf of every LSTM layer in ``model`` to ``value``; return how many layers.

    torch initialises it near 0, so at first Γf ~ 0.5 and the memory cell halves at every step; a bias of
    1 (Gers et al. 2000, Jozefowicz et al. 2015) starts the cell remembering, which lets gradients through
    long spans from the first step.  Gate order is torch's (i, f, g, o): rows [H, 2H) of the biases; for
    ``nn.LSTM`` the two biases add up, so ``bias_ih`` gets ``value`` and ``bias_hh`` 0.
    """
    layers = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LSTM):
                size = module.hidden_size
                for name, param in module.named_parameters():
                    if name.startswith("bias_"):
                        param[size : 2 * size] = value if name.startswith("bias_ih") else 0.0
                layers += module.num_layers * (2 if module.bidirectional else 1)
            elif isinstance(module, PeepholeLSTMCell):
                module.bias[module.hidden_size : 2 * module.hidden_size] = value
                layers += 1
    return layers


#: head kind -> model class; every class takes (cfg, vocab_size, num_outputs, stack builder).
HEAD_MODELS: dict[str, type[nn.Module]] = {
    "tagger": SequenceTagger,
    "classifier": SequenceClassifier,
    "conditioned_lm": ConditionedLM,
}


def build_head_model(kind: str, cfg: ModelConfig, vocab_size: int, num_outputs: int, where: str = "model") -> nn.Module:
    """Build the model of head ``kind``; ``num_outputs`` is the number of classes, or of conditions for ``conditioned_lm``."""
    model_class = HEAD_MODELS.get(kind)
    if model_class is None:
        raise ValueError(f"model head {kind!r} is not valid (choose {', '.join(HEAD_MODELS)})")
    builder = MODEL_REGISTRY.get(cfg.cell)
    if builder is None:
        raise ConfigError(f"{where}.cell: unknown cell {cfg.cell!r} (valid: {', '.join(MODEL_REGISTRY)})")
    if kind == "conditioned_lm" and cfg.direction != "uni":
        raise ConfigError(f"{where}.direction: a conditioned LM generates, so it must be 'uni' (got {cfg.direction!r})")
    if vocab_size < 1 or num_outputs < 1:
        raise ConfigError(f"{where}: vocab_size and the number of outputs must be >= 1 (got {vocab_size}, {num_outputs})")
    return model_class(cfg, vocab_size, num_outputs, builder)
