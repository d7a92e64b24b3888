"""How a flat id array becomes model batches: parallel streams cut into windows, or padded records.

Both the training loop and the whole-split evaluation use these, so the two agree on which token each
position predicts.  Every batch carries, for every input position t, the token that follows it
(``targets``, what a causal/forward model predicts) and the token that precedes it (``prev_targets``, what
the backward half of a bidirectional LM predicts); positions with nothing to predict hold ``<pad>``, which
every loss ignores.

Streams: ``<eos>`` is put in front of the split (every record is closed by ``<eos>``, so this is the
context the first record would have had), the next/previous arrays are built on the whole flat array and
only then cut into B contiguous segments, so no token loses its target at a segment boundary: every
token of the split is predicted exactly once per direction.

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


class Streams(NamedTuple):
    """B parallel segments of a split: inputs, next and previous tokens, each (B, L)."""

    inputs: Tensor
    targets: Tensor
    prev_targets: Tensor

    def pin_memory(self) -> Streams:
        return Streams(*(t.pin_memory() for t in self))

    @property
    def length(self) -> int:
        return self.inputs.shape[1]


def to_streams(ids: np.ndarray, batch_size: int, *, pad_tail: bool, pad_id: int = PAD_ID,
               eos_id: int = EOS_ID) -> Streams:
    """Cut ``<eos> + ids`` into ``batch_size`` contiguous segments, with next/previous tokens alongside.

    ``pad_tail=False`` (training) drops the few tokens that do not fill the last column; ``pad_tail=True``
    (evaluation) pads the tail with ``<pad>`` instead, so that every token of the split is scored.
    """
    flat = np.concatenate([[eos_id], np.asarray(ids, dtype=np.int64)])
    following = np.concatenate([flat[1:], [pad_id]])
    preceding = np.concatenate([[pad_id], flat[:-1]])
    n = len(flat)
    length = math.ceil(n / batch_size) if pad_tail else n // batch_size
    if length == 0:
        raise ValueError(f"{len(ids)} tokens are too few for {batch_size} parallel streams")

    def segment(arr: np.ndarray) -> Tensor:
        arr = arr[: length * batch_size]
        if len(arr) < length * batch_size:
            arr = np.concatenate([arr, np.full(length * batch_size - len(arr), pad_id, dtype=np.int64)])
        return torch.from_numpy(arr.reshape(batch_size, length).copy())  # (B, L)

    return Streams(segment(flat), segment(following), segment(preceding))


def num_windows(streams: Streams, bptt: int) -> int:
    return math.ceil(streams.length / bptt)


def stream_windows(streams: Streams, bptt: int, start: int = 0, pad_id: int = PAD_ID) -> Iterator[Batch]:
    """Windows of ``bptt`` steps (the last may be shorter), from window index ``start``; views, no copies."""
    for index in range(start, num_windows(streams, bptt)):
        cols = slice(index * bptt, (index + 1) * bptt)
        inputs = streams.inputs[:, cols]  # (B, T)
        lengths = None
        if bool((inputs[:, -1] == pad_id).any()):  # only an evaluation tail is padded
            lengths = (inputs != pad_id).sum(dim=1)
        yield Batch(inputs, streams.targets[:, cols], streams.prev_targets[:, cols], lengths)


def split_records(ids: np.ndarray, eos_id: int = EOS_ID) -> list[np.ndarray]:
    """Split a flat array after every ``<eos>``; each record keeps its closing ``<eos>``."""
    ids = np.asarray(ids, dtype=np.int64)
    ends = np.flatnonzero(ids == eos_id) + 1
    records = np.split(ids, ends)
    return [r for r in records if len(r)]


def record_batch(records: list[np.ndarray], max_length: int, pad_id: int = PAD_ID, eos_id: int = EOS_ID) -> Batch:
    """Right-padded batch of ``<eos> r0 ... <eos>`` rows, cut to ``max_length`` + 1 tokens."""
    rows = [np.concatenate([[eos_id], r])[: max_length + 1] for r in records]
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
