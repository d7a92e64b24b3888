"""Sampling from a causal LM: N sequences at once, one forward call per generated token.

Decisions (the issue left them open):

- Every sequence starts after an ``<eos>``: the corpora close each record (a line, a name, a piece) with
  ``<eos>``, so the token after one is a record start.  ``prime`` ids follow it (unless ``prime`` already starts
  with ``<eos>``); the returned lists hold the generated ids only, without the prime.
- A sequence stops at its first ``<eos>``, which is *not* included: a returned list shorter than ``max_length``
  ended with ``<eos>``.  ``eos_id=None`` never stops early (fixed-length samples, e.g. benchmarks).
- ``<pad>`` is never drawn (its logit is set to -inf); ``<unk>`` may be, as it occurs in the training data.
- Order of the filters: temperature, then the ``<pad>`` ban, then top-k, then top-p (nucleus) on what is left.
- Draws come from a private ``torch.Generator`` seeded with ``seed``: the same seed, model and arguments give
  the same samples, and the global RNG (the training loop's) is left untouched.
- A ``guide`` (optional) follows every row as it grows: it sees each id appended to each row (the context
  first, then every draw) and may ban ids for the next draw and end rows early; a row it ends stops there as
  if it had drawn ``<eos>``.  Music sampling uses one to forbid a note-on for a pitch already sounding and to
  bound a continuation in quarter notes (:mod:`pipeline.evaluation.guide`); without one nothing changes.
- On a CPU, the step loop runs with oneDNN (mkldnn) disabled: oneDNN's ``nn.LSTM`` pays a large fixed cost per
  call, which dominates when each call is a single time step (bench/bench_sampling.py, BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.errors import UserError
from pipeline.models.language_model import ensure_causal


class SamplingError(UserError, ValueError):
    """Invalid sampling arguments (temperature, top-k, top-p, prime ids, sizes)."""


class Guide(Protocol):
    """Follows the rows being sampled; see the module docstring."""

    def update(self, tokens: list[int], generated: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``tokens`` (N ids) were just appended to the rows (``generated``: drawn, not context); return the ids
        banned from the next draw, (N, V) bool, and the rows that are complete, (N,) bool (either may be None)."""
        ...


def sample(model: nn.Module, *, n: int, max_length: int, prime: Sequence[int] | None = None,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           eos_id: int | None = 2, pad_id: int | None = 0, seed: int | None = None,
           device: str | torch.device | None = None, guide: Guide | None = None) -> list[list[int]]:
    """Draw ``n`` sequences of at most ``max_length`` new ids from ``model``, batched (one forward per step).

    ``device`` is where the model's parameters live (None: look it up); the model is never moved, since moving
    a model mid-training would strand its optimizer state.  The model is put in eval mode for the duration and
    restored afterwards.  Raises :class:`NonCausalModelError` for a bidirectional model and
    :class:`SamplingError` for invalid arguments.
    """
    ensure_causal(model, "generate")
    vocab_size = int(model.vocab_size)
    _validate(n, max_length, temperature, top_k, top_p, eos_id, pad_id, vocab_size)
    if guide is not None and eos_id is None:
        raise SamplingError("a guide ends rows with <eos>: pass eos_id")
    context = _context(prime, eos_id, vocab_size)
    device = _model_device(model, device)
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _step_kernels(device):
            tokens = _generate(model, torch.tensor([context] * n, device=device), max_length,
                               dict(temperature=temperature, top_k=top_k, top_p=top_p, banned=pad_id),
                               eos_id, generator, guide)
    finally:
        model.train(was_training)
    return _trim(tokens, eos_id)


