"""Recurrent sequence models: a registry of cells, causal and bidirectional LMs, checkpoints and sampling.

``build_model(cfg, vocab_size)`` is the entry point; ``MODEL_REGISTRY`` names the valid ``cell`` values.
Importing this package imports torch and nothing heavier.  :mod:`.checkpoint` and :mod:`.sampling` are
imported from their modules (``from pipeline.models.sampling import sample``).
"""

from pipeline.models.language_model import (
    BidirectionalLM,
    BiLogits,
    NonCausalModelError,
    SequenceModel,
    detach_state,
    ensure_causal,
)
from pipeline.models.registry import MODEL_REGISTRY, build_model, count_parameters

__all__ = [
    "MODEL_REGISTRY",
    "BiLogits",
    "BidirectionalLM",
    "NonCausalModelError",
    "SequenceModel",
    "build_model",
    "count_parameters",
    "detach_state",
    "ensure_causal",
]
