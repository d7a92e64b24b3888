"""The same model in torch: reference weights mapped onto torch's modules, and torch's gradients.

The reference names every weight by what it connects (Wax, Wfa, ...); torch stacks a
cell's gates into one ``weight_ih`` (rows: one block of n_a per gate) and one ``weight_hh``,
with two biases (``bias_ih`` + ``bias_hh``, only ever used as a sum, except for the GRU's
candidate).  The mapping, per cell (";" stacks row blocks, 0 is a zero block):

    rnn            nn.RNN(tanh)       weight_ih_l0 = Wax    weight_hh_l0 = Waa    bias_ih_l0 = ba   bias_hh_l0 = 0
    gru            nn.GRU  (r, z, n)  weight_ih_l0 = [Wrx; -Wux; Wcx]   weight_hh_l0 = [Wra; -Wua; Wca]
                                      bias_ih_l0 = [br; -bu; bcx]       bias_hh_l0 = [0; 0; bca]
                                      (torch's z is 1 - Γu = σ(-...), hence the signs; bca sits inside Γr *)
    gru_minimal    MinimalGRUCell (u, c)  weight_ih = [Wux; Wcx]  weight_hh = [Wua; Wca]  bias = [bu; bc]
    lstm           nn.LSTM (i, f, g, o)   weight_ih_l0 = [Wix; Wfx; Wcx; Wox]  weight_hh_l0 = [Wia; Wfa; Wca; Woa]
                                          bias_ih_l0 = [bi; bf; bc; bo]        bias_hh_l0 = 0
    lstm_peephole  PeepholeLSTMCell       as lstm with one ``bias``, and w_ci = wic, w_cf = wfc, w_co = woc

The torch side is built as a *function of the reference weights*: each reference array
becomes a leaf tensor, the torch parameters are computed from the leaves by the mapping
above, and the module runs on them with ``torch.func.functional_call``.  Autograd then
returns the gradient of each reference array directly, through the mapping (so the
minus signs and the split biases are accounted for by the chain rule, not by hand).

torch is imported inside the functions: importing this module does not load torch.
"""

from __future__ import annotations

import numpy as np


def torch_parameters(cell_name: str, p: dict) -> dict:
    """Map reference tensors ``p`` (reference names and shapes) onto the torch module's parameter names."""
    import torch

    n_a = p["Wya"].shape[1]

    def block(name: str):  # "-Wux" means the block -Wux
        return -p[name[1:]] if name.startswith("-") else p[name]

    def rows(*names: str):  # stack (n_a, ·) blocks into torch's (k n_a, ·)
        return torch.cat([block(name) for name in names])

    def vector(*names: str):  # biases/peepholes: (n_a, 1) columns -> one flat (k n_a,) vector
        return rows(*names).reshape(-1)

    def zeros(k: int):  # k bias blocks torch has but the reference folds into the other bias
        return torch.zeros(k * n_a, dtype=torch.float64)

    if cell_name == "rnn":
        return {"weight_ih_l0": p["Wax"], "weight_hh_l0": p["Waa"], "bias_ih_l0": vector("ba"), "bias_hh_l0": zeros(1)}
    if cell_name == "gru":
        return {
            "weight_ih_l0": rows("Wrx", "-Wux", "Wcx"),
            "weight_hh_l0": rows("Wra", "-Wua", "Wca"),
            "bias_ih_l0": vector("br", "-bu", "bcx"),
            "bias_hh_l0": torch.cat([zeros(2), vector("bca")]),
        }
    if cell_name == "gru_minimal":
        return {"weight_ih": rows("Wux", "Wcx"), "weight_hh": rows("Wua", "Wca"), "bias": vector("bu", "bc")}
    lstm = {"weight_ih": rows("Wix", "Wfx", "Wcx", "Wox"), "weight_hh": rows("Wia", "Wfa", "Wca", "Woa")}
    if cell_name == "lstm":
        return {
            "weight_ih_l0": lstm["weight_ih"],
            "weight_hh_l0": lstm["weight_hh"],
            "bias_ih_l0": vector("bi", "bf", "bc", "bo"),
            "bias_hh_l0": zeros(4),
        }
    if cell_name == "lstm_peephole":
        return {
            **lstm,
            "bias": vector("bi", "bf", "bc", "bo"),
            "w_ci": vector("wic"),
            "w_cf": vector("wfc"),
            "w_co": vector("woc"),
        }
    raise ValueError(f"no torch counterpart for cell {cell_name!r}")


def torch_module(cell_name: str, n_x: int, n_a: int):
    """The torch module that matches ``cell_name``, in float64."""
    import torch

    if cell_name in ("gru_minimal", "lstm_peephole"):
        from pipeline.models.cells import MinimalGRUCell, PeepholeLSTMCell  # the project's custom cells

        module = (MinimalGRUCell if cell_name == "gru_minimal" else PeepholeLSTMCell)(n_x, n_a)
    else:
        module = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell_name](n_x, n_a)
    return module.double()


def torch_hidden_sequence(cell_name: str, module, weights: dict, x, a0):
    """Run the module on x (T_x, m, n_x) from h0 = a0 (m, n_a) (and c0 = 0)  ->  a<1..T_x>: (T_x, m, n_a)."""
    import torch
    from torch.func import functional_call

    def call(*args):
        return functional_call(module, weights, args)

    c0 = torch.zeros_like(a0)
    if cell_name in ("rnn", "gru"):
        return call(x, a0[None])[0]
    if cell_name == "lstm":
        return call(x, (a0[None], c0[None]))[0]
    state = (a0, c0) if cell_name == "lstm_peephole" else a0
    outputs = []
    for xt in x.unbind(0):  # cells take one step at a time
        state = call(xt, state)
        outputs.append(state[0] if cell_name == "lstm_peephole" else state)
    return torch.stack(outputs)


def torch_loss_and_gradients(
    cell_name: str, parameters: dict, x: np.ndarray, y: np.ndarray, a0: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """J and "d" + name gradients (every parameter, x, a0) computed by torch autograd, in reference layout.

    Same model as :func:`pipeline.reference.model.loss_and_gradients`: torch's time-major
    layout (T_x, m, ·) is the transpose of the reference's (·, m, T_x).
    """
    import torch

    leaves = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True) for name, value in parameters.items()}
    x_t = torch.tensor(x.transpose(2, 1, 0), dtype=torch.float64, requires_grad=True)  # (T_x, m, n_x)
    a0_t = torch.tensor(a0.T, dtype=torch.float64, requires_grad=True)  # (m, n_a)
    n_x, m, _ = x.shape
    module = torch_module(cell_name, n_x, a0.shape[0])
    a = torch_hidden_sequence(cell_name, module, torch_parameters(cell_name, leaves), x_t, a0_t)  # (T_x, m, n_a)
    logits = a @ leaves["Wya"].T + leaves["by"][:, 0]  # (T_x, m, n_y)
    targets = torch.tensor(y.T, dtype=torch.long)  # (T_x, m)
    n_y = logits.shape[-1]
    loss_sum = torch.nn.functional.cross_entropy(logits.reshape(-1, n_y), targets.reshape(-1), reduction="sum")
    J = loss_sum / m  # summed over time, averaged over the batch, as in pipeline.reference.output
    J.backward()
    gradients = {"d" + name: leaf.grad.numpy() for name, leaf in leaves.items()}
    gradients["dx"] = x_t.grad.numpy().transpose(2, 1, 0)  # back to (n_x, m, T_x)
    gradients["da0"] = a0_t.grad.numpy().T
    return J.item(), gradients
