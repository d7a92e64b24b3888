"""train_step: the one optimizer step the loop, the curriculum's supervised loop and the benchmarks share."""

from __future__ import annotations

import contextlib
import copy

import torch

from pipeline.models.objective import batch_loss
from pipeline.training.batching import TrainBatches
from pipeline.training.optim import clip_gradients
from pipeline.training.step import PHASES, train_step
from tests.train_helpers import char_dataset, tiny_model


def _batch_and_model():
    vocab, train, _ = char_dataset()
    return next(TrainBatches(train, "stream", 4, 16, seed=3).epoch(0)), tiny_model(len(vocab))


def test_it_is_the_hand_written_step_bit_for_bit_and_reports_its_phases_in_order():
    batch, model = _batch_and_model()
    by_hand = copy.deepcopy(model)
    optimizer, hand_optimizer = (torch.optim.Adam(m.parameters(), lr=0.01) for m in (model, by_hand))
    seen: list[str] = []

    def phase(name: str) -> contextlib.AbstractContextManager:
        seen.append(name)
        return contextlib.nullcontext()

    result = train_step(model, optimizer, batch, clip="norm", clip_threshold=0.1, check_finite=True,
                        layer_norms_of=model, phase=phase)
    loss = batch_loss(by_hand, batch)
    hand_optimizer.zero_grad(set_to_none=True)
    loss.objective.backward()
    clip = clip_gradients(list(by_hand.parameters()), "norm", 0.1)
    hand_optimizer.step()
    assert seen == list(PHASES) and result.updated
    assert torch.equal(result.clip.before, clip.before) and torch.equal(result.loss.objective, loss.objective)
    assert result.layer_norms is not None and len(result.layer_norms[0]) == len(list(model.parameters()))
    for mine, theirs in zip(model.state_dict().values(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)


def test_a_non_finite_gradient_leaves_the_weights_as_they_were_when_checked():
    batch, model = _batch_and_model()
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.output.weight.register_hook(lambda grad: grad * float("nan"))
    result = train_step(model, optimizer, batch, check_finite=True)
    assert not result.updated and not torch.isfinite(result.clip.before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert train_step(model, optimizer, batch).updated  # unchecked (a GPU's way): the caller checks later
