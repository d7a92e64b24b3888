"""Running a one-state cell (RNN, GRU, minimal GRU) over a sequence, and backprop through time.

A cell here is a pair of functions:
    cell_forward(xt, a_prev, parameters)  -> a_next, cache
    cell_backward(da_next, cache)         -> {"dxt", "da_prev", "dW..." for each parameter}
The LSTM carries two states (a<t>, c<t>) and has its own loop in ``lstm.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def forward_through_time(cell_forward: Callable, x: np.ndarray, a0: np.ndarray, parameters: dict):
    """Apply the cell at t = 1 ... T_x, feeding each a<t> into the next step.

    x: (n_x, m, T_x), a0: (n_a, m)  ->  a: (n_a, m, T_x) holding a<1> ... a<T_x>, and one cache per step.
    """
    n_x, m, T_x = x.shape
    a = np.zeros((a0.shape[0], m, T_x))
    a_next, caches = a0, []
    for t in range(T_x):
        a_next, cache = cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        caches.append(cache)
    return a, caches


def backward_through_time(cell_backward: Callable, da: np.ndarray, caches: list) -> dict[str, np.ndarray]:
    """Backprop through time.

    da: (n_a, m, T_x) holds ∂J/∂a<t> from the output layer at each step only.  Walking back
    from t = T_x to 1, the gradient that reaches a<t> is that local part plus what flows back
    from step t+1 through a<t+1> (da_prev).  Parameter gradients are summed over the steps
    because the same weights are used at every step.

    Returns dx (n_x, m, T_x), da0 (n_a, m) and "d" + name for every parameter of the cell.
    """
    n_a, m, T_x = da.shape
    dxs, gradients = [None] * T_x, {}
    da_prev = np.zeros((n_a, m))  # nothing flows back into the last step from the future
    for t in reversed(range(T_x)):
        step = cell_backward(da[:, :, t] + da_prev, caches[t])
        dxs[t], da_prev = step.pop("dxt"), step.pop("da_prev")
        for name, gradient in step.items():
            gradients[name] = gradients.get(name, 0.0) + gradient
    return {"dx": np.stack(dxs, axis=-1), "da0": da_prev, **gradients}
