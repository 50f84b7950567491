"""Scores to top-k predictions and unknown scores to confidence: the one rule, for classify and for records."""

from __future__ import annotations

import numpy as np

from service.core.dataplane import Prediction
from tlserve.contract import UNKNOWN_THRESHOLD, is_confident


def top_predictions(scores: np.ndarray, names: list[str], k: int) -> list[list[Prediction]]:
    """The ``k`` best classes of each row of ``scores`` [N, C], best first (ties in class order)."""
    k = min(k, scores.shape[1])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[Prediction(names[i], int(i), float(row[i])) for i in order]
            for row, order in zip(scores, best, strict=True)]


def confidences(unknown: np.ndarray | None, threshold: float | None, n: int) -> list[bool] | None:
    """Whether each of ``n`` images is confident; None when the export has no unknown score or no threshold applies
    (every image counts as one of its classes then, as ``is_confident`` says)."""
    if unknown is None or threshold is None or len(unknown) != n:
        return None
    return [is_confident(float(u), {UNKNOWN_THRESHOLD: threshold}) for u in unknown]
