"""The full GRU, forward and backprop through time by hand, written the way torch computes it.

    Γr    = σ(Wrx x<t> + Wra a<t-1> + br)                       reset gate
    Γu    = σ(Wux x<t> + Wua a<t-1> + bu)                       update gate
    c~<t> = tanh(Wcx x<t> + bcx + Γr * (Wca a<t-1> + bca))      candidate
    c<t>  = a<t> = Γu * c~<t> + (1 - Γu) * c<t-1>

In a GRU the memory cell and the activation are the same vector, c<t> = a<t>; the
code calls it ``a`` so every cell hands the output layer the same thing.

How this differs from the curriculum's GRU.  The course writes the candidate as
c~<t> = tanh(Wc [Γr * c<t-1>, x<t>] + bc): the reset gate scales c<t-1> *before* the
matrix product.  torch (and cuDNN) apply it *after*: Γr * (Wca a<t-1> + bca), so a
second bias bca sits inside the reset product.  The two are different functions of
the weights (neither is a special case of the other), and to agree with
``torch.nn.GRU`` to 1e-10 this module implements torch's form.  Everything else is
the course's GRU.

Mapping to ``torch.nn.GRU(n_x, n_a)``, whose rows come in the order r, z, n:
    weight_ih_l0 = [Wrx; -Wux; Wcx]      weight_hh_l0 = [Wra; -Wua; Wca]
    bias_ih_l0   = [br;  -bu;  bcx]      bias_hh_l0   = [0;   0;    bca]
torch's z gate is the *keep* gate: h' = (1 - z) n + z h, i.e. z = 1 - Γu.  Since
1 - σ(s) = σ(-s), the course's Γu is torch's z with its weights and biases negated.
torch's two r (and two z) biases only ever appear as a sum, so one of each pair may be 0.
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.activations import sigmoid
from pipeline.reference.initialization import random_parameters
from pipeline.reference.sequence import backward_through_time, forward_through_time

PARAMETER_NAMES = ("Wrx", "Wra", "br", "Wux", "Wua", "bu", "Wcx", "Wca", "bcx", "bca")


def init_parameters(n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small random weights and biases: W?x (n_a, n_x), W?a (n_a, n_a), b? (n_a, 1)."""
    return random_parameters(PARAMETER_NAMES, n_x, n_a, rng)


def gru_cell_forward(xt: np.ndarray, a_prev: np.ndarray, parameters: dict) -> tuple[np.ndarray, tuple]:
    """One step.  xt: (n_x, m), a_prev = c<t-1>: (n_a, m)  ->  a_next = c<t>: (n_a, m), cache."""
    p = parameters
    Γr = sigmoid(p["Wrx"] @ xt + p["Wra"] @ a_prev + p["br"])  # (n_a, m)
    Γu = sigmoid(p["Wux"] @ xt + p["Wua"] @ a_prev + p["bu"])  # (n_a, m)
    hidden_part = p["Wca"] @ a_prev + p["bca"]  # (n_a, m): what the reset gate scales
    c_tilde = np.tanh(p["Wcx"] @ xt + p["bcx"] + Γr * hidden_part)  # (n_a, m)
    a_next = Γu * c_tilde + (1.0 - Γu) * a_prev
    cache = (a_prev, xt, Γr, Γu, hidden_part, c_tilde, parameters)
    return a_next, cache


def gru_cell_backward(da_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """One step back, given da_next = ∂J/∂c<t> (n_a, m).

        dc~ = da_next * Γu        dΓu = da_next * (c~ - c<t-1>)     direct: da<t-1> = da_next * (1 - Γu)
        dz_c = dc~ * (1 - c~²)    (pre-activation of c~)
        dΓr = dz_c * (Wca a<t-1> + bca),  d(hidden part) = dz_c * Γr
        dz_r = dΓr * Γr (1 - Γr),  dz_u = dΓu * Γu (1 - Γu)
    and each pre-activation dz passes to its weights (dz xᵀ, dz a<t-1>ᵀ, Σ dz) and back to x<t>, a<t-1>.
    """
    a_prev, xt, Γr, Γu, hidden_part, c_tilde, p = cache
    dc_tilde = da_next * Γu
    dΓu = da_next * (c_tilde - a_prev)
    dz_c = dc_tilde * (1.0 - c_tilde**2)  # (n_a, m)
    dhidden = dz_c * Γr  # (n_a, m): gradient of Wca a<t-1> + bca
    dz_r = dz_c * hidden_part * Γr * (1.0 - Γr)
    dz_u = dΓu * Γu * (1.0 - Γu)
    return {
        "dxt": p["Wrx"].T @ dz_r + p["Wux"].T @ dz_u + p["Wcx"].T @ dz_c,
        "da_prev": da_next * (1.0 - Γu) + p["Wra"].T @ dz_r + p["Wua"].T @ dz_u + p["Wca"].T @ dhidden,
        "dWrx": dz_r @ xt.T, "dWra": dz_r @ a_prev.T, "dbr": dz_r.sum(axis=1, keepdims=True),
        "dWux": dz_u @ xt.T, "dWua": dz_u @ a_prev.T, "dbu": dz_u.sum(axis=1, keepdims=True),
        "dWcx": dz_c @ xt.T, "dbcx": dz_c.sum(axis=1, keepdims=True),
        "dWca": dhidden @ a_prev.T, "dbca": dhidden.sum(axis=1, keepdims=True),
    }  # fmt: skip


def gru_forward(x: np.ndarray, a0: np.ndarray, parameters: dict) -> tuple[np.ndarray, list]:
    """x: (n_x, m, T_x), a0: (n_a, m)  ->  a: (n_a, m, T_x), one cache per step."""
    return forward_through_time(gru_cell_forward, x, a0, parameters)


def gru_backward(da: np.ndarray, caches: list) -> dict[str, np.ndarray]:
    """Backprop through time; da: (n_a, m, T_x) from the output layer -> dx, da0 and every "d" + parameter."""
    return backward_through_time(gru_cell_backward, da, caches)
