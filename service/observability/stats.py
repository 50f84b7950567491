"""Live per-model figures for the web console, computed from the service's own Prometheus metrics.

The console shows what happened recently, not since start-up: ``StatsWindow`` keeps snapshots of the
cumulative counters for about ``window_s`` seconds and reports the difference between now and the
oldest one (rates, latency quantiles from histogram buckets, mean batch size, errors by code), plus
the current queue depth. Quantiles follow Prometheus' ``histogram_quantile``: linear interpolation
inside the bucket that holds the rank, so they are estimates as coarse as the buckets.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.observability.metrics import Metrics


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram given as cumulative ``(upper bound, count)`` pairs in order,
    the last bound being +Inf; None when the histogram is empty. A rank in the +Inf bucket answers the
    highest finite bound (nothing better is known), as Prometheus does."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank and count > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _is_error(code: str) -> bool:
    """HTTP 2xx and gRPC OK are successes; every other code (4xx, 5xx, 499, gRPC names) is an error."""
    return not (code == "OK" or (len(code) == 3 and code.startswith("2")))


@dataclass
class ModelTotals:
    """Cumulative counters of one model, summed over its versions, protocols and APIs."""

    requests: float = 0.0
    by_code: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    batches: float = 0.0
    batched_items: float = 0.0
    queue_depth: float = 0.0


def read_totals(metrics: Metrics) -> dict[str, ModelTotals]:
    """Every model's cumulative figures, read from ``metrics`` now."""
    totals: dict[str, ModelTotals] = {}

    def of(labels) -> ModelTotals | None:
        model = labels.get("model", "")
        return totals.setdefault(model, ModelTotals()) if model else None  # "" = request for no model

    for family in metrics.requests.collect():
        for s in family.samples:
            if s.name.endswith("_total") and (t := of(s.labels)):
                t.requests += s.value
                t.by_code[s.labels["code"]] = t.by_code.get(s.labels["code"], 0.0) + s.value
    for family in metrics.request_latency.collect():
        for s in family.samples:
            if s.name.endswith("_bucket") and (t := of(s.labels)):
                le = float(s.labels["le"])
                t.latency_buckets[le] = t.latency_buckets.get(le, 0.0) + s.value
    for family in metrics.batch_size.collect():
        for s in family.samples:
            if (t := of(s.labels)) is None:
                continue
            if s.name.endswith("_count"):
                t.batches += s.value
            elif s.name.endswith("_sum"):
                t.batched_items += s.value
    for family in metrics.queue_depth.collect():
        for s in family.samples:
            if t := of(s.labels):
                t.queue_depth += s.value
    return totals


def model_figures(now: ModelTotals, before: ModelTotals | None, seconds: float) -> dict:
    """What the console shows for one model: figures over the ``seconds`` between ``before`` and ``now``."""
    before = before or ModelTotals()
    requests = now.requests - before.requests
    errors = {code: n - before.by_code.get(code, 0.0) for code, n in now.by_code.items() if _is_error(code)}
    buckets = [(le, now.latency_buckets[le] - before.latency_buckets.get(le, 0.0))
               for le in sorted(now.latency_buckets)]
    batches = now.batches - before.batches
    return {
        "window_s": round(seconds, 1),
        "requests": int(requests),
        "request_rate": requests / seconds if seconds > 0 else None,
        "p50_s": histogram_quantile(0.5, buckets),
        "p99_s": histogram_quantile(0.99, buckets),
        "mean_batch_size": (now.batched_items - before.batched_items) / batches if batches > 0 else None,
        "queue_depth": int(now.queue_depth),
        "errors": {code: int(n) for code, n in sorted(errors.items()) if n > 0},
    }


MIN_SNAPSHOT_GAP_S = 1.0


class StatsWindow:
    """Snapshots of ``read_totals`` over the last ``window_s`` seconds; ``figures()`` takes one and reports."""

    def __init__(self, metrics: Metrics, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._metrics = metrics
        self._window_s = window_s
        self._clock = clock
        self._snapshots: deque[tuple[float, dict[str, ModelTotals]]] = deque([(clock(), read_totals(metrics))])

    def figures(self) -> dict[str, dict]:
        now, totals = self._clock(), read_totals(self._metrics)
        # The baseline is the newest snapshot at least window_s old (or the oldest one, early on).
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= self._window_s:
            self._snapshots.popleft()
        base_time, base = self._snapshots[0]
        if now - self._snapshots[-1][0] >= MIN_SNAPSHOT_GAP_S:  # many open consoles must not grow the deque
            self._snapshots.append((now, totals))
        return {model: model_figures(t, base.get(model), now - base_time) for model, t in sorted(totals.items())}
