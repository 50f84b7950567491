"""The harness's figures: percentiles, the measured window, the median of repeats, the row schema."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bench.stats import ROW_FIELDS, Request, check_row, median_repeat, percentile, window


def test_percentile_matches_numpy_linear_interpolation():
    rng = random.Random(1)
    values = [rng.expovariate(1 / 20) for _ in range(137)]
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan_and_q_is_checked():
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_window_counts_requests_by_when_they_ended_and_counts_errors():
    warm_up = [Request(start_s=t / 10, ok=True, latency_s=0.05) for t in range(10)]  # ended before 1 s
    inside = [Request(start_s=1 + t / 10, ok=(t % 5 != 0), latency_s=0.010 * (t + 1)) for t in range(18)]
    slow = [Request(start_s=0.5, ok=True, latency_s=1.0)]  # started in the warm-up, ended at 1.5 s: counted
    drain = [Request(start_s=2.5 + t / 10, ok=True, latency_s=0.5) for t in range(5)]  # ended after 3 s
    w = window(warm_up + inside + slow + drain, start_s=1.0, seconds=2.0)
    ok_ms = [10.0 * (t + 1) for t in range(18) if t % 5 != 0] + [1000.0]
    assert w.errors == 4
    assert w.throughput == pytest.approx(len(ok_ms) / 2.0)
    assert w.p50_ms == pytest.approx(float(np.percentile(ok_ms, 50)))
    assert w.p99_ms == pytest.approx(float(np.percentile(ok_ms, 99)))
    assert len(w.cdf_ms) == 101 and w.cdf_ms[0] == 20.0 and w.cdf_ms[-1] == 1000.0
    with pytest.raises(ValueError):
        window(inside, start_s=1.0, seconds=0)


def test_open_loop_window_counts_every_planned_request_however_late():
    planned = [Request(start_s=1 + t / 10, ok=t != 3, latency_s=5.0) for t in range(20)]  # answers after the window
    w = window(planned + [Request(start_s=0.5, ok=True, latency_s=0.1)], start_s=1.0, seconds=2.0, by_end=False)
    assert (w.throughput, w.errors, w.p50_ms) == (19 / 2.0, 1, 5000.0)


def test_median_repeat_keeps_one_whole_repeat():
    repeats = [{"throughput": 90.0, "p99_ms": 1.0}, {"throughput": 70.0, "p99_ms": 3.0},
               {"throughput": 80.0, "p99_ms": 2.0}]
    chosen = median_repeat(repeats)
    assert (chosen["throughput"], chosen["p99_ms"]) == (80.0, 2.0)
    assert chosen["repeat_throughputs"] == [90.0, 70.0, 80.0]
    assert median_repeat(repeats[:2])["throughput"] == 70.0  # an even count takes the lower middle
    with pytest.raises(ValueError):
        median_repeat([])


def _row(**changes):
    row = {"system": "tlserve-http", "model": "compute-bound", "concurrency": 8, "throughput": 80.5, "p50_ms": 90.0,
           "p90_ms": 120.0, "p99_ms": 150.0, "errors": 0, "cpu_s": 7.5, "rss_mb": 900.0}
    row.update(changes)
    return row


def test_check_row_accepts_the_schema_and_refuses_what_breaks_it():
    assert check_row(_row()) == _row()
    for field in ROW_FIELDS:
        with pytest.raises(ValueError, match=field):
            check_row({k: v for k, v in _row().items() if k != field})
    for bad in ({"concurrency": 0}, {"errors": -1}, {"throughput": "fast"}, {"system": None}):
        with pytest.raises(ValueError):
            check_row(_row(**bad))
