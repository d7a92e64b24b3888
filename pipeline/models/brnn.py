"""The standard concatenated bidirectional RNN (Schuster & Paliwal), over any cell of the registry.

Layer l runs a forward and a backward single-layer stack over its input and concatenates their
activations, [a→<t>; a←<t>] (B, T, 2H), which is the input of layer l + 1 (as ``nn.LSTM(bidirectional=True)``
does).  Every output position therefore sees the whole sequence: right for a tagger or a classifier,
wrong for a next-token LM (it would see the answer; the LM's ``direction: bi`` is the ELMo-style
:class:`pipeline.models.BidirectionalLM` instead, whose two stacks never mix).

With ``lengths`` the backward direction reverses each row within its real length, so it starts at the
row's last real token rather than at the right padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from pipeline.config import ModelConfig
from pipeline.models.language_model import _gather_time, _reversal_index


class BidirectionalStack(nn.Module):
    """``cfg.num_layers`` bidirectional layers of ``cfg.cell``; (B, T, E) -> (B, T, 2H)."""

    def __init__(self, cfg: ModelConfig, builder: Callable[[ModelConfig], nn.Module]) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        self.forward_layers, self.backward_layers = nn.ModuleList(), nn.ModuleList()
        for depth in range(cfg.num_layers):
            size = cfg.embedding_size if depth == 0 else 2 * cfg.hidden_size
            layer_cfg = dataclasses.replace(cfg, embedding_size=size, num_layers=1, dropout=0.0)
            self.forward_layers.append(builder(layer_cfg))
            self.backward_layers.append(builder(layer_cfg))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, E) -> concatenated activations of the top layer (B, T, 2H)."""
        order = _reversal_index(x[..., 0], lengths)  # (B, T), None: flip whole rows
        for depth, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers, strict=True)):
            if depth > 0:
                x = self.dropout(x)  # between layers only, as torch's stacks do
            ahead, _ = fwd(x)  # (B, T, H)
            behind, _ = bwd(_gather_time(x, order))  # (B, T, H) in reversed time
            x = torch.cat([ahead, _gather_time(behind, order)], dim=-1)  # (B, T, 2H); the reversal is its own inverse
        return x
