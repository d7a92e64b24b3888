"""One table of cells, and the whole model end to end: cell over the sequence, output layer, loss.

    a<1..T_x> = cell(x<1..T_x>, a<0>)        (n_a, m, T_x)
    ŷ<t>      = softmax(Wya a<t> + by)       (n_y, m, T_x)
    J         = cross-entropy(ŷ, y)          a float

:func:`loss_and_gradients` runs that forward and then everything backward, so the
gradients flow end to end: dWya, dby from the output layer, then backprop through
time for the cell's own parameters, the inputs x and the initial state a<0>.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from pipeline.reference import gru, gru_minimal, lstm, rnn
from pipeline.reference.output import cross_entropy, output_backward, output_forward


@dataclass(frozen=True)
class Cell:
    """What the model needs to know about a cell.

    ``forward(x, a0, parameters) -> (a, caches)``; ``backward(da, caches) -> gradients``;
    ``step(xt, state, parameters) -> state`` where ``state`` is a tuple whose first entry
    is a<t> ((a,) for one-state cells, (a, c) for the LSTM), used for sampling.
    """

    name: str
    parameter_names: tuple[str, ...]
    init_parameters: Callable[[int, int, np.random.Generator], dict]
    forward: Callable
    backward: Callable
    step: Callable
    input_weight: str  # the parameter that reads x<t>; its column count is n_x
    n_states: int = 1  # 1: state = (a<t>,); 2 for the LSTM: state = (a<t>, c<t>)


def _one_state_step(cell_forward: Callable) -> Callable:
    def step(xt, state, parameters):
        a_next, _ = cell_forward(xt, state[0], parameters)
        return (a_next,)

    return step


def _lstm_step(xt, state, parameters):
    a_next, c_next, _ = lstm.lstm_cell_forward(xt, state[0], state[1], parameters)
    return (a_next, c_next)


def _lstm_forward(x, a0, parameters):
    a, _, caches = lstm.lstm_forward(x, a0, parameters)  # c0 = 0; the model only reads a<t>
    return a, caches


def _lstm_cell(name: str, peephole: bool) -> Cell:
    return Cell(
        name=name,
        parameter_names=lstm.PARAMETER_NAMES + (lstm.PEEPHOLE_NAMES if peephole else ()),
        init_parameters=partial(lstm.init_parameters, peephole=peephole),
        forward=_lstm_forward,
        backward=lstm.lstm_backward,
        step=_lstm_step,
        input_weight="Wix",
        n_states=2,
    )


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", rnn.PARAMETER_NAMES, rnn.init_parameters, rnn.rnn_forward, rnn.rnn_backward,
                _one_state_step(rnn.rnn_cell_forward), "Wax"),
    "gru": Cell("gru", gru.PARAMETER_NAMES, gru.init_parameters, gru.gru_forward, gru.gru_backward,
                _one_state_step(gru.gru_cell_forward), "Wux"),
    "gru_minimal": Cell("gru_minimal", gru_minimal.PARAMETER_NAMES, gru_minimal.init_parameters,
                        gru_minimal.gru_minimal_forward, gru_minimal.gru_minimal_backward,
                        _one_state_step(gru_minimal.gru_minimal_cell_forward), "Wux"),
    "lstm": _lstm_cell("lstm", peephole=False),
    "lstm_peephole": _lstm_cell("lstm_peephole", peephole=True),
}  # fmt: skip


def get_cell(name: str) -> Cell:
    """The cell called ``name``; a wrong name raises ValueError listing the valid ones."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r} (valid: {', '.join(CELLS)})")
    return CELLS[name]


def init_model(cell_name: str, n_x: int, n_a: int, n_y: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The cell's parameters plus the output layer Wya (n_y, n_a) and by (n_y, 1), all float64."""
    rng = np.random.default_rng(seed)
    parameters = get_cell(cell_name).init_parameters(n_x, n_a, rng)
    scale = 1.0 / np.sqrt(n_a)
    parameters["Wya"] = rng.normal(0.0, scale, (n_y, n_a))
    parameters["by"] = rng.normal(0.0, scale, (n_y, 1))
    return parameters


def loss(cell_name: str, x: np.ndarray, y: np.ndarray, a0: np.ndarray, parameters: dict) -> float:
    """J for inputs x (n_x, m, T_x), integer targets y (m, T_x) and initial state a0 (n_a, m)."""
    a, _ = get_cell(cell_name).forward(x, a0, parameters)
    return cross_entropy(output_forward(a, parameters["Wya"], parameters["by"]), y)


def loss_and_gradients(
    cell_name: str, x: np.ndarray, y: np.ndarray, a0: np.ndarray, parameters: dict
) -> tuple[float, dict[str, np.ndarray]]:
    """J and its gradients: "d" + every parameter name (dWya, dby included), plus dx and da0.

    For the LSTM the dict also holds dc0, the gradient reaching the initial memory cell.
    """
    cell = get_cell(cell_name)
    a, caches = cell.forward(x, a0, parameters)  # (n_a, m, T_x)
    y_hat = output_forward(a, parameters["Wya"], parameters["by"])  # (n_y, m, T_x)
    da, output_gradients = output_backward(y_hat, y, a, parameters["Wya"])
    gradients = cell.backward(da, caches)
    return cross_entropy(y_hat, y), {**gradients, **output_gradients}
