"""What a model predicts, per model and version (issue 17): the top-1 score histogram, the predicted classes, the
unconfident images and the drift of a sliding window against the export's reference (``drift.py``).

The data plane calls ``PredictionMonitor.observe`` once per request that yields a tlserve export's scores. Its cost
is O(1) per image (a numpy argmax of the request's scores aside): the metric children of a version are resolved
once, when it is first seen, and its window is two preallocated rings with running PSI terms (``drift.Window``;
the measured figure: docs/serving.md, "Drift"; `bench/drift_observe.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from service.observability.drift import Reference, Window
from service.observability.metrics import Metrics
from tlserve.contract import score_bin


@dataclass
class _Watched:
    """One version's window and the metric children it updates."""

    class_names: tuple[str, ...]
    reference: Reference | None
    window: Window
    score: Histogram
    classes: list[Counter]
    unconfident: Counter
    drift: tuple[Gauge, Gauge] | None = None  # (class, score): made when first set, so absent means unknown, not 0


class PredictionMonitor:
    def __init__(self, metrics: Metrics, window: int):
        self.metrics = metrics
        self.window_size = window
        self._watched: dict[tuple[str, int], _Watched] = {}

    def _watch(self, model: str, version: int, class_names: Sequence[str], reference: Reference | None) -> _Watched:
        key = (model, version)
        watched = self._watched.get(key)
        # A version reloaded with other classes or another reference starts a new window.
        if watched is None or watched.class_names != tuple(class_names) or watched.reference is not reference:
            m, v = self.metrics, str(version)
            watched = _Watched(tuple(class_names), reference, Window(self.window_size, len(class_names), reference),
                               m.prediction_score.labels(model, v),
                               [m.predicted_class.labels(model, v, name) for name in class_names],
                               m.unconfident.labels(model, v))
            self._watched[key] = watched
        return watched

    def observe(self, model: str, version: int, class_names: Sequence[str], reference: Reference | None,
                scores: np.ndarray, unknown_scores: np.ndarray | None = None,
                unknown_threshold: float | None = None) -> None:
        """One request's ``scores`` [n, classes] (and its ``unknown_scores`` [n], counted against the version's
        ``unknown_threshold`` when both exist). Scores of another shape are not this version's classes: ignored."""
        if scores.ndim != 2 or scores.shape[1] != len(class_names) or not len(scores):
            return
        w = self._watch(model, version, class_names, reference)
        top = scores.argmax(axis=1)
        best = scores[np.arange(len(top)), top]
        window, observe_score, classes = w.window, w.score.observe, w.classes
        for c, s in zip(top.tolist(), best.tolist(), strict=True):
            observe_score(s)
            classes[c].inc()
            window.add(c, score_bin(s))
        if unknown_threshold is not None and unknown_scores is not None and len(unknown_scores) == len(top):
            rejected = int(np.count_nonzero(unknown_scores > unknown_threshold))  # contract.is_confident's rule
            if rejected:
                w.unconfident.inc(rejected)
        class_drift, score_drift = window.class_drift(), window.score_drift()
        if class_drift is not None and score_drift is not None:
            if w.drift is None:
                gauge, v = self.metrics.prediction_drift, str(version)
                w.drift = (gauge.labels(model, v, "class"), gauge.labels(model, v, "score"))
            w.drift[0].set(class_drift)
            w.drift[1].set(score_drift)

    def model_event(self, kind: str, model: str, version: int, state: str, seconds: float) -> None:
        """Called by the repository with ``Metrics.model_event``: an unloaded version's window is dropped and its
        drift gauges set to NaN, so that a frozen value of a version no longer served never keeps an alert
        firing (in BentoML's multiprocess mode a series cannot be removed, only overwritten)."""
        if kind != "unloaded":
            return
        watched = self._watched.pop((model, version), None)
        if watched is not None and watched.drift is not None:
            for gauge in watched.drift:
                gauge.set(math.nan)

    def live(self) -> dict[str, dict[str, dict]]:
        """For the console: per model and version, the window's class frequencies beside the reference's, and
        the drift (None until the window is full, or without a reference)."""
        out: dict[str, dict[str, dict]] = {}
        for (model, version), w in sorted(self._watched.items()):
            window, ref = w.window, w.reference
            class_drift = window.class_drift()
            out.setdefault(model, {})[str(version)] = {
                "window": window.count, "window_size": window.size, "classes": list(w.class_names),
                "live": window.class_frequencies(),
                "reference": list(ref.class_frequencies) if ref else None,
                "reference_labels": list(ref.label_frequencies) if ref and ref.label_frequencies else None,
                "drift": None if class_drift is None else {"class": class_drift, "score": window.score_drift()}}
        return out
