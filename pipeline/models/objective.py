"""The language-model objective: the loss one batch contributes, for training and for scoring alike.

* :func:`next_token_loss`: the causal LM loss (summed NLL and the number of predicted tokens, ``<pad>``
  ignored).  A model that sees the future (``causal = False``) is refused with ``NonCausalModelError``:
  a bidirectional RNN trained as a next-token model just copies the answer it can see.
* :func:`next_token_log_probs`: the same loss's per-token terms, log P(target) at every position.
* :func:`bidirectional_loss`: the ELMo-style objective, forward direction predicting x<t+1> and backward
  direction predicting x<t-1>, reported per direction.
* :func:`batch_loss`: picks one of the two from ``model.causal``; the training loop's single entry point.

A batch is anything shaped like :class:`pipeline.data.windows.Batch` (:class:`TokenBatch`): models never
know where the ids came from.  All sums stay on the device as tensors; nothing here calls ``.item()``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models import AdaptiveSoftmax, BiLogits, ensure_causal

FORWARD, BACKWARD = "forward", "backward"
PAD_ID = 0  # the id every vocabulary gives <pad> (pipeline.vocab.PAD_ID); models never import the vocabulary


class TokenBatch(Protocol):
    """What the objective reads from a batch (:class:`pipeline.data.windows.Batch` provides it)."""

    inputs: Tensor  # (B, T)
    targets: Tensor  # (B, T) the token after each input (<pad>: none)
    prev_targets: Tensor  # (B, T) the token before each input (<pad>: none)
    lengths: Tensor | None  # (B,) real lengths of right-padded rows; None: no padding


class BatchLoss(NamedTuple):
    """What one batch contributes: the objective to backpropagate and per-direction sums."""

    objective: Tensor  # () mean NLL (bidirectional: mean of the two directions' means)
    sums: Tensor  # (D,) summed NLL per direction, detached
    counts: Tensor  # (D,) predicted tokens per direction
    state: Any  # the model's carried state after the batch


def directions(model: nn.Module) -> tuple[str, ...]:
    """The directions a model's loss reports: ("forward",) or ("forward", "backward")."""
    return (FORWARD,) if getattr(model, "causal", True) else (FORWARD, BACKWARD)


def _nll_sum(logits: Tensor, targets: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    # Cross-entropy runs in float32 even under bf16 autocast (autocast promotes it), which keeps
    # the log-softmax of a large vocabulary accurate.
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                            ignore_index=pad_id, reduction="sum")  # ()
    return total, (targets != pad_id).sum()


def next_token_loss(model: nn.Module, inputs: Tensor, targets: Tensor, state: Any = None,
                    pad_id: int = PAD_ID) -> tuple[Tensor, Tensor, Any]:
    """Summed NLL of ``targets`` (B, T) given ``inputs`` (B, T); returns (sum, count, state)."""
    ensure_causal(model, "be trained or evaluated as a next-token model")
    if isinstance(getattr(model, "output", None), AdaptiveSoftmax):  # never builds the (B, T, V) scores
        hidden, state = model.features(inputs, state)
        total, count = model.output.nll_sum(hidden, targets, pad_id)
        return total, count, state
    logits, state = model(inputs, state)  # (B, T, V)
    total, count = _nll_sum(logits, targets, pad_id)
    return total, count, state


def next_token_log_probs(model: nn.Module, inputs: Tensor, targets: Tensor, state: Any = None,
                         pad_id: int = PAD_ID) -> tuple[Tensor, Any]:
    """log P(target) at every position of ``targets`` (B, T), float32, 0 where the target is ``<pad>``; and the
    state.  The per-token terms whose negated sum :func:`next_token_loss` returns (for mixing with other models)."""
    ensure_causal(model, "be scored token by token as a next-token model")
    keep = targets != pad_id
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))  # (B, T)
    if isinstance(getattr(model, "output", None), AdaptiveSoftmax):
        hidden, state = model.features(inputs, state)
        with torch.autocast(hidden.device.type, enabled=False):
            out = model.output.adaptive(hidden.reshape(-1, hidden.shape[-1]).float(), safe_targets.reshape(-1))
        log_probs = out.output.view(targets.shape)
    else:
        logits, state = model(inputs, state)  # (B, T, V)
        log_probs = logits.float().log_softmax(-1).gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    return log_probs * keep, state


def bidirectional_loss(model: nn.Module, batch: TokenBatch, state: Any = None,
                       pad_id: int = PAD_ID) -> tuple[Tensor, Tensor, Any]:
    """Per-direction summed NLL (2,), counts (2,) and the forward stack's state for a bidirectional LM."""
    logits, state = model(batch.inputs, state, lengths=batch.lengths)
    if not isinstance(logits, BiLogits):
        raise TypeError(f"{type(model).__name__} is not bidirectional: it returned {type(logits).__name__}")
    fwd_sum, fwd_count = _nll_sum(logits.forward, batch.targets, pad_id)
    bwd_sum, bwd_count = _nll_sum(logits.backward, batch.prev_targets, pad_id)
    return torch.stack([fwd_sum, bwd_sum]), torch.stack([fwd_count, bwd_count]), state


def batch_loss(model: nn.Module, batch: TokenBatch, state: Any = None, pad_id: int = PAD_ID) -> BatchLoss:
    """The training objective for one batch: next-token for causal models, both directions otherwise."""
    if getattr(model, "causal", True):
        total, count, state = next_token_loss(model, batch.inputs, batch.targets, state, pad_id)
        sums, counts = total.unsqueeze(0), count.unsqueeze(0)
    else:
        sums, counts, state = bidirectional_loss(model, batch, state, pad_id)
    means = sums / counts.clamp_min(1)  # (D,)
    return BatchLoss(means.mean(), sums.detach(), counts, state)
