"""The two recurrent cells cuDNN lacks, written out in the curriculum's notation, and a stack that runs them.

Notation: x<t> is the input at step t, a<t> the hidden state (activation) a layer passes up and on,
c<t> the memory cell, Γ a gate (a sigmoid in (0, 1)), ``*`` the element-wise product.

Each cell is split in two so that a layer can hoist the input half out of the time loop:
``input_projection(x)`` computes W x + b for every step at once (one big matmul over (B, T, I)), and
``step(projected_x_t, state)`` does the recurrent half for one step.  ``forward(x_t, state)`` does both for a
single step, like ``torch.nn.LSTMCell``.

:class:`CellStack` runs a cell over time iterating ``x.unbind(1)``: indexing ``x[:, t]`` inside the loop makes
backward roughly quadratic in the sequence length (each index op's backward scatters into a full-size zero
tensor; see PERF-NOTES), while ``unbind`` has one backward for the whole sequence.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = Tensor | tuple[Tensor, Tensor]


def _uniform_init(module: nn.Module, hidden_size: int) -> None:
    # torch's own RNN cells draw every parameter from U(-1/sqrt(H), 1/sqrt(H)); same here, so the custom
    # cells start from the same scale as nn.LSTM/nn.GRU and comparisons between them are fair.
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)


class PeepholeLSTMCell(nn.Module):
    """LSTM with peephole connections: the gates also look at the previous memory cell c<t-1>.

    With [a<t-1>, x<t>] the previous activation and the input::

        Γi  = σ(W_i x<t> + U_i a<t-1> + w_ci * c<t-1> + b_i)      update (input) gate
        Γf  = σ(W_f x<t> + U_f a<t-1> + w_cf * c<t-1> + b_f)      forget gate
        c~  = tanh(W_c x<t> + U_c a<t-1> + b_c)                   candidate memory
        Γo  = σ(W_o x<t> + U_o a<t-1> + w_co * c<t-1> + b_o)      output gate
        c<t> = Γf * c<t-1> + Γi * c~
        a<t> = Γo * tanh(c<t>)

    The peepholes ``w_ci``, ``w_cf``, ``w_co`` are diagonal (vectors of size H, an element-wise product), as in
    Gers & Schmidhuber; all three gates see c<t-1> ("gate values depend on c<t-1> too").  With the peepholes
    at zero this is exactly ``torch.nn.LSTMCell`` (whose ``bias_ih + bias_hh`` is ``bias`` here).

    Parameters, in torch's gate order i, f, g (= c~), o: ``weight_ih`` (4H, I) = [W_i; W_f; W_c; W_o],
    ``weight_hh`` (4H, H) = [U_i; U_f; U_c; U_o], ``bias`` (4H), ``w_ci``, ``w_cf``, ``w_co`` (H).
    State: ``(a, c)``, each (B, H).
    """

    has_memory_cell = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.w_ci = nn.Parameter(torch.empty(hidden_size))
        self.w_cf = nn.Parameter(torch.empty(hidden_size))
        self.w_co = nn.Parameter(torch.empty(hidden_size))
        _uniform_init(self, hidden_size)

    def input_projection(self, x: Tensor) -> Tensor:
        """W x + b for any leading shape: (..., I) -> (..., 4H)."""
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def step(self, projected: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One step from the projected input (B, 4H) and (a<t-1>, c<t-1>); returns (a<t>, (a<t>, c<t>))."""
        a_prev, c_prev = state  # (B, H) each
        z = projected + a_prev @ self.weight_hh.t()  # (B, 4H)
        z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
        gate_i = torch.sigmoid(z_i + self.w_ci * c_prev)
        gate_f = torch.sigmoid(z_f + self.w_cf * c_prev)
        gate_o = torch.sigmoid(z_o + self.w_co * c_prev)
        c = gate_f * c_prev + gate_i * torch.tanh(z_g)
        a = gate_o * torch.tanh(c)
        return a, (a, c)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step on x<t> (B, I); returns (a<t>, c<t>) like ``nn.LSTMCell``."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        return self.step(self.input_projection(x), state)[1]


