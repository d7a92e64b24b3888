"""The figures every model is reported with, from a summed negative log-likelihood: pure Python, no torch.

One definition for the RNNs (``evaluate_split``), the training loop's validation rows and the n-gram baseline,
so ``metrics/*.json`` compares like with like: ``loss`` (mean NLL per predicted token, nats), ``perplexity``
(``exp(loss)``), ``bits_per_token`` (``loss / ln 2``), ``tokens``; ``bpc`` for character-level data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def summarize(sums: Sequence[Any], counts: Sequence[Any], names: tuple[str, ...]) -> dict[str, float]:
    """Mean NLL (``loss``, nats), ``perplexity`` and ``bits_per_token``; per direction when there are two.

    ``sums`` and ``counts`` hold one entry per direction (numbers or 0-d tensors)."""
    sums = [float(s) for s in sums]
    counts = [float(c) for c in counts]
    means = [s / c if c else float("nan") for s, c in zip(sums, counts, strict=True)]
    out = nll_figures("", sum(means) / len(means))
    out["tokens"] = int(counts[0])
    if len(names) > 1:
        for name, mean in zip(names, means, strict=True):
            out.update(nll_figures(f"{name}_", mean))
    return out


def perplexity(mean_nll: float) -> float:
    """``exp(mean_nll)``, the one perplexity every figure uses; inf from 700 nats up (near where ``exp`` overflows)
    and for NaN (a mean over nothing), so a diverged or empty run reports inf rather than raising."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def nll_figures(prefix: str, mean_nll: float) -> dict[str, float]:
    return {
        f"{prefix}loss": mean_nll,
        f"{prefix}perplexity": perplexity(mean_nll),
        f"{prefix}bits_per_token": mean_nll / math.log(2),
    }


def reported_figures(figures: dict[str, float], char_level: bool) -> dict[str, float]:
    """Figures as ``metrics/*.json`` reports them: ``bpc`` added for character-level data, floats rounded to
    6 places."""
    if char_level:
        figures = {**figures, "bpc": figures["bits_per_token"]}
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in figures.items()}