def _generate(model: nn.Module, context: Tensor, max_length: int, filters: dict, eos_id: int | None,
              generator: torch.Generator, guide: Guide | None = None) -> Tensor:
    """The step loop: context (N, P) -> generated ids (N, steps), steps <= max_length."""
    logits, state = model(context)  # the whole prime in one call: (N, P, V)
    finished = torch.zeros(context.shape[0], dtype=torch.bool, device=context.device)
    banned, ended = None, None  # the guide's verdicts on the rows so far, as tensors
    if guide is not None:
        for column in context.unbind(1):
            banned, ended = _verdicts(guide.update(column.tolist(), False), context.device)
    steps = []
    for _ in range(max_length):
        scores = logits[:, -1].float()  # (N, V)
        if banned is not None:
            scores = scores.masked_fill(banned, -math.inf)
        probs = torch.softmax(filter_logits(scores, **filters), dim=-1)  # (N, V)
        token = torch.multinomial(probs, 1, generator=generator)  # (N, 1)
        if ended is not None:  # a row the guide ended gets <eos>, so that _trim cuts it there
            token = token.masked_fill(ended.unsqueeze(1), eos_id)
        steps.append(token)
        if eos_id is not None:
            finished |= token.squeeze(1) == eos_id
            if bool(finished.all()):
                break
        if guide is not None:
            banned, ended = _verdicts(guide.update(token.squeeze(1).tolist(), True), context.device)
            if ended is not None and bool((finished | ended).all()):
                break
        logits, state = model(token, state)  # (N, 1, V)
    return torch.cat(steps, dim=1)


def _verdicts(verdicts: tuple[np.ndarray | None, np.ndarray | None], device: torch.device) -> tuple[Tensor | None, ...]:
    return tuple(None if v is None else torch.from_numpy(np.asarray(v, dtype=bool)).to(device) for v in verdicts)


def _trim(tokens: Tensor, eos_id: int | None) -> list[list[int]]:
    """Cut each row before its first ``<eos>``."""
    rows = tokens.cpu().tolist()
    if eos_id is None:
        return rows
    return [row[: row.index(eos_id)] if eos_id in row else row for row in rows]


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  banned: int | None = None) -> Tensor:
    """Temperature, ban, top-k and top-p on logits (N, V); filtered-out entries become -inf.  Returns a new tensor."""
    logits = logits / temperature
    if banned is not None:
        logits[:, banned] = -math.inf
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p: drop a token once the mass before it does.
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        drop[:, 0] = False  # the most likely token always stays
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -math.inf))
    return logits


def _context(prime: Sequence[int] | None, eos_id: int | None, vocab_size: int) -> list[int]:
    prime = list(prime or [])
    for i, token in enumerate(prime):
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise SamplingError(f"prime[{i}]: {token!r} is not a token id of this model (0..{vocab_size - 1})")
    if eos_id is not None and (not prime or prime[0] != eos_id):
        prime.insert(0, eos_id)
    if not prime:
        raise SamplingError("with eos_id=None there is no start token: pass a prime (a list of ids)")
    return prime


def _validate(n: int, max_length: int, temperature: float, top_k: int | None, top_p: float | None,
              eos_id: int | None, pad_id: int | None, vocab_size: int) -> None:
    if n < 1 or max_length < 1:
        raise SamplingError(f"n and max_length must be >= 1, got n={n}, max_length={max_length}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise SamplingError(f"temperature must be a number > 0, got {temperature!r} (use top_k=1 for greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise SamplingError(f"top_k must be an integer >= 1 or null, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise SamplingError(f"top_p must be in (0, 1] or null, got {top_p!r}")
    for name, token in (("eos_id", eos_id), ("pad_id", pad_id)):
        if token is not None and not 0 <= token < vocab_size:
            raise SamplingError(f"{name} {token} is outside the vocabulary (0..{vocab_size - 1})")
    if pad_id is not None and vocab_size < 2:
        raise SamplingError("the vocabulary holds only <pad>: nothing to sample")


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    actual = next(model.parameters()).device
    if device is not None and torch.device(device) != actual:
        # Compare loosely: "cuda" names the current GPU, which the parameters report as "cuda:0".
        wanted = torch.device(device)
        if wanted.type != actual.type or (wanted.index is not None and wanted.index != actual.index):
            raise SamplingError(f"the model is on {actual} but device={str(device)!r}: move the model first")
    return actual


def _step_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On a CPU, disable oneDNN for the one-token-per-call loop (its per-call overhead dominates there)."""
    return onednn_enabled(False) if device.type == "cpu" else contextlib.nullcontext()


@contextlib.contextmanager
def onednn_enabled(enabled: bool) -> Iterator[None]:
    """Switch oneDNN (mkldnn) kernels on or off for a block, touching no other backend flag.

    ``torch.backends.mkldnn.flags()`` also resets the deterministic/TF32/precision flags (and warns about TF32);
    this changes ``enabled`` only.  The flag is process-wide, so it also affects other threads meanwhile
    (their speed, not their results).
    """
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous
