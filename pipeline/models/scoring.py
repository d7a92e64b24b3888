"""Held-out NLL of a model on one id array, by the training objective (:mod:`.objective`): the measure that
validation during training and the evaluate stage share.

* :func:`evaluate_split`: mean NLL per predicted token, perplexity and bits per token over a whole split.
  Streams are evaluated with the state carried across windows, so every token is scored with all the
  context before it (for the backward direction of a bidirectional model the context ends at the window,
  ``eval_bptt`` tokens, since carrying that state would need the future).
* :func:`evaluate_windows`: nanoGPT's protocol, mean NLL over random windows with the state reset per window.
* :func:`token_log_probs`: the terms of :func:`evaluate_split`'s sum one by one, each with the index of its token in
  the split, for mixing a model with another one (:mod:`pipeline.evaluation.mixture`).

All sums stay on the device as tensors; nothing here calls ``.item()`` except the final summaries.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.data.windows import (
    PAD_ID,
    record_batch,
    record_bounds,
    records_from,
    sample_streams,
    stream_windows,
    to_streams,
)
from pipeline.errors import UserError
from pipeline.figures import nll_figures, summarize
from pipeline.models.objective import batch_loss, directions, next_token_log_probs, next_token_loss


class WindowsTooLongError(UserError, ValueError):
    """``evaluate.windows.length`` does not fit in a split."""


@torch.no_grad()
def evaluate_split(model: nn.Module, ids: np.ndarray, *, mode: str = "stream", batch_size: int = 1,
                   bptt: int = 256, device: str | torch.device = "cpu", pad_id: int = PAD_ID,
                   sample_tokens: int | None = None, seed: int = 0) -> dict[str, float]:
    """Score a whole split; ``mode`` is ``stream`` (state carried across windows of ``bptt``), ``windows``
    (consecutive windows of ``bptt``, each from a zero state, as a ``windows``-trained model is used) or ``records``.
    ``batch_size`` is the number of parallel lanes (streams) or records per batch.

    ``sample_tokens``: a split longer than that is scored on a fixed sample of about that many tokens (seeded by
    ``seed``): ``batch_size`` lanes at seeded places for streams and windows, a seeded run of whole records for
    records (what validation during training scores on a large corpus).

    Returns ``loss`` (mean NLL per predicted token, nats), ``perplexity``, ``bits_per_token``, ``tokens``,
    and the same per direction (``forward_loss``, ``backward_perplexity``, ...) for bidirectional models.
    ``<eos>`` is predicted and counted, ``<pad>`` never.  The model is left in the mode it came in.
    """
    was_training = model.training
    model.eval()
    try:
        batches = _eval_batches(ids, mode, batch_size, bptt, pad_id, sample_tokens, seed)
        sums, counts = _accumulate(model, batches, device, pad_id, carry=mode == "stream")  # windows: no carry
    finally:
        model.train(was_training)
    return summarize(sums.tolist(), counts.tolist(), directions(model))


def _eval_batches(ids: np.ndarray, mode: str, batch_size: int, bptt: int, pad_id: int,
                  sample_tokens: int | None = None, seed: int = 0):
    sampled = sample_tokens is not None and len(ids) > sample_tokens
    if mode in ("stream", "windows"):
        if sampled:
            return stream_windows(sample_streams(ids, batch_size, sample_tokens, seed, pad_id=pad_id), bptt)
        batch_size = max(1, min(batch_size, len(ids) // max(bptt, 1)))  # no all-padding streams on a short split
        return stream_windows(to_streams(ids, batch_size, pad_tail=True, pad_id=pad_id), bptt)
    if mode == "records":
        starts, ends = record_bounds(ids)
        chosen = np.arange(len(starts))
        if sampled:  # the records that start inside a seeded stretch of sample_tokens tokens
            offset = np.random.default_rng(seed).integers(0, len(ids) - sample_tokens + 1)
            chosen = chosen[(starts >= offset) & (starts < offset + sample_tokens)]
        return (record_batch(records_from(ids, starts, ends, chosen[i : i + batch_size]), bptt, pad_id)
                for i in range(0, len(chosen), batch_size))
    raise ValueError(f"evaluation mode {mode!r} is not valid (choose stream, windows or records)")


def _accumulate(model: nn.Module, batches, device, pad_id: int, carry: bool) -> tuple[Tensor, Tensor]:
    n = len(directions(model))
    sums = torch.zeros(n, dtype=torch.float64, device=device)
    counts = torch.zeros(n, dtype=torch.int64, device=device)
    state = None
    for batch in batches:
        loss = batch_loss(model, batch.to(device), state if carry else None, pad_id)
        sums += loss.sums.double()
        counts += loss.counts
        state = loss.state
    return sums, counts


@torch.no_grad()
def token_log_probs(model: nn.Module, ids: np.ndarray, *, mode: str = "stream", batch_size: int = 1,
                    bptt: int = 256, device: str | torch.device = "cpu",
                    pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
    """log P(token) of every token :func:`evaluate_split` scores with the same arguments (a causal model), and
    where each token is in ``ids``: ``(positions, log_probs)``, int64 and float64, in the order of ``positions``.

    ``-log_probs.sum()`` is :func:`evaluate_split`'s summed NLL.  Stream and window modes score every token;
    ``records`` scores each record's first ``bptt`` tokens, as there.
    """
    was_training = model.training
    model.eval()
    try:
        if mode in ("stream", "windows"):
            rows = max(1, min(batch_size, len(ids) // max(bptt, 1)))
            state, columns, keeps = None, [], []
            for batch in stream_windows(to_streams(ids, rows, pad_tail=True, pad_id=pad_id), bptt):
                log_probs, state = next_token_log_probs(model, batch.inputs.to(device), batch.targets.to(device),
                                                        state if mode == "stream" else None, pad_id)
                columns.append(log_probs.double().cpu())
                keeps.append(batch.targets != pad_id)
            # Stream r holds tokens r*L .. r*L+L-1 of <eos> + ids, and predicts the next one: position r*L + c of ids.
            grid = torch.cat(columns, dim=1)  # (B, L)
            positions = torch.arange(grid.numel()).view(grid.shape)
            keep = torch.cat(keeps, dim=1)
        elif mode == "records":
            starts, ends = record_bounds(ids)
            grids, places, keeps = [], [], []
            for first in range(0, len(starts), batch_size):
                chosen = np.arange(first, min(first + batch_size, len(starts)))
                batch = record_batch(records_from(ids, starts, ends, chosen), bptt, pad_id)
                log_probs, _ = next_token_log_probs(model, batch.inputs.to(device), batch.targets.to(device), None,
                                                    pad_id)
                width = batch.targets.shape[1]
                offsets = torch.from_numpy(starts[chosen])
                grids.append(log_probs.double().cpu().reshape(-1))
                places.append((offsets[:, None] + torch.arange(width)).reshape(-1))
                keeps.append((batch.targets != pad_id).reshape(-1))
            grid, positions, keep = torch.cat(grids), torch.cat(places), torch.cat(keeps)
        else:
            raise ValueError(f"evaluation mode {mode!r} is not valid (choose stream, windows or records)")
    finally:
        model.train(was_training)
    return positions[keep].numpy().astype(np.int64), grid[keep].numpy()


@torch.no_grad()
def evaluate_windows(model: nn.Module, ids: np.ndarray, *, length: int, count: int, batch_size: int = 64,
                     seed: int = 1337, device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean NLL over ``count`` random windows of ``length`` predictions each, the state reset per window.

    This is nanoGPT's ``estimate_loss`` protocol (``x = data[i:i+block]``, ``y = data[i+1:i+1+block]``,
    ``i`` uniform): every position of a window is scored, so early positions see little context.  It is
    reported beside the whole-split figure only to compare with models measured that way; the start
    positions come from a generator seeded by ``seed``, so two models are scored on the same windows.
    """
    if len(ids) <= length + 1:
        raise WindowsTooLongError(f"a split of {len(ids)} tokens is too short for windows of {length}: "
                                  "lower evaluate.windows.length")
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, size=count)  # nanoGPT's randint range
    offsets = np.arange(length)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for first in range(0, count, batch_size):
            rows = starts[first : first + batch_size, None] + offsets  # (b, length)
            inputs = torch.from_numpy(ids[rows].astype(np.int64)).to(device)  # gathered from the map, then int64
            targets = torch.from_numpy(ids[rows + 1].astype(np.int64)).to(device)
            nll, _, _ = next_token_loss(model, inputs, targets, None, pad_id=-1)
            total += nll.double()
    finally:
        model.train(was_training)
    figures = nll_figures("", float(total) / (count * length))
    figures["tokens"] = count * length
    return figures

