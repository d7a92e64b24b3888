"""A NumPy reference for recurrent cells, written to be read: forward and backprop through time by hand.

Cells (one module each, same layout: ``*_cell_forward``, ``*_cell_backward``, ``*_forward``, ``*_backward``):
``rnn`` (tanh), ``gru`` (full, torch's variant), ``gru_minimal`` (update gate only), ``lstm``
(with or without peepholes).  ``output`` holds ŷ<t> = softmax(Wya a<t> + by) and the
cross-entropy; ``model`` chains cell, output and loss end to end; ``clipping`` and
``sampling`` are the curriculum's ``clip`` and ``sample``; ``gradcheck`` checks every
gradient against finite differences and torch autograd (``seqlab gradcheck``).

Notation and layout follow the curriculum: a<t> activation, c<t> memory cell, Γ gates
(Γu update, Γr reset, Γf forget, Γi input, Γo output), weights W<to><from> (Wax, Waa,
Wya, ...), biases b? as (n, 1) columns; a batch is columns, x: (n_x, m, T_x).

NumPy only: nothing here imports torch at import time (the torch check imports it lazily),
and nothing here imports the rest of ``pipeline``.
"""

from pipeline.reference.clipping import clip_by_global_norm, clip_by_value, global_norm
from pipeline.reference.model import CELLS, get_cell, init_model, loss, loss_and_gradients
from pipeline.reference.sampling import sample, sample_index

__all__ = [
    "CELLS",
    "clip_by_global_norm",
    "clip_by_value",
    "get_cell",
    "global_norm",
    "init_model",
    "loss",
    "loss_and_gradients",
    "sample",
    "sample_index",
]
