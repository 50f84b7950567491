"""Temperature scaling (Guo et al., 2017) and the measures it is judged by: NLL, ECE and a reliability diagram.

One scalar ``T > 0`` divides the logits before the softmax; it is fitted on the validation split by minimising the
negative log-likelihood (of Platt's smoothed targets, so that a split with no errors still has a minimum), and
the export applies it inside the graph, so every signature's ``scores`` are calibrated.
Dividing by a positive number keeps the order of the logits: the argmax, and so the accuracy, never changes.
Numpy and scipy only (no TensorFlow), so the report and the benchmark can use it on plain arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
# Searched in log space; beyond these the logits were either useless or the validation split too small to say.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(logits, temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under ``softmax(logits / temperature)``."""
    labels = np.asarray(labels)
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


def nll_of_scores(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood from probabilities (clipped at 1e-12 so a zero costs 27.6, not infinity)."""
    labels = np.asarray(labels)
    picked = np.asarray(scores, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin over [0, 1] (the top score of each image): ``count``, mean ``confidence``
    and ``accuracy`` (None for an empty bin), and ``ece`` = sum over bins of count/n * |accuracy - confidence|.

    A bin holds confidences in (lo, hi]; the first also holds 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or len(scores) != len(labels) or len(labels) == 0:
        raise ValueError(f"need scores [n, C] and n labels, n > 0; got {scores.shape} and {labels.shape}")
    confidence = scores.max(axis=1)
    correct = scores.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        member = index == b
        count = int(member.sum())
        acc: float | None = None
        conf: float | None = None
        if count:
            acc, conf = float(correct[member].mean()), float(confidence[member].mean())
            ece += count / len(labels) * abs(acc - conf)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "count": count, "confidence": conf, "accuracy": acc})
    return {"bins": rows, "ece": float(ece)}


def ece(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error with ``bins`` equal-width bins of the top score."""
    return reliability(scores, labels, bins)["ece"]


def ece_floor(scores: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE that sampling alone gives these scores: the mean ECE of labels drawn from ``scores`` themselves.

    Such labels make the scores perfectly calibrated, yet with few images per bin each bin's accuracy is a
    noisy fraction: on 450 test digits with 15-19 errors this floor was 0.016 (90% of draws 0.010-0.022), so
    an ECE near 0.02 there is as low as that split can show. Fixed ``seed``: the same scores, the same floor.
    """
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(scores, axis=1)
    last = scores.shape[1] - 1
    found = [ece(scores, np.minimum((rng.random((len(scores), 1)) * cumulative[:, -1:] > cumulative).sum(axis=1),
                                    last), bins) for _ in range(draws)]
    return float(np.mean(found))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the cross-entropy of Platt's targets (bounded search over log T in
    [log 0.05, log 20]).

    The hard labels' NLL has no minimum when every image is right: it falls without end as T -> 0, and a small
    validation split of a good model is often all right (0 of 203 digits). Platt (1999) met the same problem with
    separable data by fitting to the targets a uniform prior gives: the label gets 1 - 1/(n + 2), and the other
    classes share the 1/(n + 2) left. With many images this is the plain NLL fit (1/(n + 2) -> 0).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on no images")
    n, classes = logits.shape
    doubt = 1.0 / (n + 2)
    targets = np.full((n, classes), doubt / max(classes - 1, 1))
    targets[np.arange(n), labels] = 1.0 - doubt
    result = minimize_scalar(lambda log_t: float(-(targets * log_softmax(logits, float(np.exp(log_t)))).sum(1).mean()),
                             bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)), method="bounded",
                             options={"xatol": 1e-5})
    return float(np.exp(result.x))


@dataclass
class Calibration:
    """The fitted temperature and how the test split scored before and after it (the metadata's "calibration")."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    ece_floor: float  # ece_floor() of the calibrated test scores: the part of ece_after that sampling alone gives
    fitted_on: str = "validation"
    measured_on: str = "test"
    bins: int = ECE_BINS

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(val_logits, val_labels, test_logits, test_labels) -> Calibration:
    """Fit on the validation split, measure on the test split."""
    t = fit_temperature(val_logits, val_labels)
    after = softmax(test_logits, t)
    return Calibration(temperature=t,
                       ece_before=ece(softmax(test_logits), test_labels),
                       ece_after=ece(after, test_labels),
                       nll_before=nll(test_logits, test_labels), nll_after=nll(test_logits, test_labels, t),
                       ece_floor=ece_floor(after))
