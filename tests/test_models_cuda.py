"""The models on a CUDA GPU (cuDNN for the fused cells): skipped where there is none, as in CI."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from pipeline.models.checkpoint import checkpoint_payload, load_checkpoint, model_from_checkpoint, save_checkpoint
from pipeline.models.sampling import sample
from tests.model_helpers import CELL_IDS, CELLS, VOCAB, logit_tensors, random_ids, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _loss(logits, ids):
    parts = logit_tensors(logits)
    loss = F.cross_entropy(parts[0][:, :-1].reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))
    if len(parts) == 2:
        loss = loss + F.cross_entropy(parts[1][:, 1:].reshape(-1, VOCAB).float(), ids[:, :-1].reshape(-1))
    return loss


@pytest.mark.parametrize("direction", ["uni", "bi"])
@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
def test_cuda_matches_cpu_and_trains_under_bf16_autocast(cell, nonlinearity, direction):
    cpu_model = tiny_model(cell, direction, 2, nonlinearity=nonlinearity, dropout=0.2).eval()
    gpu_model = tiny_model(cell, direction, 2, nonlinearity=nonlinearity, dropout=0.2).cuda().eval()
    ids = random_ids(batch=4, length=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. cuDNN's "weights are not part of single contiguous chunk"
        gpu_logits, state = gpu_model(ids.cuda())
        for a, b in zip(logit_tensors(cpu_model(ids)[0]), logit_tensors(gpu_logits), strict=True):
            torch.testing.assert_close(b.cpu(), a, rtol=1e-2, atol=2e-3)
        gpu_model.train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, state = gpu_model(ids.cuda(), gpu_model.init_state(4, "cuda"))
            logits, _ = gpu_model(ids.cuda(), gpu_model.detach_state(state))  # a carried state, as in TBPTT
            loss = _loss(logits, ids.cuda())
        loss.backward()
    assert torch.isfinite(loss)
    for name, param in gpu_model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
def test_cuda_sampling_is_seeded_and_cuda_checkpoints_load_on_the_cpu(tmp_path, cell, nonlinearity):
    model = tiny_model(cell, "uni", 2, nonlinearity=nonlinearity).cuda()
    first = sample(model, n=8, max_length=12, seed=5, temperature=2.0)
    assert sample(model, n=8, max_length=12, seed=5, temperature=2.0, device="cuda") == first
    assert all(0 not in row and 2 not in row for row in first)
    save_checkpoint(tmp_path / "gpu.pt", checkpoint_payload(model))
    payload = load_checkpoint(tmp_path / "gpu.pt")  # map_location="cpu"
    assert all(t.device.type == "cpu" for t in payload["model_state"].values())
    on_cpu = model_from_checkpoint(payload)
    back_on_gpu = model_from_checkpoint(load_checkpoint(tmp_path / "gpu.pt", map_location="cuda"), device="cuda")
    ids = random_ids()
    torch.testing.assert_close(on_cpu(ids)[0], model.eval()(ids.cuda())[0].cpu(), rtol=1e-2, atol=2e-3)
    assert torch.equal(back_on_gpu(ids.cuda())[0], model(ids.cuda())[0])
