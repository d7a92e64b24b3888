"""Training batches with a resumable position: ``(epoch, batches already taken in that epoch)``.

``stream`` mode (text, music): the split is cut once into ``batch_size`` parallel streams and every epoch
walks them in windows of ``bptt`` tokens; the loop carries the model state from one window to the next
(detached: truncated backprop through time).  ``records`` mode (short records such as names): the split is
split on ``<eos>`` and every epoch shuffles the records with a generator seeded by ``(seed, epoch)``, so
the order of any epoch can be rebuilt on resume without saving it; each batch starts from a zero state.
``windows`` mode (nanoGPT's batches): every row is ``bptt`` tokens from a random offset of the split, drawn by a
generator seeded by ``(seed, epoch)``, and starts from a zero state; an epoch is as many tokens as the split.
A model trained so is scored the same way (consecutive windows, each from a zero state: see
:func:`pipeline.models.scoring.evaluate_split`), which is what a window-based figure measures.

The split is read where it lies (the memory map :func:`pipeline.files.read_tokens` returns): every batch is
gathered from it when it is taken (:func:`pipeline.data.windows.gather`) and only the batch becomes int64;
records mode keeps each record's bounds (16 bytes a record), not the records.  On a GPU each batch is copied
into page-locked memory as it is taken, so its host-to-device copy can run asynchronously.

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
    Batch,
    Streams,
    gather,
    num_windows,
    record_batch,
    record_bounds,
    records_from,
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
        self.ids = ids  # read where it lies (a memory map): every batch is gathered from it, see windows.gather
        if mode == "stream":
            if len(ids) < batch_size * 2:
                raise DataTooSmallError(
                    f"the training split has {len(ids)} tokens, too few for batch_size {batch_size} "
                    "(lower batch_size in train.defaults or the run's overrides)")
            self.streams: Streams = to_streams(ids, batch_size, pad_tail=False)
            if world_size > 1:  # this rank's rows of the global batch
                self.streams = self.streams.rows(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        elif mode == "windows":
            if len(ids) + 1 < bptt + 2:
                raise DataTooSmallError(f"the training split has {len(ids)} tokens, fewer than one window of bptt "
                                        f"{bptt} (lower bptt in train.defaults or the run's overrides)")
        else:
            self.starts, self.ends = record_bounds(ids)
            if not len(self.starts):
                raise DataTooSmallError("the training split has no records (no <eos>-closed sequence)")

    @property
    def carries_state(self) -> bool:
        """Whether the model state flows from one batch to the next (streams) or restarts (records)."""
        return self.mode == "stream"

    def __len__(self) -> int:
        if self.mode == "stream":
            return num_windows(self.streams, self.bptt)
        if self.mode == "windows":
            return max(1, len(self.ids) // (self.batch_size * self.bptt))
        if self.world_size > 1 and len(self.starts) % self.batch_size < self.world_size:
            return len(self.starts) // self.batch_size  # a last batch without a record for every rank is dropped
        return math.ceil(len(self.starts) / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based), skipping the first ``start``."""
        if self.mode == "stream":
            for batch in stream_windows(self.streams, self.bptt, start):
                # pinned (page-locked) memory makes the step's host-to-GPU copy asynchronous (non_blocking)
                yield batch.pin_memory() if self.pin_memory else batch
            return
        if self.mode == "windows":
            yield from self._random_windows(epoch, start)
            return
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.starts))
        for index in range(start, len(self)):
            chosen = order[index * self.batch_size : (index + 1) * self.batch_size][self.rank :: self.world_size]
            batch = record_batch(records_from(self.ids, self.starts, self.ends, chosen), self.bptt)
            yield batch.pin_memory() if self.pin_memory else batch

    def _random_windows(self, epoch: int, start: int) -> Iterator[Batch]:
        """Windows mode: row i of batch k starts at ``offsets[k, i]``, drawn for the whole epoch at once."""
        rng = np.random.default_rng([self.seed, epoch])
        # positions in flat = <eos> + ids, as stream lanes number them
        offsets = rng.integers(0, len(self.ids) + 1 - self.bptt - 1, size=(len(self), self.batch_size))
        rows = slice(self.rank * self.batch_size // self.world_size, (self.rank + 1) * self.batch_size // self.world_size)
        span = np.arange(-1, self.bptt + 1)
        for index in range(start, len(self)):
            slab = gather(self.ids, offsets[index, rows][:, None] + span)  # (B, T + 2): before, inputs, after
            inputs, targets, prev = slab[:, 1:-1], slab[:, 2:], slab[:, :-2]
            batch = Batch(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (inputs, targets, prev)))
            yield batch.pin_memory() if self.pin_memory else batch

    def tokens_per_epoch(self) -> int:
        if self.mode == "stream":
            return self.streams.numel()
        if self.mode == "windows":
            return len(self) * self.batch_size * self.bptt
        return int((self.ends - self.starts).sum())
