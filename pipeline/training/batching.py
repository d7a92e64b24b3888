"""Training batches with a resumable position: ``(epoch, batches already taken in that epoch)``.

``stream`` mode (text, music): the split is cut once into ``batch_size`` parallel streams and every epoch
walks them in windows of ``bptt`` tokens; the loop carries the model state from one window to the next
(detached: truncated backprop through time).  ``records`` mode (short records such as names): the split is
split on ``<eos>`` and every epoch shuffles the records with a generator seeded by ``(seed, epoch)``, so
the order of any epoch can be rebuilt on resume without saving it; each batch starts from a zero state.
``windows`` mode (nanoGPT's batches): every row is ``bptt`` tokens from a random offset of the split, drawn by a
generator seeded by ``(seed, epoch)``, and starts from a zero state; an epoch is as many tokens as the split.
A model trained so is scored the same way (consecutive windows, each from a zero state: see
:func:`pipeline.evaluation.scoring.evaluate_split`), which is what a window-based figure measures.

With ``world_size`` > 1 (DDP, see :mod:`.distributed`) ``batch_size`` stays the global batch and rank ``rank``
takes its share of every batch: rows ``[rank*b, (rank+1)*b)`` of the streams (``b = batch_size / world_size``),
or every ``world_size``-th record of the shuffled global batch; a last records batch too small to give every
rank a record is dropped, so that every rank takes the same number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.data.windows import (
    EOS_ID,
    PAD_ID,
    Batch,
    num_windows,
    record_batch,
    split_records,
    stream_windows,
    to_streams,
)
from pipeline.errors import UserError


class DataTooSmallError(UserError, ValueError):
    """A split too short for the batch size (and window) asked for."""


MODES = ("stream", "records", "windows")


class TrainBatches:
    """The batches of one training split; :meth:`epoch` yields them from any position."""

    def __init__(self, ids: np.ndarray, mode: str, batch_size: int, bptt: int, seed: int = 0,
                 pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"batching mode {mode!r} is not valid (choose {', '.join(MODES)})")
        self.mode, self.batch_size, self.bptt, self.seed = mode, batch_size, bptt, seed
        self.pin_memory, self.rank, self.world_size = pin_memory, rank, world_size
        if mode == "stream":
            if len(ids) < batch_size * 2:
                raise DataTooSmallError(
                    f"the training split has {len(ids)} tokens, too few for batch_size {batch_size} (lower train.batch_size)")
            self.streams = to_streams(ids, batch_size, pad_tail=False)
            if world_size > 1:  # this rank's rows of the global batch
                rows = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
                self.streams = type(self.streams)(*(t[rows].contiguous() for t in self.streams))
            # For a GPU: every window laid out contiguously in page-locked memory once, so that each step's copy
            # is a true asynchronous DMA (non_blocking).  A window of the (B, L) streams is a strided view, and
            # copying a strided or pageable tensor makes the host wait for the GPU at every step.
            self.pinned = [Batch(*(t.contiguous().pin_memory() for t in w[:3])) for w in
                           stream_windows(self.streams, bptt)] if pin_memory else None
        elif mode == "windows":
            self.flat = np.concatenate([[EOS_ID], np.asarray(ids, dtype=np.int64)])
            self.before = np.concatenate([[PAD_ID], self.flat[:-1]])  # before[i] is the token before flat[i]
            if len(self.flat) < bptt + 2:
                raise DataTooSmallError(f"the training split has {len(ids)} tokens, fewer than one window of bptt "
                                        f"{bptt} (lower train.bptt)")
        else:
            self.records = split_records(ids)
            if not self.records:
                raise DataTooSmallError("the training split has no records (no <eos>-closed sequence)")

    @property
    def carries_state(self) -> bool:
        """Whether the model state flows from one batch to the next (streams) or restarts (records)."""
        return self.mode == "stream"

    def __len__(self) -> int:
        if self.mode == "stream":
            return num_windows(self.streams, self.bptt)
        if self.mode == "windows":
            return max(1, (len(self.flat) - 1) // (self.batch_size * self.bptt))
        if self.world_size > 1 and len(self.records) % self.batch_size < self.world_size:
            return len(self.records) // self.batch_size  # a last batch without a record for every rank is dropped
        return math.ceil(len(self.records) / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based), skipping the first ``start``."""
        if self.mode == "stream":
            yield from self.pinned[start:] if self.pinned is not None else stream_windows(self.streams, self.bptt, start)
            return
        if self.mode == "windows":
            yield from self._random_windows(epoch, start)
            return
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.records))
        for index in range(start, len(self)):
            chosen = order[index * self.batch_size : (index + 1) * self.batch_size][self.rank :: self.world_size]
            batch = record_batch([self.records[i] for i in chosen], self.bptt)
            yield batch.pin_memory() if self.pin_memory else batch

    def _random_windows(self, epoch: int, start: int) -> Iterator[Batch]:
        """Windows mode: row i of batch k starts at ``offsets[k, i]``, drawn for the whole epoch at once."""
        rng = np.random.default_rng([self.seed, epoch])
        offsets = rng.integers(0, len(self.flat) - self.bptt - 1, size=(len(self), self.batch_size))
        rows = slice(self.rank * self.batch_size // self.world_size, (self.rank + 1) * self.batch_size // self.world_size)
        span = np.arange(self.bptt)
        for index in range(start, len(self)):
            at = offsets[index, rows][:, None] + span  # (B, T) positions in flat
            batch = Batch(*(torch.from_numpy(a) for a in (self.flat[at], self.flat[at + 1], self.before[at])))
            yield batch.pin_memory() if self.pin_memory else batch

    def tokens_per_epoch(self) -> int:
        if self.mode == "stream":
            return int(self.streams.inputs.numel())
        if self.mode == "windows":
            return len(self) * self.batch_size * self.bptt
        return sum(len(r) for r in self.records)
