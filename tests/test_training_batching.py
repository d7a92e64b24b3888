"""Batching: parallel streams for truncated BPTT, padded record batches, resumable positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.windows import (
    gather,
    record_batch,
    record_bounds,
    sample_streams,
    split_records,
    stream_windows,
    to_streams,
)
from pipeline.training.batching import DataTooSmallError, TrainBatches

PAD, EOS = 0, 2


def _ids(n: int, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(3, 30, n)
    ids[np.random.default_rng(seed + 1).random(n) < 0.1] = EOS
    ids[-1] = EOS
    return ids


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_eval_streams_predict_every_token_exactly_once_in_both_directions(batch_size):
    ids = _ids(101)
    grid = to_streams(ids, batch_size, pad_tail=True).grid()
    targets = grid.targets[grid.targets != PAD]
    assert torch.equal(targets, torch.as_tensor(ids))  # row-major order = split order, nothing lost
    prev = grid.prev_targets[grid.prev_targets != PAD]
    assert torch.equal(prev, torch.as_tensor(np.concatenate([[EOS], ids[:-1]])))  # <eos> context before the split


def test_stream_targets_are_the_next_and_previous_tokens_across_segment_boundaries():
    ids = _ids(40)
    streams = to_streams(ids, 4, pad_tail=False)
    grid = streams.grid()
    flat = np.concatenate([[EOS], ids])
    length = streams.length
    for b in range(4):
        seg = slice(b * length, (b + 1) * length)
        assert grid.inputs[b].tolist() == flat[seg].tolist()
        assert grid.targets[b].tolist() == flat[b * length + 1 : (b + 1) * length + 1].tolist()
        if b:
            assert grid.prev_targets[b, 0] == flat[b * length - 1]


def test_eval_tail_is_padded_in_every_direction_and_has_lengths():
    ids = _ids(10)  # 11 flat positions in 3 lanes of 4: one padded column in the last lane
    grid = to_streams(ids, 3, pad_tail=True).grid()
    assert grid.inputs[2, -1] == PAD and grid.targets[2, -1] == PAD and grid.prev_targets[2, -1] == PAD
    assert grid.lengths.tolist() == [4, 4, 3]


def test_stream_windows_gather_from_the_stored_dtype_and_resume_at_any_position():
    ids = _ids(400).astype(np.uint8)  # as read_tokens returns a small vocabulary's file
    streams = to_streams(ids, 4, pad_tail=False)
    windows = list(stream_windows(streams, 16))
    assert len(windows) == -(-streams.length // 16)
    assert torch.equal(torch.cat([w.inputs for w in windows], dim=1), streams.grid().inputs)
    assert all(w.inputs.dtype == torch.int64 for w in windows)  # only the batch becomes int64
    assert all(w.lengths is None for w in windows)  # training streams carry no padding
    resumed = list(stream_windows(streams, 16, start=3))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(resumed, windows[3:], strict=True))


def test_gather_reads_eos_before_the_split_and_pad_outside_it():
    ids = np.array([5, 6, 7], dtype=np.uint16)
    assert gather(ids, np.array([[-1, 0, 1, 2], [3, 4, 5, 0]])).tolist() == [[PAD, EOS, 5, 6], [7, PAD, PAD, EOS]]


def test_sample_streams_are_seeded_inside_the_split_and_do_not_overlap():
    ids = _ids(10_000)
    a, b = sample_streams(ids, 8, 800, seed=3), sample_streams(ids, 8, 800, seed=3)
    assert a.starts.tolist() == b.starts.tolist() and a.length == 100 and a.lanes == 8
    assert a.starts.tolist() != sample_streams(ids, 8, 800, seed=4).starts.tolist()
    ends = a.starts + a.length
    assert (a.starts >= 0).all() and (ends <= len(ids) + 1).all() and (a.starts[1:] >= ends[:-1]).all()
    grid = a.grid()
    flat = np.concatenate([[EOS], ids])
    assert grid.inputs[5].tolist() == flat[a.starts[5] : a.starts[5] + 100].tolist()


def test_record_bounds_match_split_records_with_and_without_a_closing_eos():
    ids = np.array([5, 6, EOS, 7, EOS, 8, 9], dtype=np.uint8)
    starts, ends = record_bounds(ids)
    assert starts.tolist() == [0, 3, 5] and ends.tolist() == [3, 5, 7]
    assert [r.tolist() for r in split_records(ids)] == [[5, 6, EOS], [7, EOS], [8, 9]]
    assert [len(x) for x in record_bounds(np.zeros(0, dtype=np.uint8))] == [0, 0]


def test_split_records_keeps_each_closing_eos():
    ids = np.array([5, 6, EOS, 7, EOS, 8, 9, 10, EOS])
    assert [r.tolist() for r in split_records(ids)] == [[5, 6, EOS], [7, EOS], [8, 9, 10, EOS]]


def test_record_batch_pads_right_and_masks_padding_in_both_directions():
    batch = record_batch([np.array([5, 6, EOS]), np.array([7, EOS])], max_length=10)
    assert batch.inputs.tolist() == [[EOS, 5, 6, EOS], [EOS, 7, EOS, PAD]]
    assert batch.targets.tolist() == [[5, 6, EOS, PAD], [7, EOS, PAD, PAD]]
    assert batch.prev_targets.tolist() == [[PAD, EOS, 5, 6], [PAD, EOS, 7, PAD]]
    assert batch.lengths.tolist() == [4, 3]


def test_record_batch_cuts_long_records_to_the_window():
    batch = record_batch([np.arange(3, 40)], max_length=8)
    assert batch.inputs.shape == (1, 9)


def test_records_epochs_cover_every_record_once_in_a_seeded_order():
    ids = _ids(300)
    batches = TrainBatches(ids, "records", batch_size=4, bptt=64, seed=7)
    n_records = len(split_records(ids))

    def epoch_rows(epoch: int, start: int = 0) -> list[list[int]]:
        return [row[row != PAD].tolist() for b in batches.epoch(epoch, start) for row in b.inputs]

    first = epoch_rows(0)
    assert len(first) == n_records and len(batches) == -(-n_records // 4)
    assert sorted(map(tuple, first)) == sorted(tuple([EOS, *r.tolist()]) for r in split_records(ids))
    assert epoch_rows(0) == first  # the order is a function of (seed, epoch): rebuilt exactly on resume
    assert epoch_rows(1) != first  # and reshuffled every epoch
    assert epoch_rows(0, start=2) == first[8:]
    assert not batches.carries_state


def test_stream_batches_report_length_and_carry_state():
    batches = TrainBatches(_ids(1000), "stream", batch_size=8, bptt=20)
    assert batches.carries_state
    assert len(list(batches.epoch(0))) == len(batches)
    assert len(list(batches.epoch(0, start=len(batches) - 1))) == 1


def test_too_little_data_is_a_clear_error():
    with pytest.raises(DataTooSmallError, match="batch_size"):
        TrainBatches(_ids(10), "stream", batch_size=8, bptt=4)


def test_windows_batches_are_random_offsets_with_next_and_previous_tokens_and_no_carried_state():
    ids = _ids(500)
    batches = TrainBatches(ids, "windows", batch_size=4, bptt=16, seed=7)
    assert not batches.carries_state
    assert len(batches) == 501 // (4 * 16) and batches.tokens_per_epoch() == len(batches) * 4 * 16
    flat = np.concatenate([[EOS], ids]).tolist()
    starts = set()
    for batch in batches.epoch(0):
        assert batch.inputs.shape == (4, 16) and batch.lengths is None
        for row, target, prev in zip(batch.inputs.tolist(), batch.targets.tolist(), batch.prev_targets.tolist(),
                                     strict=True):
            at = next(i for i in range(len(flat) - 16) if flat[i : i + 16] == row)
            assert target == flat[at + 1 : at + 17]
            assert prev == ([PAD] + flat[:15] if at == 0 else flat[at - 1 : at + 15])
            starts.add(at)
    assert len(starts) > 20  # offsets spread over the split, not one stream walked in order


def test_windows_epochs_are_seeded_by_epoch_and_resume_at_any_position():
    ids = _ids(2000)
    batches = TrainBatches(ids, "windows", batch_size=3, bptt=10, seed=1)
    first, again = list(batches.epoch(2)), list(TrainBatches(ids, "windows", 3, 10, seed=1).epoch(2))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first[5:], batches.epoch(2, start=5), strict=True))
    assert not torch.equal(first[0].inputs, next(batches.epoch(3)).inputs)
    # Data-parallel ranks take disjoint rows of the same global batch.
    ranks = [next(TrainBatches(ids, "windows", 4, 10, seed=1, rank=r, world_size=2).epoch(0)) for r in (0, 1)]
    whole = next(TrainBatches(ids, "windows", 4, 10, seed=1).epoch(0))
    assert torch.equal(torch.cat([r.inputs for r in ranks]), whole.inputs)


def test_windows_need_one_window_of_data():
    with pytest.raises(DataTooSmallError, match="bptt 16"):
        TrainBatches(_ids(10), "windows", batch_size=2, bptt=16)
