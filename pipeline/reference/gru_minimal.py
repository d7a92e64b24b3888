"""The minimal GRU: the update gate only (no reset gate), forward and backprop through time.

    Γu    = σ(Wux x<t> + Wua c<t-1> + bu)          update gate
    c~<t> = tanh(Wcx x<t> + Wca c<t-1> + bc)       candidate
    c<t>  = a<t> = Γu * c~<t> + (1 - Γu) * c<t-1>

This is the simplified GRU the curriculum introduces first.  When Γu ≈ 0 the cell
copies c<t-1> forward unchanged, and ∂c<t>/∂c<t-1> ≈ 1: the gradient can cross many
steps without vanishing, which is the whole point of the gate.  As in every GRU,
c<t> = a<t>; the code calls it ``a``.

Mapping to ``pipeline.models.cells.MinimalGRUCell(n_x, n_a)`` (rows in the order u, c):
    weight_ih = [Wux; Wcx]     weight_hh = [Wua; Wca]     bias = [bu; bc]
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.activations import sigmoid
from pipeline.reference.initialization import random_parameters
from pipeline.reference.sequence import backward_through_time, forward_through_time

PARAMETER_NAMES = ("Wux", "Wua", "bu", "Wcx", "Wca", "bc")


def init_parameters(n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small random weights and biases: W?x (n_a, n_x), W?a (n_a, n_a), b? (n_a, 1)."""
    return random_parameters(PARAMETER_NAMES, n_x, n_a, rng)


def gru_minimal_cell_forward(xt: np.ndarray, a_prev: np.ndarray, parameters: dict) -> tuple[np.ndarray, tuple]:
    """One step.  xt: (n_x, m), a_prev = c<t-1>: (n_a, m)  ->  a_next = c<t>: (n_a, m), cache."""
    p = parameters
    Γu = sigmoid(p["Wux"] @ xt + p["Wua"] @ a_prev + p["bu"])  # (n_a, m)
    c_tilde = np.tanh(p["Wcx"] @ xt + p["Wca"] @ a_prev + p["bc"])  # (n_a, m)
    a_next = Γu * c_tilde + (1.0 - Γu) * a_prev
    cache = (a_prev, xt, Γu, c_tilde, parameters)
    return a_next, cache


def gru_minimal_cell_backward(da_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """One step back, given da_next = ∂J/∂c<t> (n_a, m).

    dΓu = da_next * (c~ - c<t-1>)     dz_u = dΓu * Γu (1 - Γu)
    dc~ = da_next * Γu                dz_c = dc~ * (1 - c~²)
    dc<t-1> = da_next * (1 - Γu) + Wuaᵀ dz_u + Wcaᵀ dz_c      (the first term is the gated shortcut)
    """
    a_prev, xt, Γu, c_tilde, p = cache
    dz_u = da_next * (c_tilde - a_prev) * Γu * (1.0 - Γu)  # (n_a, m)
    dz_c = da_next * Γu * (1.0 - c_tilde**2)  # (n_a, m)
    return {
        "dxt": p["Wux"].T @ dz_u + p["Wcx"].T @ dz_c,
        "da_prev": da_next * (1.0 - Γu) + p["Wua"].T @ dz_u + p["Wca"].T @ dz_c,
        "dWux": dz_u @ xt.T, "dWua": dz_u @ a_prev.T, "dbu": dz_u.sum(axis=1, keepdims=True),
        "dWcx": dz_c @ xt.T, "dWca": dz_c @ a_prev.T, "dbc": dz_c.sum(axis=1, keepdims=True),
    }  # fmt: skip


def gru_minimal_forward(x: np.ndarray, a0: np.ndarray, parameters: dict) -> tuple[np.ndarray, list]:
    """x: (n_x, m, T_x), a0: (n_a, m)  ->  a: (n_a, m, T_x), one cache per step."""
    return forward_through_time(gru_minimal_cell_forward, x, a0, parameters)


def gru_minimal_backward(da: np.ndarray, caches: list) -> dict[str, np.ndarray]:
    """Backprop through time; da: (n_a, m, T_x) from the output layer -> dx, da0 and every "d" + parameter."""
    return backward_through_time(gru_minimal_cell_backward, da, caches)
