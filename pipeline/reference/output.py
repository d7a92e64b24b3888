"""The output layer and the loss shared by every cell.

    ŷ<t> = softmax(Wya a<t> + by)                      (n_y, m) at each step t
    J    = -(1/m) Σ_t Σ_i log ŷ<t>[y<t>_i, i]          cross-entropy, summed over time, averaged over the batch

Summing over time (rather than averaging) follows the curriculum's loss
"J = Σ_t J<t>"; averaging over the m examples keeps the size of a gradient
independent of the batch size.  Because softmax and cross-entropy meet, the
gradient of J with respect to the logits z<t> = Wya a<t> + by is simply
(ŷ<t> - one_hot(y<t>)) / m.
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.activations import softmax


def output_forward(a: np.ndarray, Wya: np.ndarray, by: np.ndarray) -> np.ndarray:
    """ŷ<t> = softmax(Wya a<t> + by) for every step at once.

    a: (n_a, m, T_x), Wya: (n_y, n_a), by: (n_y, 1)  ->  y_hat: (n_y, m, T_x)
    """
    z = np.einsum("ya,amt->ymt", Wya, a) + by[:, :, None]  # (n_y, m, T_x)
    return softmax(z)


def cross_entropy(y_hat: np.ndarray, y: np.ndarray) -> float:
    """J = -(1/m) Σ_t Σ_i log ŷ<t>[y<t>_i, i].

    y_hat: (n_y, m, T_x) probabilities; y: (m, T_x) integer class indices.
    """
    m = y.shape[0]
    p_true = np.take_along_axis(y_hat, y[None], axis=0)[0]  # (m, T_x): probability given to the right class
    return float(-np.sum(np.log(p_true)) / m)


def one_hot(y: np.ndarray, n_y: int) -> np.ndarray:
    """y: (m, T_x) integer indices -> (n_y, m, T_x) with a single 1 per column."""
    m, T_x = y.shape
    out = np.zeros((n_y, m, T_x))
    out[y, np.arange(m)[:, None], np.arange(T_x)[None, :]] = 1.0
    return out


def output_backward(
    y_hat: np.ndarray, y: np.ndarray, a: np.ndarray, Wya: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of J through the output layer.

    dz<t> = (ŷ<t> - one_hot(y<t>)) / m       (n_y, m, T_x)
    dWya  = Σ_t dz<t> a<t>ᵀ                  (n_y, n_a)
    dby   = Σ_t Σ_i dz<t>                    (n_y, 1)
    da<t> = Wyaᵀ dz<t>                        (n_a, m, T_x): what each a<t> receives from its own ŷ<t>;
                                              the cell's backward adds what it receives from step t+1.
    """
    m = y.shape[0]
    dz = (y_hat - one_hot(y, y_hat.shape[0])) / m  # (n_y, m, T_x)
    dWya = np.einsum("ymt,amt->ya", dz, a)
    dby = dz.sum(axis=(1, 2))[:, None]
    da = np.einsum("ya,ymt->amt", Wya, dz)
    return da, {"dWya": dWya, "dby": dby}
