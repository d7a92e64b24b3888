"""How a flat id array becomes model batches: parallel streams cut into windows, or padded records.

Both the training loop and the whole-split evaluation use these, so the two agree on which token each
position predicts.  Every batch carries, for every input position t, the token that follows it
(``targets``, what a causal/forward model predicts) and the token that precedes it (``prev_targets``, what
the backward half of a bidirectional LM predicts); positions with nothing to predict hold ``<pad>``, which
every loss ignores.

The split is read where it lies: ``ids`` is usually the read-only memory map of a ``.npy`` token file in its
stored dtype (:func:`pipeline.files.read_tokens`), and every batch is gathered from it when it is needed
(:func:`gather`); only the batch becomes int64.  Nothing here copies a whole split, so memory grows with the
batch, never with the corpus (nanoGPT's and fairseq's data loaders work the same way).

Streams: the split is read as ``<eos> + ids`` (every record is closed by ``<eos>``, so this is the context
the first record would have had) and cut into B lanes of contiguous positions; the next/previous token of a
position is looked up in the whole flat array, so no token loses its target at a lane boundary: every token
of the split is predicted exactly once per direction.  A lane may also start anywhere
(:func:`sample_streams`: a fixed sample of a long split, for validation during training).

Records (short sequences such as names): each record is ``<eos> r0 ... <eos>``, right-padded to the
longest in its batch; ``lengths`` lets a bidirectional model reverse each row within its real length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

PAD_ID, EOS_ID = 0, 2

#: Tokens scanned at a time when a split's record boundaries are found (bounded memory on any split).
SCAN_CHUNK = 1 << 24


class Batch(NamedTuple):
    """One window or record batch; all (B, T) int64 except ``lengths`` (B,)."""

    inputs: Tensor  # (B, T)
    targets: Tensor  # (B, T) the token after each input (<pad>: none)
    prev_targets: Tensor  # (B, T) the token before each input (<pad>: none)
    lengths: Tensor | None = None  # (B,) real lengths of right-padded rows; None: no padding

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        if torch.device(device).type == "cpu" and self.inputs.device.type == "cpu":
            return self
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.inputs), move(self.targets), move(self.prev_targets), move(self.lengths))

    def pin_memory(self) -> Batch:
        return Batch(*(None if t is None else t.pin_memory() for t in self))

    @property
    def num_tokens(self) -> int:
        """Input positions in the batch (including padding): the unit of tokens/s."""
        return self.inputs.numel()


def gather(ids: np.ndarray, positions: np.ndarray, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> np.ndarray:
    """``flat[positions]`` as int64, where ``flat = <eos> + ids`` and a position outside it reads ``<pad>``.

    Only the gathered tokens are read from ``ids`` (a memory map pages in just those) and converted."""
    positions = np.asarray(positions, dtype=np.int64)
    out = np.full(positions.shape, pad_id, dtype=np.int64)
    inside = (positions >= 1) & (positions <= len(ids))
    out[inside] = ids[positions[inside] - 1]
    out[positions == 0] = eos_id
    return out


class Streams:
    """B lanes over ``<eos> + ids``: lane b reads flat positions ``starts[b] .. starts[b] + length - 1``.

    Positions past the end of the split read ``<pad>`` (an evaluation tail); windows are gathered from
    ``ids`` one at a time (:meth:`window`), so a lane costs nothing until it is read.
    """

    def __init__(self, ids: np.ndarray, starts: np.ndarray, length: int, pad_id: int = PAD_ID,
                 eos_id: int = EOS_ID) -> None:
        self.ids, self.starts, self.length = ids, np.asarray(starts, dtype=np.int64), int(length)
        self.pad_id, self.eos_id = pad_id, eos_id

    @property
    def lanes(self) -> int:
        return len(self.starts)

    def numel(self) -> int:
        return self.lanes * self.length

    def rows(self, first: int, stop: int) -> Streams:
        """Lanes ``first .. stop - 1`` only (a data-parallel rank's share)."""
        return Streams(self.ids, self.starts[first:stop], self.length, self.pad_id, self.eos_id)

    def window(self, first: int, width: int) -> Batch:
        """Columns ``first .. first + width - 1`` of every lane (cut at the lane's end) as one batch."""
        width = min(width, self.length - first)
        # One gather covers inputs, next and previous tokens: flat positions first - 1 .. first + width.
        at = self.starts[:, None] + np.arange(first - 1, first + width + 1)  # (B, T + 2)
        slab = gather(self.ids, at, self.pad_id, self.eos_id)
        inputs, targets, prev = slab[:, 1:-1], slab[:, 2:], slab[:, :-2].copy()
        past_end = at[:, 1:-1] > len(self.ids)  # a padded tail position predicts nothing in either direction
        prev[past_end] = self.pad_id
        lengths = None
        if past_end[:, -1].any():
            lengths = torch.from_numpy((~past_end).sum(axis=1))
        return Batch(torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(targets)),
                     torch.from_numpy(prev), lengths)

    def grid(self) -> Batch:
        """Every lane whole as one (B, L) batch: for tests and small splits; training and evaluation read
        :meth:`window` by window instead."""
        return self.window(0, self.length)


