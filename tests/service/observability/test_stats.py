"""The console's live figures: quantiles from histogram buckets, and windowed figures from a real Metrics registry."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from service.batching.batcher import BatchStats
from service.observability.metrics import Metrics
from service.observability.stats import StatsWindow, histogram_quantile

INF = math.inf


@pytest.mark.parametrize("q, buckets, expected", [
    (0.5, [(1.0, 0), (2.0, 10), (INF, 10)], 1.5),  # all ten in (1, 2]: the median half-way through it
    (0.99, [(1.0, 0), (2.0, 10), (INF, 10)], 1.99),
    (0.5, [(0.1, 4), (0.2, 8), (INF, 8)], 0.1),  # rank 4 is the top of the first bucket
    (0.25, [(0.1, 4), (0.2, 8), (INF, 8)], 0.05),  # the first bucket starts at 0
    (0.75, [(0.1, 4), (0.2, 8), (INF, 8)], 0.15),
    (0.99, [(0.1, 1), (0.2, 1), (INF, 100)], 0.2),  # rank in +Inf: the highest finite bound
])
def test_histogram_quantile_interpolates_inside_the_bucket(q, buckets, expected):
    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_of_nothing_is_none_and_bad_q_is_refused():
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 0), (INF, 0)]) is None
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, [(1.0, 1), (INF, 1)])


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_reports_rate_quantiles_batches_queue_and_errors_by_code():
    metrics, clock = Metrics(CollectorRegistry()), Clock()
    window = StatsWindow(metrics, window_s=60, clock=clock)
    for _ in range(18):
        metrics.observe_request("digits", "1", "classify", "classify", "200", 0.015)  # bucket (0.01, 0.025]
    metrics.observe_request("digits", "1", "grpc-classifier", "Classify", "OK", 0.015)
    metrics.observe_request("digits", "1", "classify", "classify", "503", 0.0005)
    metrics.observe_request("digits", "1", "grpc-classifier", "Classify", "UNAVAILABLE", 0.0005)
    metrics.observe_request("other", "3", "v2", "infer", "404", 0.0005)
    metrics.observe_request("", "", "classify", "classify", "400", 0.0005)  # named no model: not a model's figure
    metrics.observe_batch("digits", 1, BatchStats(size=4, run_s=0.01, queue_waits_s=[0.001] * 4), queue_depth=3)
    metrics.observe_batch("digits", 1, BatchStats(size=2, run_s=0.01, queue_waits_s=[0.001] * 2), queue_depth=5)
    clock.now += 10

    figures = window.figures()
    assert set(figures) == {"digits", "other"}
    digits = figures["digits"]
    assert digits["requests"] == 21 and digits["window_s"] == 10
    assert digits["request_rate"] == pytest.approx(2.1)
    # 2 of 21 at 0.5 ms (first bucket, [0, 1 ms]), 19 in (10 ms, 25 ms]: rank 10.5 is 8.5/19 into that bucket.
    assert digits["p50_s"] == pytest.approx(0.01 + 0.015 * 8.5 / 19)
    assert digits["p99_s"] == pytest.approx(0.01 + 0.015 * (0.99 * 21 - 2) / 19)
    assert digits["mean_batch_size"] == pytest.approx(3.0)
    assert digits["queue_depth"] == 5
    assert digits["errors"] == {"503": 1, "UNAVAILABLE": 1}
    assert figures["other"]["errors"] == {"404": 1} and figures["other"]["mean_batch_size"] is None


def test_window_forgets_what_is_older_than_the_window():
    metrics, clock = Metrics(CollectorRegistry()), Clock()
    window = StatsWindow(metrics, window_s=60, clock=clock)
    for _ in range(30):
        metrics.observe_request("digits", "1", "classify", "classify", "200", 0.015)
    clock.now += 30
    assert window.figures()["digits"]["requests"] == 30  # snapshot at t+30 holds the 30
    clock.now += 40
    metrics.observe_request("digits", "1", "classify", "classify", "500", 0.5)
    # t+70: the newest snapshot at least 60 s old is still the first one (t+0)
    assert (window.figures()["digits"]["window_s"], window.figures()["digits"]["requests"]) == (70, 31)
    clock.now += 30
    later = window.figures()["digits"]  # t+100: the baseline is now the snapshot of t+30
    assert later["window_s"] == 70 and later["requests"] == 1
    assert later["request_rate"] == pytest.approx(1 / 70)
    assert later["errors"] == {"500": 1}
    assert later["p50_s"] == pytest.approx(0.375)  # the one request alone, in (0.25, 0.5]
    clock.now += 100
    quiet = window.figures()["digits"]
    assert quiet["requests"] == 0 and quiet["request_rate"] == 0 and quiet["p50_s"] is None
    assert quiet["errors"] == {}
