"""Recurrent sequence models: a registry of cells, causal and bidirectional LMs, checkpoints and sampling.

``build_model(cfg, vocab_size)`` is the entry point; ``MODEL_REGISTRY`` names the valid ``cell`` values.
``build_head_model(kind, cfg, vocab_size, num_outputs)`` builds a tagger, classifier or conditioned LM over
the same cells (``HEAD_MODELS`` names the kinds; see :mod:`.heads`).
Importing this package imports torch and nothing heavier.  :mod:`.checkpoint`, :mod:`.sampling` and
:mod:`.objective` (the language-model loss that training and scoring share) are imported from their modules
(``from pipeline.models.sampling import sample``).
"""

from pipeline.models.heads import HEAD_MODELS, ConditionedLM, SequenceClassifier, SequenceTagger, build_head_model
from pipeline.models.language_model import (
    BidirectionalLM,
    BiLogits,
    NonCausalModelError,
    SequenceModel,
    detach_state,
    ensure_causal,
)
from pipeline.models.registry import MODEL_REGISTRY, build_model, count_parameters
from pipeline.models.softmax import AdaptiveSoftmax

__all__ = [
    "AdaptiveSoftmax",
    "HEAD_MODELS",
    "MODEL_REGISTRY",
    "BiLogits",
    "BidirectionalLM",
    "ConditionedLM",
    "NonCausalModelError",
    "SequenceClassifier",
    "SequenceModel",
    "SequenceTagger",
    "build_head_model",
    "build_model",
    "count_parameters",
    "detach_state",
    "ensure_causal",
]
