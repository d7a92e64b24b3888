"""A trained model mixed with a Kneser-Ney n-gram: linear interpolation, its weight fitted on validation.

    P(w | h) = lambda * P_model(w | h) + (1 - lambda) * P_ngram(w | h)

Both are normalised distributions over the same vocabulary, so the mixture is one too and its perplexity is
comparable with either's.  Count models and neural ones make different mistakes (the n-gram remembers rare
phrases the network has seen a few times; the network generalises across contexts), so the mixture beats
both, by most where the network has been trained briefly: Mikolov et al. (2011) report a recurrent network
at 124.7 and a Kneser-Ney 5-gram at 141.2 giving 105.7 together on Penn Treebank.

``lambda`` maximises the validation likelihood (:func:`fit_weight`: expectation-maximisation, which
converges to the optimum since the log-likelihood is concave in ``lambda``); test is scored with that weight,
never tuned on it.  The n-gram is fitted on the training split only.  Each token is scored by both models
with the context :func:`pipeline.models.scoring.evaluate_split` gives the network and all of the split's
earlier tokens for the n-gram (its ``order - 1`` last ones).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pipeline import files
from pipeline.config import ConfigError, EvaluateConfig
from pipeline.evaluation.ngram import KneserNeyLM
from pipeline.figures import nll_figures, perplexity, reported_figures
from pipeline.models.scoring import token_log_probs

#: EM stops when lambda moves less than this in one iteration (or after MAX_ITERATIONS).
TOLERANCE = 1e-7
MAX_ITERATIONS = 1000


def fit_weight(model_log_probs: np.ndarray, ngram_log_probs: np.ndarray) -> float:
    """The ``lambda`` in [0, 1] that maximises ``sum log(lambda * p_model + (1 - lambda) * p_ngram)``."""
    a, b = np.asarray(model_log_probs, dtype=np.float64), np.asarray(ngram_log_probs, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need the same tokens scored by both models, got {a.shape} and {b.shape}")
    weight = 0.5
    for _ in range(MAX_ITERATIONS):
        if weight in (0.0, 1.0):  # a fixed point: one model gives every token zero probability
            return weight
        # The posterior that each token came from the model; lambda becomes its mean.
        updated = float(np.exp(a + math.log(weight) - mixture_log_probs(a, b, weight)).mean())
        if abs(updated - weight) < TOLERANCE:
            return updated
        weight = updated
    return weight


def mixture_log_probs(model_log_probs: np.ndarray, ngram_log_probs: np.ndarray, weight: float) -> np.ndarray:
    """log(weight * p_model + (1 - weight) * p_ngram) per token, computed in log space."""
    a, b = np.asarray(model_log_probs, dtype=np.float64), np.asarray(ngram_log_probs, dtype=np.float64)
    if weight >= 1.0:
        return a.copy()
    if weight <= 0.0:
        return b.copy()
    return np.logaddexp(a + math.log(weight), b + math.log1p(-weight))


def interpolate_dataset(model: nn.Module, cfg: EvaluateConfig, dataset: str, data_dir: Path,
                        splits: dict[str, np.ndarray], *, where: str, **scoring: Any) -> dict[str, Any] | None:
    """What ``evaluate.interpolate`` asks for ``dataset`` (None: nothing): :func:`interpolate` with the n-gram
    fitted on ``data_dir/train.npy`` (its first ``max_train_tokens`` when the dataset's entry sets a cap).  An
    empty validation split is refused in one line naming the key and file.
    ``scoring``: :func:`interpolate`'s keywords besides ``order`` (vocab_size, mode, batch_size, bptt, device,
    char_level)."""
    ngram = cfg.interpolate.get(dataset)
    if ngram is None:
        return None
    if not len(splits.get("val", ())):
        raise ConfigError(f"{where}: evaluate.interpolate.{dataset}: the mixture's weight is fitted on the validation "
                          f"split, and {data_dir / 'val.npy'} is empty: give the dataset a val share or remove it "
                          f"from evaluate.interpolate")
    train = files.read_tokens(data_dir / "train.npy")[: ngram.max_train_tokens]  # None: every token
    return interpolate(model, train, splits, order=ngram.order, **scoring)


def interpolate(model: nn.Module, train: np.ndarray, splits: dict[str, np.ndarray], *, order: int, vocab_size: int,
                mode: str, batch_size: int, bptt: int, device: Any, char_level: bool) -> dict[str, Any]:
    """Fit a Kneser-Ney ``order``-gram on ``train``, mix it with ``model`` (a causal LM) with the weight that is
    best on ``splits["val"]``, and score every split: the figures ``metrics/*.json`` reports under
    ``interpolated``, plus the n-gram's fit time and each side's own perplexity on the same tokens."""
    if "val" not in splits or not len(splits["val"]):
        raise ValueError("the interpolation weight is fitted on the validation split, which is empty")
    start = time.perf_counter()
    ngram = KneserNeyLM(order, vocab_size).fit(train)
    fit_seconds = time.perf_counter() - start
    scored = {}
    for name, ids in splits.items():
        if len(ids):
            positions, model_lp = token_log_probs(model, ids, mode=mode, batch_size=batch_size, bptt=bptt, device=device)
            scored[name] = (model_lp, ngram.token_log_probs(ids)[positions])
    weight = fit_weight(*scored["val"])
    out: dict[str, Any] = {"ngram_order": order, "model_weight": round(weight, 6),
                           "ngram_fit_seconds": round(fit_seconds, 3)}
    for name, (model_lp, ngram_lp) in scored.items():
        figures = nll_figures("", -float(mixture_log_probs(model_lp, ngram_lp, weight).mean()))
        figures["tokens"] = len(model_lp)
        figures["model_perplexity"] = perplexity(-float(model_lp.mean()))
        figures["ngram_perplexity"] = perplexity(-float(ngram_lp.mean()))
        out[name] = reported_figures(figures, char_level)
    return out
