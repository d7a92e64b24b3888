"""Precision by capability: ``bf16`` runs only where the device has it, and says so when it falls back.

oneDNN honours ``ONEDNN_MAX_CPU_ISA``: capped at AVX2 it behaves as on an AVX2-only CPU (no bf16 LSTM
primitive), so these tests check the fallback on every machine, whatever its CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from pipeline.training.devices import Bf16FallbackWarning, autocast_dtype, bf16_unsupported_reason

AVX2_ONLY = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_auto_and_fp32_never_pick_bf16_on_cpu():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(cpu, "fp32") is None


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32_with_one_warning():
    code = ("import warnings, torch\n"
            "from pipeline.training.devices import autocast_dtype, bf16_unsupported_reason\n"
            "warnings.simplefilter('error')\n"
            "print(bf16_unsupported_reason('cpu'))\n"
            "try:\n"
            "    autocast_dtype(torch.device('cpu'), 'bf16')\n"
            "except Warning as w:\n"
            "    print(type(w).__name__, w)\n")
    result = run_python(code, AVX2_ONLY)
    assert result.returncode == 0, result.stderr
    reason, warning = result.stdout.strip().splitlines()
    assert "oneDNN reports no bf16 support" in reason
    assert warning.startswith("Bf16FallbackWarning precision bf16 is not supported here (oneDNN reports no bf16")
    assert warning.endswith("training in fp32 instead")


def test_training_with_bf16_on_an_avx2_cpu_completes_in_fp32(tmp_path):
    code = ("import warnings\n"
            "from tests.train_helpers import char_dataset, tiny_model, tiny_settings\n"
            "from pipeline.training.loop import fit\n"
            "vocab, train, val = char_dataset()\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    result = fit(tiny_model(len(vocab)), train, val, tiny_settings(precision='bf16', max_steps=3), {str(tmp_path)!r})\n"
            "print(result.metrics['steps'], sum('bf16' in str(w.message) for w in caught))\n")
    result = run_python(code, AVX2_ONLY)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["3", "1"]


@pytest.mark.skipif(bf16_unsupported_reason("cpu") is not None,
                    reason=f"needs native bf16 on the CPU: {bf16_unsupported_reason('cpu')}")
def test_bf16_is_used_where_the_cpu_has_it():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", Bf16FallbackWarning)
        assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16


def test_only_a_fused_stack_with_between_layer_dropout_on_cuda_draws_dropout_inside_cudnn():
    """The loop reseeds cuDNN's dropout state per step exactly where cuDNN draws masks from its own generator."""
    from torch import nn

    from pipeline.training.devices import draws_dropout_in_cudnn

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    stacked = nn.Sequential(nn.Embedding(5, 4), nn.LSTM(4, 8, num_layers=2, dropout=0.2))
    assert draws_dropout_in_cudnn(stacked, cuda)
    assert not draws_dropout_in_cudnn(stacked, cpu)  # torch's own dropout, from the checkpointed CPU generator
    assert not draws_dropout_in_cudnn(nn.GRU(4, 8, num_layers=2, dropout=0.0), cuda)
    assert not draws_dropout_in_cudnn(nn.Sequential(nn.LSTM(4, 8), nn.Dropout(0.5)), cuda)  # one layer: none inside
    assert draws_dropout_in_cudnn(nn.RNN(4, 8, num_layers=3, dropout=0.1), cuda)
    enabled = torch.backends.cudnn.enabled
    try:
        torch.backends.cudnn.enabled = False  # torch's native kernels: dropout from torch's generator
        assert not draws_dropout_in_cudnn(stacked, cuda)
    finally:
        torch.backends.cudnn.enabled = enabled
