"""The adaptive softmax output layer (Grave et al. 2017) behind ``model.softmax: adaptive``.

A full softmax over a 10,000-word vocabulary costs ``2 x H x V`` FLOPs per token forward, more than a
2-layer LSTM of width 256 itself.  ``torch.nn.AdaptiveLogSoftmaxWithLoss`` scores the frequent words (ids
below ``cutoffs[0]``; the tokenizer numbers words by frequency) plus one logit per tail cluster in a small
head, and only the tokens whose target falls in a tail pay for that tail's narrower projection.  The result
is still an exact, normalised distribution over the whole vocabulary, so perplexities stay comparable.

The head runs in float32 with autocast off: torch's module writes its per-cluster log-probabilities into
one float32 buffer and refuses bf16 sources (and a bf16 log-softmax would cost ~0.01 nats per token).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AdaptiveSoftmax(nn.Module):
    """hidden (B, T, H) -> log-probabilities (B, T, V); :meth:`nll_sum` is the cheap training path."""

    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: tuple[int, ...], div_value: float) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, list(cutoffs), div_value=div_value)

    @property
    def weight(self) -> Tensor:
        """The head's weight: what callers read for the parameter dtype and device."""
        return self.adaptive.head.weight

    def forward(self, hidden: Tensor) -> Tensor:
        """Log-probabilities over the whole vocabulary (for sampling and anything that needs every id)."""
        shape = hidden.shape[:-1]
        with torch.autocast(hidden.device.type, enabled=False):
            log_probs = self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1]).float())  # (N, V)
        return log_probs.view(*shape, self.vocab_size)

    def nll_sum(self, hidden: Tensor, targets: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
        """Summed NLL of ``targets`` (B, T) and the number of non-pad targets, each a 0-d tensor."""
        flat_targets = targets.reshape(-1)
        keep = flat_targets != pad_id
        # Pad positions are scored as id 0 (in the head) and then zeroed: no data-dependent shape, no host sync.
        safe_targets = torch.where(keep, flat_targets, torch.zeros_like(flat_targets))
        with torch.autocast(hidden.device.type, enabled=False):
            out = self.adaptive(hidden.reshape(-1, hidden.shape[-1]).float(), safe_targets)
        return -(out.output * keep).sum(), keep.sum()
