"""Random parameters for any cell, from the naming convention the reference uses.

A weight's name says where it goes and where it comes from: W<to><from>.  So
``Wax`` maps x<t> into a<t> and is (n_a, n_x); ``Wfa`` maps a<t-1> into the forget
gate and is (n_a, n_a); ``Wya`` maps a<t> into ŷ<t> and is (n_y, n_a).  Biases
``b?`` and peephole vectors ``w?c`` (lower-case w: used element-wise, a diagonal
matrix stored as its diagonal) are columns (n_a, 1).
"""

from __future__ import annotations

import numpy as np


def parameter_shape(name: str, n_x: int, n_a: int) -> tuple[int, int]:
    """Shape of a recurrent parameter from its name (see the module docstring)."""
    if name[0] in "bw":
        return (n_a, 1)
    return (n_a, n_x) if name.endswith("x") else (n_a, n_a)


def random_parameters(names: tuple[str, ...], n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Normal(0, 1/√n_a) for every weight and bias, so tanh and σ start in their steep middle.

    Biases are random rather than zero so that a gradient check exercises them too.
    """
    scale = 1.0 / np.sqrt(n_a)
    return {name: rng.normal(0.0, scale, parameter_shape(name, n_x, n_a)) for name in names}