class MinimalGRUCell(nn.Module):
    """The simplified GRU of the curriculum: an update gate only, and the memory cell is the activation.

    ::

        Γu  = σ(W_u x<t> + U_u c<t-1> + b_u)       update gate
        c~  = tanh(W_c x<t> + U_c c<t-1> + b_c)    candidate memory
        c<t> = Γu * c~ + (1 - Γu) * c<t-1>
        a<t> = c<t>

    There is no relevance (reset) gate Γr: the full GRU's ``c~ = tanh(W_c x + Γr * (U_c c<t-1>) + b_c)`` with
    Γr = 1.  Parameters: ``weight_ih`` (2H, I) = [W_u; W_c], ``weight_hh`` (2H, H) = [U_u; U_c], ``bias`` (2H)
    = [b_u; b_c].  State: c (B, H).
    """

    has_memory_cell = False

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        _uniform_init(self, hidden_size)

    def input_projection(self, x: Tensor) -> Tensor:
        """W x + b for any leading shape: (..., I) -> (..., 2H)."""
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def step(self, projected: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One step from the projected input (B, 2H) and c<t-1> (B, H); returns (a<t>, c<t>), the same tensor."""
        z = projected + state @ self.weight_hh.t()  # (B, 2H): without Γr, U_c c<t-1> joins the same matmul
        z_u, z_c = z.chunk(2, dim=1)
        gate_u = torch.sigmoid(z_u)
        c = gate_u * torch.tanh(z_c) + (1.0 - gate_u) * state
        return c, c

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """One step on x<t> (B, I); returns c<t> (B, H) like ``nn.GRUCell``."""
        if state is None:
            state = x.new_zeros(x.shape[0], self.hidden_size)
        return self.step(self.input_projection(x), state)[1]


CELL_TYPES: dict[str, type[nn.Module]] = {"lstm_peephole": PeepholeLSTMCell, "gru_minimal": MinimalGRUCell}


class CellStack(nn.Module):
    """``num_layers`` cells stacked in depth, run over (B, T, I) batch-first input like ``nn.LSTM``.

    Layer l > 0 reads layer l-1's activations a<t> through dropout (training mode only, none after the top
    layer: the model applies its own before the output layer), exactly torch's ``nn.LSTM(dropout=p)``.
    State follows torch's layout: (L, B, H), or a tuple ``(a, c)`` of two for cells with a memory cell.
    """

    def __init__(self, cell_type: type[nn.Module], input_size: int, hidden_size: int, num_layers: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(cell_type(size, hidden_size) for size in sizes)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.has_memory_cell = bool(cell_type.has_memory_cell)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """Zeros in this stack's state layout."""
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone()) if self.has_memory_cell else zeros

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, T, I) -> (top layer's activations (B, T, H), final state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        finals = []
        for depth, cell in enumerate(self.cells):
            if depth > 0:
                x = self.dropout(x)
            layer_state = (state[0][depth], state[1][depth]) if self.has_memory_cell else state[depth]
            x, layer_state = _run_layer(cell, x, layer_state)
            finals.append(layer_state)
        if self.has_memory_cell:
            return x, (torch.stack([s[0] for s in finals]), torch.stack([s[1] for s in finals]))
        return x, torch.stack(finals)


def _run_layer(cell: nn.Module, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One layer over time: the input half for all steps in one matmul, then the recurrence step by step."""
    projected = cell.input_projection(x)  # (B, T, kH)
    outputs = []
    for projected_t in projected.unbind(1):  # unbind, not projected[:, t]: keeps backward linear in T
        out, state = cell.step(projected_t, state)
        outputs.append(out)
    return torch.stack(outputs, dim=1), state  # (B, T, H)
