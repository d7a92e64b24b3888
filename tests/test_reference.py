"""The NumPy reference (pipeline/reference): hand-written gradients, clipping, sampling, `seqlab gradcheck`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.reference import (
    CELLS,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
    init_model,
    loss_and_gradients,
    sample,
    sample_index,
)
from pipeline.reference import gradcheck as gc
from pipeline.reference.lstm import lstm_forward
from pipeline.reference.rnn import rnn_cell_backward, rnn_forward
from stages.cli import GRADCHECK_CELLS
from stages.cli import main as cli_main

# ----------------------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("cell", list(CELLS))
def test_finite_difference_check_passes_for_every_parameter(cell):
    results = gc.finite_difference_check(cell, seed=0)
    parameters, *_ = gc.make_problem(cell)
    assert [r.parameter for r in results] == [*parameters, "x", "a0"]  # every parameter, plus the inputs
    assert all(r.check == "finite-diff" and r.tolerance == 1e-7 for r in results)
    assert all(r.passed for r in results), gc.format_table(results)


@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_autograd_agrees_to_1e_10(cell):
    results = gc.torch_agreement_check(cell, seed=1)
    parameters, *_ = gc.make_problem(cell, seed=1)
    assert [r.parameter for r in results] == ["loss", *parameters, "x", "a0"]
    assert all(r.check == "torch" and r.tolerance == 1e-10 for r in results)
    assert all(r.passed for r in results), gc.format_table(results)


def test_a_perturbed_gradient_is_detected_and_only_where_it_is_wrong():
    parameters, x, y, a0 = gc.make_problem("rnn")
    _, gradients = loss_and_gradients("rnn", x, y, a0, parameters)
    gradients["dWaa"] = gradients["dWaa"].copy()
    gradients["dWaa"][1, 2] *= 1.0 + 1e-4  # a tiny error in one entry
    results = {r.parameter: r for r in gc.check_gradients("rnn", parameters, x, y, a0, gradients)}
    assert not results["Waa"].passed
    assert results["Waa"].relative_error > 1e-7
    assert all(r.passed for name, r in results.items() if name != "Waa")


def test_backprop_without_the_through_time_term_is_detected():
    # A classic bug: each step gets only its own output's gradient, never what flows back from step t+1.
    parameters, x, y, a0 = gc.make_problem("rnn")
    _, gradients = loss_and_gradients("rnn", x, y, a0, parameters)
    a, caches = rnn_forward(x, a0, parameters)
    from pipeline.reference.output import output_backward, output_forward

    da, _ = output_backward(output_forward(a, parameters["Wya"], parameters["by"]), y, a, parameters["Wya"])
    truncated = [rnn_cell_backward(da[:, :, t], caches[t]) for t in range(x.shape[2])]
    for name in ("dWax", "dWaa", "dba"):
        gradients[name] = sum(step[name] for step in truncated)
    results = {r.parameter: r for r in gc.check_gradients("rnn", parameters, x, y, a0, gradients)}
    assert {name for name, r in results.items() if not r.passed} == {"Wax", "Waa", "ba"}


def test_torch_comparison_is_sensitive_to_a_small_difference():
    parameters, x, y, a0 = gc.make_problem("lstm")
    from pipeline.reference.torch_mapping import torch_loss_and_gradients

    _, torch_gradients = torch_loss_and_gradients("lstm", parameters, x, y, a0)
    parameters["Wfa"][0, 0] += 1e-6
    _, gradients = loss_and_gradients("lstm", x, y, a0, parameters)
    assert gc.relative_error(gradients["dWfa"], torch_gradients["dWfa"]) > gc.TORCH_TOLERANCE


def test_relative_error_definition():
    assert gc.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gc.relative_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(np.sqrt(2) / 2)
    assert not gc.CheckResult("rnn", "Wax", "torch", float("nan"), 1e-10).passed


def test_plain_lstm_is_the_peephole_lstm_with_zero_peepholes():
    parameters = init_model("lstm_peephole", 3, 4, 3, seed=2)
    x, a0 = np.random.default_rng(0).normal(size=(3, 2, 5)), np.zeros((4, 2))
    for name in ("wfc", "wic", "woc"):
        parameters[name][:] = 0.0
    plain = {k: v for k, v in parameters.items() if k not in ("wfc", "wic", "woc")}
    np.testing.assert_array_equal(lstm_forward(x, a0, parameters)[0], lstm_forward(x, a0, plain)[0])


def test_importing_the_reference_does_not_load_torch():
    modules = ", ".join(
        f"pipeline.reference.{m}"
        for m in ("clipping", "gradcheck", "gru", "gru_minimal", "lstm", "model", "rnn", "sampling", "torch_mapping")
    )
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- clipping


def _gradients():
    return {"dWaa": np.array([[3.0, -12.0], [0.5, 4.0]]), "dby": np.array([[-0.2], [7.0]])}


def test_clip_by_value_clamps_each_entry_and_reports_the_norm_before():
    gradients = _gradients()
    clipped, norm = clip_by_value(gradients, 5.0)
    np.testing.assert_array_equal(clipped["dWaa"], [[3.0, -5.0], [0.5, 4.0]])
    np.testing.assert_array_equal(clipped["dby"], [[-0.2], [5.0]])
    assert norm == pytest.approx(np.sqrt(9 + 144 + 0.25 + 16 + 0.04 + 49))
    assert gradients["dWaa"][0, 1] == -12.0  # the input is left alone


def test_clip_by_global_norm_rescales_together_and_keeps_direction():
    gradients = _gradients()
    norm_before = global_norm(gradients)
    clipped, norm = clip_by_global_norm(gradients, 1.0)
    assert norm == pytest.approx(norm_before)
    assert global_norm(clipped) == pytest.approx(1.0)
    for name in gradients:  # one common factor: the update keeps its direction
        np.testing.assert_allclose(clipped[name] * norm_before, gradients[name])
    unchanged, _ = clip_by_global_norm(gradients, 100.0)
    for name in gradients:
        np.testing.assert_array_equal(unchanged[name], gradients[name])


def test_clip_by_global_norm_matches_torch():
    import torch

    gradients = _gradients()
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in gradients.values()]
    for t, g in zip(tensors, gradients.values(), strict=True):
        t.grad = torch.tensor(g)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=2.0)
    clipped, norm = clip_by_global_norm(gradients, 2.0)
    assert norm == pytest.approx(float(torch_norm), rel=1e-12)
    for t, g in zip(tensors, clipped.values(), strict=True):
        np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-6)  # torch divides by norm + 1e-6


@pytest.mark.parametrize("clip", [clip_by_value, clip_by_global_norm])
@pytest.mark.parametrize("bound", [0.0, -1.0])
def test_clipping_rejects_a_non_positive_bound(clip, bound):
    with pytest.raises(ValueError, match="must be > 0"):
        clip(_gradients(), bound)


# ----------------------------------------------------------------------------- sampling


def _constant_model(p: np.ndarray) -> dict:
    """An RNN whose every ŷ<t> is exactly p, whatever came before: Wya = 0, by = log p."""
    parameters = init_model("rnn", len(p), 4, len(p), seed=0)
    parameters["Wya"][:] = 0.0
    parameters["by"] = np.log(p)[:, None]
    return parameters


def _successor_model(n: int) -> dict:
    """An RNN that, fed one_hot(k), puts nearly all probability on k + 1 (mod n)."""
    parameters = {"Wax": 10.0 * np.eye(n), "Waa": np.zeros((n, n)), "ba": np.zeros((n, 1))}
    parameters["Wya"] = 50.0 * np.roll(np.eye(n), 1, axis=0)  # row k+1 reads a[k]
    parameters["by"] = np.zeros((n, 1))
    return parameters


def test_sample_index_follows_the_distribution():
    p = np.array([0.5, 0.25, 0.15, 0.1])
    rng = np.random.default_rng(0)
    n = 20_000
    counts = np.bincount([sample_index(p, rng) for _ in range(n)], minlength=4)
    chi_square = np.sum((counts - n * p) ** 2 / (n * p))
    assert chi_square < 16.27  # df = 3, p = 0.001


def test_sampled_sequences_follow_the_model_distribution_and_stop_at_the_end_token():
    p = np.array([0.4, 0.3, 0.2, 0.1])  # index 3 is the end token
    parameters = _constant_model(p)
    sequences = [sample("rnn", parameters, end_index=3, max_length=1000, seed=s) for s in range(400)]
    assert all(seq[-1] == 3 and 3 not in seq[:-1] for seq in sequences)
    assert np.mean([len(seq) for seq in sequences]) == pytest.approx(1 / 0.1, rel=0.15)  # geometric
    body = np.array([index for seq in sequences for index in seq[:-1]])
    expected = p[:3] / p[:3].sum()
    counts = np.bincount(body, minlength=3)
    chi_square = np.sum((counts - len(body) * expected) ** 2 / (len(body) * expected))
    assert chi_square < 13.82  # df = 2, p = 0.001


def test_sampling_is_reproducible_with_a_seed():
    parameters = init_model("lstm", 6, 5, 6, seed=3)
    first = sample("lstm", parameters, end_index=0, max_length=30, seed=42)
    assert sample("lstm", parameters, end_index=0, max_length=30, seed=42) == first
    others = [sample("lstm", parameters, end_index=0, max_length=30, seed=s) for s in range(5)]
    assert any(o != first for o in others)


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_samples_within_max_length(cell):
    parameters = init_model(cell, 5, 4, 5, seed=0)
    indices = sample(cell, parameters, end_index=-1, max_length=7, seed=0)  # -1 never drawn: runs to the cap
    assert len(indices) == 7 and all(0 <= i < 5 for i in indices)


def test_sampled_index_is_fed_back_as_the_next_input():
    parameters = _successor_model(5)
    assert sample("rnn", parameters, end_index=4, max_length=50, seed=0, start_index=0) == [1, 2, 3, 4]
    assert sample("rnn", parameters, end_index=4, max_length=2, seed=0, start_index=0) == [1, 2]
    assert sample("rnn", parameters, end_index=0, max_length=50, seed=0, start_index=2) == [3, 4, 0]


def test_sampling_refuses_inputs_that_are_not_one_hot_over_the_outputs():
    with pytest.raises(ValueError, match="n_x = 3 and n_y = 5"):
        sample("gru", init_model("gru", 3, 4, 5), end_index=0)


# ----------------------------------------------------------------------------- seqlab gradcheck


def test_cli_cell_list_matches_the_reference():
    assert tuple(CELLS) == GRADCHECK_CELLS


def test_cli_gradcheck_prints_the_table_and_exits_zero(capsys):
    assert cli_main(["gradcheck", "--cell", "gru_minimal", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["cell", "parameter", "check", "rel.", "error", "tolerance", "result"]
    rows = [line.split() for line in lines[1:-1]]
    assert {(r[1], r[2]) for r in rows} == {
        *((name, "finite-diff") for name in ("Wux", "Wua", "bu", "Wcx", "Wca", "bc", "Wya", "by", "x", "a0")),
        *((name, "torch") for name in ("loss", "Wux", "Wua", "bu", "Wcx", "Wca", "bc", "Wya", "by", "x", "a0")),
    }
    assert all(r[0] == "gru_minimal" and r[-1] == "pass" for r in rows)
    assert lines[-1] == f"all {len(rows)} checks passed"


def test_cli_gradcheck_exits_non_zero_when_a_check_fails(capsys, monkeypatch):
    monkeypatch.setattr(gc, "FINITE_DIFFERENCE_TOLERANCE", 1e-30)  # no real gradient is that close
    assert cli_main(["gradcheck", "--cell", "rnn"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert out.splitlines()[-1] == "7 of 15 checks FAILED"


def test_cli_gradcheck_rejects_an_unknown_cell(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["gradcheck", "--cell", "transformer"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
