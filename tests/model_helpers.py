"""Tiny models shared by the model, checkpoint and sampling tests (sizes chosen so every test runs in ms)."""

from __future__ import annotations

import itertools

import torch

from pipeline.config import ModelConfig
from pipeline.models import MODEL_REGISTRY, BiLogits, SequenceModel, build_model

VOCAB = 13
#: (cell, nonlinearity): every registry key (a cell registered later joins every grid test), plus the relu
#: variant of the basic RNN.
CELLS = [(cell, "tanh") for cell in MODEL_REGISTRY] + [("rnn", "relu")]
CELL_IDS = [cell if nl == "tanh" else f"{cell}-{nl}" for cell, nl in CELLS]
GRID = list(itertools.product(CELLS, ["uni", "bi"], [1, 2]))
GRID_IDS = [f"{cid}-{d}-{n}L" for cid, (d, n) in itertools.product(CELL_IDS, itertools.product(["uni", "bi"], [1, 2]))]


def tiny_model(cell: str = "lstm", direction: str = "uni", num_layers: int = 1, nonlinearity: str = "tanh",
               seed: int = 0, **overrides) -> SequenceModel:
    torch.manual_seed(seed)
    fields = dict(cell=cell, nonlinearity=nonlinearity, embedding_size=6, hidden_size=8, num_layers=num_layers,
                  direction=direction)
    fields.update(overrides)
    return build_model(ModelConfig(**fields), VOCAB)


def random_ids(batch: int = 3, length: int = 7, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=generator)


def logit_tensors(logits) -> list[torch.Tensor]:
    """The (B, T, V) tensors a model returned: one for a causal model, forward and backward for a bidirectional one."""
    return list(logits) if isinstance(logits, BiLogits) else [logits]
