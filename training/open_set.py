"""Open-set ("unknown") scores of a classifier and the threshold that turns one into a yes/no.

Every score here is oriented the same way: higher means less like the training classes.

- ``msp``: 1 - the maximum calibrated softmax score (Hendrycks and Gimpel, 2017, the baseline), computed so that
  it does not round to 0 for confident images;
- ``energy``: -logsumexp(logits) (Liu et al., 2020, at their temperature 1);
- ``mahalanobis``: the smallest squared Mahalanobis distance of the pooled backbone features to a class mean, with
  one covariance shared by the classes (Lee et al., 2018, on the last layer only, without input perturbation),
  fitted on the training split's features with Ledoit-Wolf shrinkage (1280 dimensions from about a thousand images
  would otherwise give a singular covariance).

The threshold is fitted on the validation split (known images only) so that a stated fraction of known images,
the false-rejection target, scores above it. The same numbers are computed in the exported graph
(:mod:`training.export`); the tests check that both agree. Numpy and scikit-learn only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score, roc_curve

from tlserve import contract

METHODS = contract.UNKNOWN_METHODS
DEFAULT_METHOD = "mahalanobis"  # the best AUROC in bench/results/open_set.json (docs/training.md has the table)
DEFAULT_FALSE_REJECTION = 0.01


@dataclass
class Gaussian:
    """Class means and a shared precision, stored as a factor: d(f, c) = ||f @ factor - projected_means[c]||^2."""

    factor: np.ndarray  # [D, D], lower-triangular Cholesky factor L of the precision P = L @ L.T
    projected_means: np.ndarray  # [C, D] = means @ factor

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int) -> Gaussian:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        missing = sorted(set(range(num_classes)) - set(labels.tolist()))
        if missing:
            raise ValueError(f"no training features for classes {missing}")
        means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
        centred = features - means[labels]
        precision = LedoitWolf(assume_centered=True).fit(centred).precision_
        precision = (precision + precision.T) / 2
        factor = np.linalg.cholesky(precision)
        return cls(factor=factor, projected_means=means @ factor)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """[N, C] squared Mahalanobis distances."""
        z = np.asarray(features, dtype=np.float64) @ self.factor
        return ((z[:, None, :] - self.projected_means[None]) ** 2).sum(axis=2)

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.distances(features).min(axis=1)


def scores(method: str, *, logits: np.ndarray, temperature: float = 1.0, features: np.ndarray | None = None,
           gaussian: Gaussian | None = None) -> np.ndarray:
    """The unknown score of each image ([N], float64) by ``method``."""
    if method == "msp":
        # 1 - p_max = r / (1 + r), r = sum over the other classes of exp(z - max z): exact where 1 - p_max would
        # round to 0 (a sharpening temperature gives p_max = 1.0 in float32 for most images, and the threshold
        # would collapse to 0).
        z = np.asarray(logits, dtype=np.float64) / temperature
        ratios = np.exp(z - z.max(axis=1, keepdims=True))
        ratios[np.arange(len(z)), z.argmax(axis=1)] = 0.0
        rest = ratios.sum(axis=1)
        return rest / (1.0 + rest)
    if method == "energy":
        z = np.asarray(logits, dtype=np.float64)
        top = z.max(axis=1)
        return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))
    if method == "mahalanobis":
        if features is None or gaussian is None:
            raise ValueError("mahalanobis needs the pooled features and a fitted Gaussian")
        return gaussian.score(features)
    raise ValueError(f"unknown open-set score {method!r}; choose from {METHODS}")


def fit_threshold(known_scores: np.ndarray, false_rejection: float) -> float:
    """The smallest observed score such that at most ``false_rejection`` of ``known_scores`` lie above it."""
    if not 0 <= false_rejection < 1:
        raise ValueError(f"the false-rejection target must be in [0, 1), not {false_rejection}")
    known = np.sort(np.asarray(known_scores, dtype=np.float64))
    if not len(known):
        raise ValueError("cannot fit a threshold on no images")
    allowed_above = int(np.floor(false_rejection * len(known) + 1e-9))
    return float(known[len(known) - 1 - allowed_above])


def rejection_rate(unknown_scores: np.ndarray, threshold: float) -> float:
    """The fraction of images called unknown (score above the threshold)."""
    return float(np.mean(np.asarray(unknown_scores) > threshold))


def auroc(known_scores: np.ndarray, unseen_scores: np.ndarray) -> float:
    """Area under the ROC curve of telling unseen images (positives, scoring high) from known ones."""
    y = np.r_[np.zeros(len(known_scores)), np.ones(len(unseen_scores))]
    return float(roc_auc_score(y, np.r_[known_scores, unseen_scores]))


def fpr_at_95_tpr(known_scores: np.ndarray, unseen_scores: np.ndarray) -> float:
    """The fraction of unseen images accepted as known when 95% of known images are accepted (Hendrycks' FPR95:
    known images are the positives, and a lower unknown score means more known)."""
    y = np.r_[np.ones(len(known_scores)), np.zeros(len(unseen_scores))]
    fpr, tpr, _ = roc_curve(y, -np.r_[known_scores, unseen_scores], drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


@dataclass
class UnknownScore:
    """What the export needs to compute and judge the unknown score (the metadata's "unknown", and the graph's)."""

    method: str
    threshold: float
    false_rejection_target: float
    temperature: float = 1.0
    gaussian: Gaussian | None = None
    measured: dict = field(default_factory=dict)  # e.g. false rejection on the validation and test splits

    def to_dict(self) -> dict:
        return {contract.UNKNOWN_METHOD: self.method, contract.UNKNOWN_THRESHOLD: self.threshold,
                contract.UNKNOWN_FALSE_REJECTION_TARGET: self.false_rejection_target,
                contract.UNKNOWN_OUTPUT: contract.UNKNOWN_SCORE_OUTPUT, "fitted_on": "validation", **self.measured}

    def score(self, logits: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        return scores(self.method, logits=logits, temperature=self.temperature, features=features,
                      gaussian=self.gaussian)


def fit_unknown(method: str, *, false_rejection: float, temperature: float, val_logits: np.ndarray,
                val_features: np.ndarray | None, train_features: np.ndarray | None, train_labels: np.ndarray | None,
                num_classes: int) -> UnknownScore:
    """Fit ``method`` (its Gaussian on the training split, if it has one) and its threshold on the validation split."""
    if method not in METHODS:
        raise ValueError(f"unknown open-set score {method!r}; choose from {METHODS}")
    gaussian = None
    if method == "mahalanobis":
        if train_features is None or train_labels is None:
            raise ValueError("mahalanobis needs the training split's features and labels")
        gaussian = Gaussian.fit(train_features, train_labels, num_classes)
    unknown = UnknownScore(method, 0.0, false_rejection, temperature, gaussian)
    val_scores = unknown.score(val_logits, val_features)
    unknown.threshold = fit_threshold(val_scores, false_rejection)
    unknown.measured["val_false_rejection"] = rejection_rate(val_scores, unknown.threshold)
    return unknown
