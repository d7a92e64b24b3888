"""Gradient clipping: the cure for exploding gradients (it does nothing for vanishing ones).

Both functions take a dict of gradient arrays (for example every "d" + parameter entry
of :func:`pipeline.reference.model.loss_and_gradients`), leave it untouched, and return
``(clipped, norm_before)`` where ``norm_before`` is the global L2 norm

    ‖g‖ = √(Σ over every array, every entry of g²)

measured before clipping, the number worth logging to see explosions happen.

* :func:`clip_by_value` clamps every entry to [-max_value, max_value] (the curriculum's
  ``np.clip(gradient, -maxValue, maxValue, out=gradient)``).  Cheap, but it can change the
  direction of the update.
* :func:`clip_by_global_norm` rescales all arrays by the same factor max_norm / ‖g‖ when
  ‖g‖ > max_norm, so the update keeps its direction and gets length max_norm
  (``torch.nn.utils.clip_grad_norm_`` does the same, up to its 1e-6 in the denominator).
"""

from __future__ import annotations

import numpy as np


def global_norm(gradients: dict[str, np.ndarray]) -> float:
    """‖g‖ = √(Σ_arrays Σ_entries g²)."""
    return float(np.sqrt(sum(np.sum(np.square(g)) for g in gradients.values())))


def clip_by_value(gradients: dict[str, np.ndarray], max_value: float) -> tuple[dict[str, np.ndarray], float]:
    """Clamp every entry to [-max_value, max_value]; returns (clipped copies, norm before clipping)."""
    if not max_value > 0:
        raise ValueError(f"clip_by_value: max_value must be > 0, got {max_value!r}")
    clipped = {name: np.clip(g, -max_value, max_value) for name, g in gradients.items()}
    return clipped, global_norm(gradients)


def clip_by_global_norm(gradients: dict[str, np.ndarray], max_norm: float) -> tuple[dict[str, np.ndarray], float]:
    """Rescale all gradients together so their global norm is at most max_norm.

    Returns (clipped copies, norm before clipping).  Gradients already within the bound are
    returned unchanged (as copies).
    """
    if not max_norm > 0:
        raise ValueError(f"clip_by_global_norm: max_norm must be > 0, got {max_norm!r}")
    norm = global_norm(gradients)
    scale = max_norm / norm if norm > max_norm else 1.0
    return {name: g * scale for name, g in gradients.items()}, norm
