"""The squashing functions the cells use besides ``np.tanh`` (whose derivative is 1 - tanh²).

:func:`sigmoid` works element-wise; :func:`softmax` normalises over
axis 0 (the class axis): the reference keeps the curriculum's column layout,
where a batch of m examples is a matrix of shape ``(n, m)`` and a sequence adds
a last axis ``(n, m, T_x)``.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + exp(-z)); its derivative is σ(z) (1 - σ(z))."""
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    """softmax over axis 0: exp(z_k) / Σ_j exp(z_j).

    Subtracting the column maximum first changes nothing mathematically but keeps
    exp() from overflowing when a logit is large.
    """
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)
