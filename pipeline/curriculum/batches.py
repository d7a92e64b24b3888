"""Padded rows and seeded random batches: what every experiment feeds its model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pipeline.vocab import PAD_ID


def pad_rows(rows: Sequence[np.ndarray], pad_id: int = PAD_ID) -> tuple[Tensor, Tensor]:
    """Right-pad 1-D id arrays into (N, T) int64 with their lengths (N,)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    ids = np.full((len(rows), int(lengths.max(initial=1))), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return torch.from_numpy(ids), torch.from_numpy(lengths)


class RandomBatches:
    """``batches(step)`` -> a random batch (rows drawn with replacement) of the given same-length tensors.

    Draws come from a private generator seeded with ``seed``, so a run is reproducible and the global RNG
    (model init, dropout) is left alone.  Padded rows are trimmed to the longest row drawn when ``lengths``
    (the index of the lengths tensor among ``tensors``) is given.
    """

    def __init__(self, tensors: Sequence[Tensor], batch_size: int, seed: int, lengths: int | None = None) -> None:
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"tensors of different lengths {sorted(sizes)}")
        self.tensors, self.batch_size, self.lengths = list(tensors), batch_size, lengths
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, step: int) -> tuple[Tensor, ...]:
        rows = torch.randint(0, len(self.tensors[0]), (self.batch_size,), generator=self.generator)
        batch = [t[rows] for t in self.tensors]
        if self.lengths is not None:
            width = int(batch[self.lengths].max())
            batch = [t[:, :width] if t.dim() == 2 else t for t in batch]
        return tuple(batch)


def in_chunks(tensors: Sequence[Tensor], size: int):
    """Consecutive slices of ``size`` rows of each tensor (for evaluating a fixed set without running out of memory)."""
    for start in range(0, len(tensors[0]), size):
        yield tuple(t[start : start + size] for t in tensors)
