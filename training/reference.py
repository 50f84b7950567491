"""The drift reference of an export (issue 17): what the model predicts on its own test split.

The server compares a sliding window of live predictions with it (service/observability/drift.py). It holds
predicted classes, not true labels: live traffic has no labels, and comparing predictions with labels would show
the model's own test errors as drift. The true label frequencies ride along for the console.
"""

from __future__ import annotations

import numpy as np

from tlserve import contract


def prediction_reference(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """The metadata's ``contract.METADATA_REFERENCE`` object from the test split's served ``scores`` [n, C]
    (calibrated, as the export answers) and true ``labels`` [n]."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] != num_classes or len(scores) != len(labels):
        raise ValueError(f"scores must be [n, {num_classes}] with one label per row, got {scores.shape} "
                         f"and {len(labels)} labels")
    n = len(scores)
    if n == 0:
        raise ValueError("a reference needs at least one test image")
    top = scores.argmax(axis=1)
    bins = [contract.score_bin(s) for s in scores[np.arange(n), top]]

    def frequencies(values, size: int) -> list[float]:
        return [round(float(f), 6) for f in np.bincount(np.asarray(values, np.int64), minlength=size)[:size] / n]

    return {contract.REFERENCE_IMAGES: int(n),
            contract.REFERENCE_CLASS_FREQUENCIES: frequencies(top, num_classes),
            contract.REFERENCE_LABEL_FREQUENCIES: frequencies(labels, num_classes),
            contract.REFERENCE_SCORE_HISTOGRAM: frequencies(bins, contract.SCORE_BINS)}
