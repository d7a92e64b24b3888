"""Figures the experiments report: accuracy, precision/recall/F1 of one class, the NLL of labels, confusion.

The perplexity of labels (how many classes the model is "choosing between" on average) is
:func:`pipeline.figures.perplexity` of their mean NLL (:func:`label_nll`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def label_nll(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> tuple[float, int]:
    """Summed NLL (nats) of ``labels`` (N,) under ``logits`` (N, C), and how many labels counted."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    return float(total), int((labels != ignore_index).sum())


def binary_scores(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the positive class (1), and accuracy, over flat 0/1 arrays."""
    predicted, actual = np.asarray(predicted).astype(bool), np.asarray(actual).astype(bool)
    true_pos = int((predicted & actual).sum())
    precision = true_pos / max(int(predicted.sum()), 1)
    recall = true_pos / max(int(actual.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float((predicted == actual).mean())}


def confusion(predicted: np.ndarray, actual: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) counts: row = actual class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(actual), np.asarray(predicted)), 1)
    return matrix


def argmax(logits: Tensor) -> np.ndarray:
    return torch.argmax(logits, dim=-1).cpu().numpy()
