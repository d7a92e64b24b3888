"""The LSTM, with or without peephole connections, forward and backprop through time by hand.

    Γf    = σ(Wfx x<t> + Wfa a<t-1> + wfc * c<t-1> + bf)     forget gate
    Γi    = σ(Wix x<t> + Wia a<t-1> + wic * c<t-1> + bi)     input gate (the course's "update gate" Γu)
    c~<t> = tanh(Wcx x<t> + Wca a<t-1> + bc)                candidate
    c<t>  = Γf * c<t-1> + Γi * c~<t>
    Γo    = σ(Wox x<t> + Woa a<t-1> + woc * c<t-1> + bo)     output gate
    a<t>  = Γo * tanh(c<t>)

The peephole vectors wfc, wic, woc (n_a, 1) let each gate look at the previous
memory cell c<t-1> element-wise (a diagonal matrix, stored as its diagonal).  The
plain LSTM is exactly the peephole LSTM with wfc = wic = woc = 0: parameters
without them describe a plain LSTM, and the same code serves both.  (Here Γo sees
c<t-1>, as Γi and Γf do; Gers & Schmidhuber's original lets Γo see c<t>.)

Mapping to ``torch.nn.LSTM(n_x, n_a)``, whose rows come in the order i, f, g, o:
    weight_ih_l0 = [Wix; Wfx; Wcx; Wox]     weight_hh_l0 = [Wia; Wfa; Wca; Woa]
    bias_ih_l0 + bias_hh_l0 = [bi; bf; bc; bo]
and to ``pipeline.models.cells.PeepholeLSTMCell(n_x, n_a)``: the same rows, one
``bias``, and w_ci = wic, w_cf = wfc, w_co = woc.
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.activations import sigmoid
from pipeline.reference.initialization import random_parameters

PARAMETER_NAMES = ("Wfx", "Wfa", "bf", "Wix", "Wia", "bi", "Wcx", "Wca", "bc", "Wox", "Woa", "bo")
PEEPHOLE_NAMES = ("wfc", "wic", "woc")


def init_parameters(n_x: int, n_a: int, rng: np.random.Generator, peephole: bool = False) -> dict[str, np.ndarray]:
    """Small random weights, biases and (if ``peephole``) peephole vectors."""
    return random_parameters(PARAMETER_NAMES + (PEEPHOLE_NAMES if peephole else ()), n_x, n_a, rng)


def _peepholes(parameters: dict) -> tuple:
    """(wfc, wic, woc), or zeros for a plain LSTM (0.0 broadcasts like a zero vector)."""
    return tuple(parameters.get(name, 0.0) for name in PEEPHOLE_NAMES)


def lstm_cell_forward(xt: np.ndarray, a_prev: np.ndarray, c_prev: np.ndarray, parameters: dict):
    """One step.  xt: (n_x, m), a_prev and c_prev: (n_a, m)  ->  a_next, c_next: (n_a, m), cache."""
    p = parameters
    wfc, wic, woc = _peepholes(p)
    Γf = sigmoid(p["Wfx"] @ xt + p["Wfa"] @ a_prev + wfc * c_prev + p["bf"])  # (n_a, m)
    Γi = sigmoid(p["Wix"] @ xt + p["Wia"] @ a_prev + wic * c_prev + p["bi"])  # (n_a, m)
    c_tilde = np.tanh(p["Wcx"] @ xt + p["Wca"] @ a_prev + p["bc"])  # (n_a, m)
    c_next = Γf * c_prev + Γi * c_tilde
    Γo = sigmoid(p["Wox"] @ xt + p["Woa"] @ a_prev + woc * c_prev + p["bo"])  # (n_a, m)
    a_next = Γo * np.tanh(c_next)
    cache = (a_prev, c_prev, xt, Γf, Γi, c_tilde, c_next, Γo, parameters)
    return a_next, c_next, cache


def lstm_cell_backward(da_next: np.ndarray, dc_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """One step back, given da_next = ∂J/∂a<t> and dc_next = ∂J/∂c<t> from step t+1 (both (n_a, m)).

        dΓo = da_next * tanh(c<t>)
        dc  = dc_next + da_next * Γo * (1 - tanh²(c<t>))        all the gradient that reaches c<t>
        dΓf = dc * c<t-1>    dΓi = dc * c~    dc~ = dc * Γi
        dc<t-1> = dc * Γf  (+ the peephole paths wfc dz_f + wic dz_i + woc dz_o)
    where dz_g = dΓg * Γg (1 - Γg) for each gate and dz_c = dc~ (1 - c~²) are pre-activation gradients.
    The dc * Γf term is the cell's "constant error carousel": with Γf ≈ 1 it carries the gradient
    back unchanged.
    """
    a_prev, c_prev, xt, Γf, Γi, c_tilde, c_next, Γo, p = cache
    wfc, wic, woc = _peepholes(p)
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * Γo * (1.0 - tanh_c**2)  # (n_a, m)
    dz = {  # pre-activation gradient of each gate / the candidate, (n_a, m)
        "f": dc * c_prev * Γf * (1.0 - Γf),
        "i": dc * c_tilde * Γi * (1.0 - Γi),
        "c": dc * Γi * (1.0 - c_tilde**2),
        "o": da_next * tanh_c * Γo * (1.0 - Γo),
    }
    gradients = {
        "dxt": sum(p[f"W{g}x"].T @ dz[g] for g in "fico"),
        "da_prev": sum(p[f"W{g}a"].T @ dz[g] for g in "fico"),
        "dc_prev": dc * Γf + wfc * dz["f"] + wic * dz["i"] + woc * dz["o"],
    }
    for g in "fico":
        gradients[f"dW{g}x"] = dz[g] @ xt.T  # (n_a, n_x)
        gradients[f"dW{g}a"] = dz[g] @ a_prev.T  # (n_a, n_a)
        gradients[f"db{g}"] = dz[g].sum(axis=1, keepdims=True)  # (n_a, 1)
    if "wfc" in p:
        for g in "fio":
            gradients[f"dw{g}c"] = (dz[g] * c_prev).sum(axis=1, keepdims=True)  # (n_a, 1)
    return gradients


def lstm_forward(x: np.ndarray, a0: np.ndarray, parameters: dict, c0: np.ndarray | None = None):
    """x: (n_x, m, T_x), a0: (n_a, m), c0 (default zeros)  ->  a, c: (n_a, m, T_x), one cache per step."""
    n_x, m, T_x = x.shape
    a = np.zeros((a0.shape[0], m, T_x))
    c = np.zeros_like(a)
    a_next, c_next = a0, (np.zeros_like(a0) if c0 is None else c0)
    caches = []
    for t in range(T_x):
        a_next, c_next, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t], c[:, :, t] = a_next, c_next
        caches.append(cache)
    return a, c, caches


def lstm_backward(da: np.ndarray, caches: list) -> dict[str, np.ndarray]:
    """Backprop through time.  da: (n_a, m, T_x) = ∂J/∂a<t> from the output layer only.

    Two gradients flow back from step t+1: through a<t> (added to the local da<t>) and through
    c<t> (nothing from outside reaches c<t>, so it starts at 0).  Returns dx, da0, dc0 and every
    "d" + parameter, summed over the steps.
    """
    n_a, m, T_x = da.shape
    dxs, gradients = [None] * T_x, {}
    da_prev, dc_prev = np.zeros((n_a, m)), np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        step = lstm_cell_backward(da[:, :, t] + da_prev, dc_prev, caches[t])
        dxs[t], da_prev, dc_prev = step.pop("dxt"), step.pop("da_prev"), step.pop("dc_prev")
        for name, gradient in step.items():
            gradients[name] = gradients.get(name, 0.0) + gradient
    return {"dx": np.stack(dxs, axis=-1), "da0": da_prev, "dc0": dc_prev, **gradients}
