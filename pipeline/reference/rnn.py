"""The basic RNN cell (tanh), forward and backprop through time by hand.

    a<t> = tanh(Wax x<t> + Waa a<t-1> + ba)

Shapes follow the curriculum's column layout: x<t> is (n_x, m), a<t> is (n_a, m)
for a batch of m examples; a whole sequence x is (n_x, m, T_x).  Parameters:
Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1).

The matching torch module is ``torch.nn.RNN(n_x, n_a, nonlinearity="tanh")``:
weight_ih_l0 = Wax, weight_hh_l0 = Waa, and torch's two biases add up to ba
(bias_ih_l0 + bias_hh_l0 = ba), so each receives the same gradient dba.
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.initialization import random_parameters
from pipeline.reference.sequence import backward_through_time, forward_through_time

PARAMETER_NAMES = ("Wax", "Waa", "ba")


def init_parameters(n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small random weights and biases: W?x (n_a, n_x), W?a (n_a, n_a), b? (n_a, 1)."""
    return random_parameters(PARAMETER_NAMES, n_x, n_a, rng)


def rnn_cell_forward(xt: np.ndarray, a_prev: np.ndarray, parameters: dict) -> tuple[np.ndarray, tuple]:
    """One step: a<t> = tanh(Wax x<t> + Waa a<t-1> + ba).

    xt: (n_x, m), a_prev: (n_a, m)  ->  a_next: (n_a, m), cache for the backward step.
    """
    Wax, Waa, ba = parameters["Wax"], parameters["Waa"], parameters["ba"]
    a_next = np.tanh(Wax @ xt + Waa @ a_prev + ba)
    cache = (a_next, a_prev, xt, parameters)
    return a_next, cache


def rnn_cell_backward(da_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """One step back, given da_next = ∂J/∂a<t> (n_a, m).

    With z = Wax x<t> + Waa a<t-1> + ba and a<t> = tanh(z):
        dz       = da_next * (1 - a<t>²)
        dx<t>    = Waxᵀ dz          da<t-1> = Waaᵀ dz
        dWax     = dz x<t>ᵀ         dWaa    = dz a<t-1>ᵀ        dba = Σ_i dz
    """
    a_next, a_prev, xt, parameters = cache
    dz = da_next * (1.0 - a_next**2)  # (n_a, m)
    return {
        "dxt": parameters["Wax"].T @ dz,  # (n_x, m)
        "da_prev": parameters["Waa"].T @ dz,  # (n_a, m)
        "dWax": dz @ xt.T,  # (n_a, n_x)
        "dWaa": dz @ a_prev.T,  # (n_a, n_a)
        "dba": dz.sum(axis=1, keepdims=True),  # (n_a, 1)
    }


def rnn_forward(x: np.ndarray, a0: np.ndarray, parameters: dict) -> tuple[np.ndarray, list]:
    """Run the cell over a whole sequence.

    x: (n_x, m, T_x), a0: (n_a, m)  ->  a: (n_a, m, T_x) holding a<1> ... a<T_x>, and one cache per step.
    """
    return forward_through_time(rnn_cell_forward, x, a0, parameters)


def rnn_backward(da: np.ndarray, caches: list) -> dict[str, np.ndarray]:
    """Backprop through time (see ``sequence.backward_through_time`` for the walk back).

    da: (n_a, m, T_x) = ∂J/∂a<t> from the output layer  ->  dx (n_x, m, T_x), da0 (n_a, m), dWax, dWaa, dba.
    """
    return backward_through_time(rnn_cell_backward, da, caches)
