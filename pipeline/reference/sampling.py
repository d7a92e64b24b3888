"""Sampling a sequence from a trained model, one index at a time (the curriculum's ``sample``).

At each step the model turns the previous token into a distribution ŷ<t> over the
n_y symbols; the next index is *drawn* from it, with ``np.random.choice`` semantics
(index k comes out with probability ŷ<t>[k]), not taken as the argmax, so that running
twice gives two different sequences.  The drawn index is fed back as the next input
x<t+1> = one_hot(index), and sampling stops after the end token or ``max_length`` indices.

The first input x<1> is the zero vector (no previous symbol), as in the curriculum,
unless ``start_index`` is given.  Inputs are one-hot over the same symbols as the
output, so the model must have n_x = n_y.
"""

from __future__ import annotations

import numpy as np

from pipeline.reference.activations import softmax
from pipeline.reference.model import get_cell


def sample_index(probabilities: np.ndarray, rng: np.random.Generator) -> int:
    """Draw k with probability probabilities[k] (the semantics of np.random.choice(n, p=probabilities))."""
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    return int(rng.choice(probabilities.size, p=probabilities))


def sample(
    cell_name: str,
    parameters: dict,
    end_index: int,
    max_length: int = 50,
    seed: int | np.random.Generator | None = None,
    start_index: int | None = None,
) -> list[int]:
    """Sample indices until ``end_index`` is drawn (it is included) or ``max_length`` are drawn.

    The same ``seed`` (an int, or a Generator in the same state) gives the same sequence.
    """
    cell = get_cell(cell_name)
    n_y, n_a = parameters["Wya"].shape
    n_x = parameters[cell.input_weight].shape[1]
    if n_x != n_y:
        raise ValueError(f"sample: inputs must be one-hot over the outputs, but n_x = {n_x} and n_y = {n_y}")
    rng = np.random.default_rng(seed)
    x = np.zeros((n_x, 1))  # (n_x, 1): a batch of one
    if start_index is not None:
        x[start_index] = 1.0
    state = (np.zeros((n_a, 1)),) * cell.n_states  # a<0> (and c<0>) = 0
    indices: list[int] = []
    while len(indices) < max_length:
        state = cell.step(x, state, parameters)
        y_hat = softmax(parameters["Wya"] @ state[0] + parameters["by"])  # (n_y, 1)
        index = sample_index(y_hat, rng)
        indices.append(index)
        if index == end_index:
            break
        x = np.zeros((n_x, 1))
        x[index] = 1.0
    return indices