def to_streams(ids: np.ndarray, batch_size: int, *, pad_tail: bool, pad_id: int = PAD_ID,
               eos_id: int = EOS_ID) -> Streams:
    """Cut ``<eos> + ids`` into ``batch_size`` contiguous lanes.

    ``pad_tail=False`` (training) drops the few tokens that do not fill the last column; ``pad_tail=True``
    (evaluation) pads the tail with ``<pad>`` instead, so that every token of the split is scored.
    """
    n = len(ids) + 1
    length = math.ceil(n / batch_size) if pad_tail else n // batch_size
    if length == 0:
        raise ValueError(f"{len(ids)} tokens are too few for {batch_size} parallel streams")
    return Streams(ids, np.arange(batch_size) * length, length, pad_id, eos_id)


def sample_streams(ids: np.ndarray, lanes: int, tokens: int, seed: int, pad_id: int = PAD_ID,
                   eos_id: int = EOS_ID) -> Streams:
    """About ``tokens`` positions of a long split as ``lanes`` lanes at seeded offsets, the same for a seed.

    The split is cut into ``lanes`` equal parts and each lane starts at a random place of its own part, so
    the sample covers the whole split and lanes never overlap."""
    n = len(ids) + 1
    lanes = max(1, min(lanes, n // 2))
    length = max(1, min(tokens // lanes, n // lanes))
    part = n // lanes
    offsets = np.random.default_rng(seed).integers(0, part - length + 1, size=lanes)
    return Streams(ids, np.arange(lanes) * part + offsets, length, pad_id, eos_id)


def num_windows(streams: Streams, bptt: int) -> int:
    return math.ceil(streams.length / bptt)


def stream_windows(streams: Streams, bptt: int, start: int = 0) -> Iterator[Batch]:
    """Windows of ``bptt`` steps (the last may be shorter), from window index ``start``, gathered one by one."""
    for index in range(start, num_windows(streams, bptt)):
        yield streams.window(index * bptt, bptt)


def record_bounds(ids: np.ndarray, eos_id: int = EOS_ID) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of every ``<eos>``-closed record of ``ids`` (a tail without ``<eos>`` included),
    found in chunks so that no array the size of the split is made."""
    ends = [np.flatnonzero(ids[i : i + SCAN_CHUNK] == eos_id) + (i + 1) for i in range(0, len(ids), SCAN_CHUNK)]
    ends_all = np.concatenate([np.zeros(0, dtype=np.int64), *ends]).astype(np.int64)
    if len(ids) and (not len(ends_all) or ends_all[-1] != len(ids)):
        ends_all = np.append(ends_all, len(ids))
    starts = np.concatenate([np.zeros(min(1, len(ends_all)), dtype=np.int64), ends_all[:-1]])
    return starts, ends_all


def split_records(ids: np.ndarray, eos_id: int = EOS_ID) -> list[np.ndarray]:
    """Split a flat array after every ``<eos>``; each record keeps its closing ``<eos>`` (int64 copies)."""
    starts, ends = record_bounds(ids, eos_id)
    return [np.asarray(ids[s:e], dtype=np.int64) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def record_batch(records: list[np.ndarray], max_length: int, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Batch:
    """Right-padded batch of ``<eos> r0 ... <eos>`` rows, cut to ``max_length`` + 1 tokens."""
    rows = [np.concatenate([[eos_id], r[:max_length]]).astype(np.int64) for r in records]
    width = max(len(r) for r in rows)
    inputs = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, T)
    for i, row in enumerate(rows):
        inputs[i, : len(row)] = row
    targets = np.full_like(inputs, pad_id)
    targets[:, :-1] = inputs[:, 1:]
    prev = np.full_like(inputs, pad_id)
    prev[:, 1:] = inputs[:, :-1]
    prev[inputs == pad_id] = pad_id  # a padding position predicts nothing in either direction
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(prev), lengths)


def records_from(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, chosen: np.ndarray) -> list[np.ndarray]:
    """The records ``chosen`` (indices into ``starts``/``ends``), each read from ``ids`` on its own."""
    return [np.asarray(ids[starts[i] : ends[i]]) for i in np.asarray(chosen).tolist()]
