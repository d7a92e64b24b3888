"""The custom cells against the equations they document, torch's own LSTM, and finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models.cells import CellStack, MinimalGRUCell, PeepholeLSTMCell

B, IN, H = 3, 4, 5


def _peephole_step(cell: PeepholeLSTMCell, x, a_prev, c_prev):
    """The documented equations, gate by gate, with the weights sliced by name."""
    W = dict(zip("ifco", cell.weight_ih.split(H), strict=True))
    U = dict(zip("ifco", cell.weight_hh.split(H), strict=True))
    b = dict(zip("ifco", cell.bias.split(H), strict=True))

    def pre(k):
        return x @ W[k].T + a_prev @ U[k].T + b[k]

    gate_i = torch.sigmoid(pre("i") + cell.w_ci * c_prev)
    gate_f = torch.sigmoid(pre("f") + cell.w_cf * c_prev)
    gate_o = torch.sigmoid(pre("o") + cell.w_co * c_prev)
    c = gate_f * c_prev + gate_i * torch.tanh(pre("c"))
    return gate_o * torch.tanh(c), c


def _minimal_gru_step(cell: MinimalGRUCell, x, c_prev):
    W_u, W_c = cell.weight_ih.split(H)
    U_u, U_c = cell.weight_hh.split(H)
    b_u, b_c = cell.bias.split(H)
    gate_u = torch.sigmoid(x @ W_u.T + c_prev @ U_u.T + b_u)
    candidate = torch.tanh(x @ W_c.T + c_prev @ U_c.T + b_c)
    return gate_u * candidate + (1 - gate_u) * c_prev


def test_parameter_names_and_shapes_are_the_documented_ones():
    peephole = PeepholeLSTMCell(IN, H)
    assert {n: tuple(p.shape) for n, p in peephole.named_parameters()} == {
        "weight_ih": (4 * H, IN), "weight_hh": (4 * H, H), "bias": (4 * H,),
        "w_ci": (H,), "w_cf": (H,), "w_co": (H,)}
    minimal = MinimalGRUCell(IN, H)
    assert {n: tuple(p.shape) for n, p in minimal.named_parameters()} == {
        "weight_ih": (2 * H, IN), "weight_hh": (2 * H, H), "bias": (2 * H,)}


@torch.no_grad()
def test_peephole_cell_follows_its_equations():
    torch.manual_seed(0)
    cell = PeepholeLSTMCell(IN, H)
    for p in (cell.w_ci, cell.w_cf, cell.w_co):
        p.normal_()  # large peepholes, so that a wrong wiring shows
    x, a, c = torch.randn(B, IN), torch.randn(B, H), torch.randn(B, H)
    expected = _peephole_step(cell, x, a, c)
    actual = cell(x, (a, c))
    for e, g in zip(expected, actual, strict=True):
        torch.testing.assert_close(g, e)
    # each peephole matters: zeroing one changes the result
    for p in (cell.w_ci, cell.w_cf, cell.w_co):
        saved = p.clone()
        p.zero_()
        assert not torch.allclose(cell(x, (a, c))[0], actual[0])
        p.copy_(saved)


@torch.no_grad()
def test_peephole_cell_with_zero_peepholes_is_torch_lstm_cell():
    torch.manual_seed(1)
    cell, reference = PeepholeLSTMCell(IN, H), nn.LSTMCell(IN, H)
    cell.weight_ih.copy_(reference.weight_ih)
    cell.weight_hh.copy_(reference.weight_hh)
    cell.bias.copy_(reference.bias_ih + reference.bias_hh)
    for p in (cell.w_ci, cell.w_cf, cell.w_co):
        p.zero_()
    state = ref_state = (torch.randn(B, H), torch.randn(B, H))
    for _ in range(4):
        x = torch.randn(B, IN)
        state, ref_state = cell(x, state), reference(x, ref_state)
        for g, e in zip(state, ref_state, strict=True):
            torch.testing.assert_close(g, e)


@torch.no_grad()
def test_minimal_gru_cell_follows_its_equations():
    torch.manual_seed(2)
    cell = MinimalGRUCell(IN, H)
    c = torch.randn(B, H)
    for _ in range(4):
        x = torch.randn(B, IN)
        expected = _minimal_gru_step(cell, x, c)
        c = cell(x, c)
        torch.testing.assert_close(c, expected)
    assert cell(torch.randn(B, IN)).shape == (B, H)  # state=None starts from zeros


@torch.no_grad()
def test_two_layer_peephole_stack_with_zero_peepholes_is_torch_lstm():
    torch.manual_seed(3)
    stack = CellStack(PeepholeLSTMCell, IN, H, num_layers=2, dropout=0.5).eval()
    reference = nn.LSTM(IN, H, num_layers=2, batch_first=True, dropout=0.5).eval()
    for layer, cell in enumerate(stack.cells):
        cell.weight_ih.copy_(getattr(reference, f"weight_ih_l{layer}"))
        cell.weight_hh.copy_(getattr(reference, f"weight_hh_l{layer}"))
        cell.bias.copy_(getattr(reference, f"bias_ih_l{layer}") + getattr(reference, f"bias_hh_l{layer}"))
        for p in (cell.w_ci, cell.w_cf, cell.w_co):
            p.zero_()
    x = torch.randn(B, 6, IN)
    state = (torch.randn(2, B, H), torch.randn(2, B, H))
    out, (h, c) = stack(x, state)
    ref_out, (ref_h, ref_c) = reference(x, state)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)


@torch.no_grad()
def test_minimal_gru_stack_runs_the_cell_over_time_and_depth():
    torch.manual_seed(4)
    stack = CellStack(MinimalGRUCell, IN, H, num_layers=2).eval()
    x = torch.randn(B, 5, IN)
    out, final = stack(x)
    states = [torch.zeros(B, H), torch.zeros(B, H)]
    for t in range(5):
        below = x[:, t]
        for layer, cell in enumerate(stack.cells):
            states[layer] = _minimal_gru_step(cell, below, states[layer])
            below = states[layer]
        torch.testing.assert_close(out[:, t], below)
    torch.testing.assert_close(final, torch.stack(states))


@pytest.mark.parametrize("cell_type", [PeepholeLSTMCell, MinimalGRUCell])
def test_stack_gradients_match_finite_differences(cell_type):
    torch.manual_seed(5)
    stack = CellStack(cell_type, 3, 2, num_layers=2).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(stack.parameters())

    def run(inputs, *weights):
        return torch.func.functional_call(stack, dict(zip([n for n, _ in stack.named_parameters()], weights,
                                                          strict=True)), (inputs,))[0]

    assert torch.autograd.gradcheck(run, (x, *params), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("cell_type", [PeepholeLSTMCell, MinimalGRUCell])
def test_time_loop_unbinds_instead_of_indexing(cell_type):
    """Indexing x[:, t] per step makes backward quadratic in T (PERF-NOTES); the graph must show unbind only."""
    stack = CellStack(cell_type, IN, H, num_layers=1)
    out, _ = stack(torch.randn(B, 16, IN, requires_grad=True))
    names, seen, todo = set(), set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    assert "UnbindBackward0" in names
    assert not any(name.startswith(("SelectBackward", "SliceBackward")) for name in names), names
