"""Drift (issue 17): the PSI and its smoothing, the sliding window, the reference as read from metadata, and the
prediction metrics one request updates (a fresh registry: no server)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.observability.drift import EPSILON, Reference, Window, parse_reference, psi, smoothed
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from tlserve.contract import METADATA_REFERENCE, SCORE_BINS

UNIFORM3 = [1 / 3] * 3
HIST = [0.0] * 9 + [1.0]


def _meta(classes=UNIFORM3, hist=HIST, images=30, labels=UNIFORM3):
    return {METADATA_REFERENCE: {"images": images, "class_frequencies": classes, "label_frequencies": labels,
                                 "score_histogram": hist}}


def test_psi_is_zero_for_equal_distributions_and_matches_the_formula():
    e = smoothed([0.5, 0.3, 0.2])
    assert psi(e, e) == 0.0
    a = smoothed([0.2, 0.3, 0.5])
    assert psi(e, a) == pytest.approx(sum((y - x) * math.log(y / x) for x, y in zip(e, a, strict=True)))
    assert psi(e, a) == pytest.approx(0.3 * math.log(0.5 / 0.2) * 2, rel=1e-3)


def test_smoothing_keeps_an_empty_bin_finite_and_the_sum_one():
    s = smoothed([1.0, 0.0, 0.0])
    assert sum(s) == pytest.approx(1.0) and s[1] == pytest.approx(EPSILON / (1 + 3 * EPSILON))
    one_class = psi(smoothed(UNIFORM3), s)
    assert math.isfinite(one_class) and one_class > 2


def test_the_window_slides_and_counts_in_constant_space():
    w = Window(4, 3)
    for c in (0, 0, 1, 2):
        w.add(c, 9)
    assert w.full and w.class_counts == [2, 1, 1]
    w.add(2, 0)  # the first 0 leaves
    assert w.class_counts == [1, 1, 2] and w.bin_counts[0] == 1 and w.bin_counts[9] == 3
    assert w.class_frequencies() == [0.25, 0.25, 0.5]


def test_a_window_like_the_reference_is_near_zero_and_one_class_is_far():
    ref = parse_reference(_meta(), 3)
    like, skewed = Window(300, 3, ref), Window(300, 3, ref)
    for i in range(300):
        assert like.class_drift() is None  # not full yet
        like.add(i % 3, 9)
        skewed.add(1, 9)
    assert like.class_drift() < 1e-9 and like.score_drift() < 1e-9
    assert skewed.class_drift() > 0.2


def test_the_running_psi_is_the_formula_on_the_window_at_every_step():
    rng = np.random.default_rng(1)
    ref = parse_reference(_meta(classes=[0.5, 0.3, 0.2], hist=[0.1] * 10), 3)
    w = Window(50, 3, ref)
    for step in range(400):
        w.add(int(rng.choice(3, p=[0.2, 0.2, 0.6] if step > 200 else [0.5, 0.3, 0.2])), int(rng.integers(10)))
        if w.full:
            direct = psi(ref.class_expected, smoothed([c / w.size for c in w.class_counts]))
            assert w.class_drift() == pytest.approx(direct, abs=1e-12)
            assert w.score_drift() == pytest.approx(
                psi(ref.score_expected, smoothed([c / w.size for c in w.bin_counts])), abs=1e-12)
    assert w.class_drift() > 0.2


@pytest.mark.parametrize("bad", [
    {METADATA_REFERENCE: "x"}, _meta(classes=[0.5, 0.5]), _meta(classes=[0.5, 0.5, 0.5]), _meta(hist=[1.0]),
    _meta(images=0), _meta(images=True), _meta(classes=[float("nan"), 0.5, 0.5]), _meta(classes=[-1, 1, 1]),
    _meta(classes=["a", 0.5, 0.5]), _meta(labels=[1.0])])
def test_an_unusable_reference_is_no_reference_never_an_error(bad):
    assert parse_reference(bad, 3) is None


def test_an_export_without_a_reference_has_none():
    assert parse_reference({}, 3) is None
    ref = parse_reference(_meta(labels=None), 3)
    assert isinstance(ref, Reference) and ref.label_frequencies is None


def _value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_one_request_updates_score_classes_unconfident_and_drift_once_the_window_is_full():
    registry = CollectorRegistry()
    monitor = PredictionMonitor(Metrics(registry), window=10)
    ref = parse_reference(_meta(), 3)
    names = ["a", "b", "c"]
    scores = np.array([[0.05, 0.9, 0.05]] * 6)
    monitor.observe("m", 2, names, ref, scores, np.array([0.1, 0.1, 0.1, 0.1, 0.5, 0.6]), 0.3)
    assert _value(registry, "tlserve_predicted_class_total", model="m", version="2", **{"class": "b"}) == 6
    assert _value(registry, "tlserve_prediction_score_count", model="m", version="2") == 6
    assert _value(registry, "tlserve_prediction_score_bucket", model="m", version="2", le="0.8") == 0
    assert _value(registry, "tlserve_unconfident_total", model="m", version="2") == 2
    assert _value(registry, "tlserve_prediction_drift", model="m", version="2", kind="class") is None  # 6 of 10
    monitor.observe("m", 2, names, ref, scores, None, 0.3)
    drift = _value(registry, "tlserve_prediction_drift", model="m", version="2", kind="class")
    assert drift > 2 and _value(registry, "tlserve_prediction_drift", model="m", version="2", kind="score") < 0.01
    live = monitor.live()["m"]["2"]
    assert live["live"] == [0.0, 1.0, 0.0] and live["reference"] == pytest.approx(UNIFORM3)
    assert live["drift"]["class"] == pytest.approx(drift)


def test_without_a_reference_or_threshold_only_the_counts_move():
    registry = CollectorRegistry()
    monitor = PredictionMonitor(Metrics(registry), window=10)
    monitor.observe("old", 1, ["a", "b"], None, np.array([[0.3, 0.7]] * 20), np.array([9.0] * 20), None)
    assert _value(registry, "tlserve_predicted_class_total", model="old", version="1", **{"class": "b"}) == 20
    assert _value(registry, "tlserve_unconfident_total", model="old", version="1") == 0
    assert _value(registry, "tlserve_prediction_drift", model="old", version="1", kind="class") is None
    assert monitor.live()["old"]["1"]["drift"] is None
    monitor.observe("old", 1, ["a", "b"], None, np.zeros((2, 5)))  # not this version's classes: ignored
    assert _value(registry, "tlserve_prediction_score_count", model="old", version="1") == 20


def test_score_buckets_are_the_reference_bins():
    registry = CollectorRegistry()
    PredictionMonitor(Metrics(registry), window=10).observe("m", 1, ["a", "b"], None, np.array([[0.45, 0.55]]))
    les = {s.labels["le"] for f in registry.collect() if f.name == "tlserve_prediction_score" for s in f.samples
           if s.name.endswith("_bucket")}
    assert len(les) == SCORE_BINS + 1  # 0.1 .. 1.0 and +Inf


def test_an_unloaded_version_drops_its_window_and_its_drift_turns_nan():
    registry = CollectorRegistry()
    monitor = PredictionMonitor(Metrics(registry), window=10)
    ref = parse_reference(_meta(), 3)
    monitor.observe("m", 1, ["a", "b", "c"], ref, np.eye(3)[[0] * 10])
    assert _value(registry, "tlserve_prediction_drift", model="m", version="1", kind="class") > 0.2
    monitor.model_event("unloading", "m", 1, "UNLOADING", 0.0)
    assert "m" in monitor.live()
    monitor.model_event("unloaded", "m", 1, "END", 0.0)
    assert math.isnan(_value(registry, "tlserve_prediction_drift", model="m", version="1", kind="class"))
    assert monitor.live() == {}
