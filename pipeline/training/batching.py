"""Training batches with a resumable position: ``(epoch, batches already taken in that epoch)``.

``stream`` mode (text, music): the split is cut once into ``batch_size`` parallel streams and every epoch
walks them in windows of ``bptt`` tokens; the loop carries the model state from one window to the next
(detached: truncated backprop through time).  ``records`` mode (short records such as names): the split is
split on ``<eos>`` and every epoch shuffles the records with a generator seeded by ``(seed, epoch)``, so
the order of any epoch can be rebuilt on resume without saving it; each batch starts from a zero state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from pipeline.errors import UserError
from pipeline.evaluation.windows import Batch, num_windows, record_batch, split_records, stream_windows, to_streams


class DataTooSmallError(UserError, ValueError):
    """A split too short for the batch size (and window) asked for."""


class TrainBatches:
    """The batches of one training split; :meth:`epoch` yields them from any position."""

    def __init__(self, ids: np.ndarray, mode: str, batch_size: int, bptt: int, seed: int = 0,
                 pin_memory: bool = False) -> None:
        if mode not in ("stream", "records"):
            raise ValueError(f"batching mode {mode!r} is not valid (choose stream or records)")
        self.mode, self.batch_size, self.bptt, self.seed = mode, batch_size, bptt, seed
        self.pin_memory = pin_memory
        if mode == "stream":
            if len(ids) < batch_size * 2:
                raise DataTooSmallError(
                    f"the training split has {len(ids)} tokens, too few for batch_size {batch_size} (lower train.batch_size)")
            self.streams = to_streams(ids, batch_size, pad_tail=False)
            # For a GPU: every window laid out contiguously in page-locked memory once, so that each step's copy
            # is a true asynchronous DMA (non_blocking).  A window of the (B, L) streams is a strided view, and
            # copying a strided or pageable tensor makes the host wait for the GPU at every step.
            self.pinned = [Batch(*(t.contiguous().pin_memory() for t in w[:3])) for w in
                           stream_windows(self.streams, bptt)] if pin_memory else None
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
        return math.ceil(len(self.records) / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (0-based), skipping the first ``start``."""
        if self.mode == "stream":
            yield from self.pinned[start:] if self.pinned is not None else stream_windows(self.streams, self.bptt, start)
            return
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.records))
        for index in range(start, len(self)):
            chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
            batch = record_batch([self.records[i] for i in chosen], self.bptt)
            yield batch.pin_memory() if self.pin_memory else batch

    def tokens_per_epoch(self) -> int:
        if self.mode == "stream":
            return int(self.streams.inputs.numel())
        return sum(len(r) for r in self.records)
