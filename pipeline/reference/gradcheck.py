"""Checking the hand-written gradients two ways: finite differences, and torch autograd.

1. Finite differences.  For every entry θ_k of every parameter (and of the inputs x and
   a<0>), the central difference

       (J(θ + ε e_k) - J(θ - ε e_k)) / (2ε)         ε = 1e-5, in float64

   estimates ∂J/∂θ_k with an error of order ε² (truncation) + 1e-16 |J| / ε (rounding).
   Per parameter array, the analytic gradient g and the estimate n are compared by the
   curriculum's relative error ‖g - n‖ / (‖g‖ + ‖n‖), which must be < 1e-7.

2. torch autograd.  The same weights, mapped onto the matching torch module (see
   :mod:`pipeline.reference.torch_mapping`), the same inputs, the same output layer and
   loss; the loss and every gradient must agree to a relative error < 1e-10 in float64.

torch is imported only inside the torch check, so ``import pipeline.reference`` stays NumPy-only.
Problems are tiny (n_x = 3, n_a = 4, n_y = 3, m = 2, T_x = 5) and random: inputs x are
normal rather than one-hot so that dx is checked in every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.reference.model import CELLS, init_model, loss, loss_and_gradients

EPSILON = 1e-5
FINITE_DIFFERENCE_TOLERANCE = 1e-7
TORCH_TOLERANCE = 1e-10
SIZES = {"n_x": 3, "n_a": 4, "n_y": 3, "m": 2, "T_x": 5}


@dataclass(frozen=True)
class CheckResult:
    """One row of the report: one array of one cell, checked one way."""

    cell: str
    parameter: str  # a parameter name, "x", "a0", or "loss" (the value itself, torch check only)
    check: str  # "finite-diff" or "torch"
    relative_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.relative_error < self.tolerance)  # NaN fails


def relative_error(analytic: np.ndarray, other: np.ndarray) -> float:
    """‖g - n‖ / (‖g‖ + ‖n‖); 0 when both are exactly zero."""
    analytic, other = np.asarray(analytic, dtype=float), np.asarray(other, dtype=float)
    denominator = np.linalg.norm(analytic) + np.linalg.norm(other)
    return 0.0 if denominator == 0 else float(np.linalg.norm(analytic - other) / denominator)


def make_problem(cell_name: str, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """A tiny random problem: (parameters, x (n_x, m, T_x), y (m, T_x), a0 (n_a, m)), all float64."""
    s = SIZES
    parameters = init_model(cell_name, s["n_x"], s["n_a"], s["n_y"], seed=seed)
    rng = np.random.default_rng([seed, 1])  # a stream independent of the parameters'
    x = rng.normal(size=(s["n_x"], s["m"], s["T_x"]))
    y = rng.integers(0, s["n_y"], size=(s["m"], s["T_x"]))
    a0 = rng.normal(0.0, 0.5, size=(s["n_a"], s["m"]))
    return parameters, x, y, a0


def numerical_gradient(loss_fn: Callable[[], float], array: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Central differences of ``loss_fn()`` with respect to every entry of ``array``, perturbed in place."""
    gradient = np.zeros_like(array)
    for k in np.ndindex(array.shape):
        original = array[k]
        array[k] = original + epsilon
        loss_plus = loss_fn()
        array[k] = original - epsilon
        loss_minus = loss_fn()
        array[k] = original  # restore exactly: the next entry must see the unperturbed model
        gradient[k] = (loss_plus - loss_minus) / (2 * epsilon)
    return gradient


def check_gradients(
    cell_name: str, parameters: dict, x: np.ndarray, y: np.ndarray, a0: np.ndarray, gradients: dict
) -> list[CheckResult]:
    """Compare ``gradients`` ("d" + name -> array) with finite differences for every parameter, x and a0."""

    def loss_fn() -> float:
        return loss(cell_name, x, y, a0, parameters)

    arrays = {**parameters, "x": x, "a0": a0}
    return [
        CheckResult(cell_name, name, "finite-diff",
                    relative_error(gradients["d" + name], numerical_gradient(loss_fn, array)),
                    FINITE_DIFFERENCE_TOLERANCE)
        for name, array in arrays.items()
    ]  # fmt: skip


def finite_difference_check(cell_name: str, seed: int = 0) -> list[CheckResult]:
    """The hand-written backward of ``cell_name`` against finite differences, one row per array."""
    parameters, x, y, a0 = make_problem(cell_name, seed)
    _, gradients = loss_and_gradients(cell_name, x, y, a0, parameters)
    return check_gradients(cell_name, parameters, x, y, a0, gradients)


def torch_agreement_check(cell_name: str, seed: int = 0) -> list[CheckResult]:
    """The loss and every gradient against torch autograd on the matching module, same weights."""
    from pipeline.reference.torch_mapping import torch_loss_and_gradients  # torch stays out of the reference

    parameters, x, y, a0 = make_problem(cell_name, seed)
    reference_loss, gradients = loss_and_gradients(cell_name, x, y, a0, parameters)
    torch_loss, torch_gradients = torch_loss_and_gradients(cell_name, parameters, x, y, a0)
    rows = [CheckResult(cell_name, "loss", "torch", relative_error(reference_loss, torch_loss), TORCH_TOLERANCE)]
    for name in [*parameters, "x", "a0"]:
        error = relative_error(gradients["d" + name], torch_gradients["d" + name])
        rows.append(CheckResult(cell_name, name, "torch", error, TORCH_TOLERANCE))
    return rows


def run_checks(cells: Iterable[str] = tuple(CELLS), seed: int = 0) -> list[CheckResult]:
    """Both checks for each cell, finite differences first."""
    results: list[CheckResult] = []
    for cell_name in cells:
        results += finite_difference_check(cell_name, seed)
        results += torch_agreement_check(cell_name, seed)
    return results


def format_table(results: list[CheckResult]) -> str:
    """A fixed-width table, one row per result, and a one-line summary."""
    lines = [f"{'cell':<14} {'parameter':<10} {'check':<12} {'rel. error':>10}  {'tolerance':>9}  result"]
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        lines.append(
            f"{r.cell:<14} {r.parameter:<10} {r.check:<12} {r.relative_error:>10.2e}  {r.tolerance:>9.0e}  {verdict}"
        )
    failed = sum(not r.passed for r in results)
    lines.append(f"{failed} of {len(results)} checks FAILED" if failed else f"all {len(results)} checks passed")
    return "\n".join(lines)
