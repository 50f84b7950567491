"""Per-version inference counters in Triton's terms (its statistics extension), kept in process, cheaply.

Prometheus' histograms (``metrics.py``) hold the same events in buckets summed over time; Triton's clients want
exact counts and nanosecond totals per model version and per batch size, so this keeps a few integers per version:
the data plane records each request (``record_request``), the batcher's callback each batch (``record_batch``,
through ``Metrics.observe_batch``). Counters start at zero when a version is first seen; a version's counters are
dropped when it is no longer served (``forget``), so a reloaded version starts again, as Triton's do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.batching.batcher import BatchStats
from service.core.dataplane import BatchStatistics, Duration, VersionStatistics


@dataclass
class _Counters:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=dict)  # batch size -> executions and their run time


def _add(d: Duration, count: int, ns: int) -> None:
    d.count += count
    d.ns += ns


class InferenceStats:
    """Counters by (model, version). Every call runs on the event loop or in the batcher's callback, which the
    event loop also runs; there is no concurrent writer."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, int], _Counters] = {}

    def _of(self, model: str, version: int) -> _Counters:
        return self._counters.setdefault((model, version), _Counters())

    def record_request(self, model: str, version: int, *, ok: bool, ns: int, rows: int) -> None:
        """One request the version answered (``ok``) or failed, its time in the data plane, and its rows."""
        c = self._of(model, version)
        c.last_inference_ms = time.time_ns() // 1_000_000
        if ok:
            _add(c.success, 1, ns)
            c.inference_count += rows
        else:
            _add(c.fail, 1, ns)

    def record_batch(self, model: str, version: int, stats: BatchStats) -> None:
        """One batch the version's batcher ran: its size, each item's wait, its run time."""
        c = self._of(model, version)
        run_ns = round(stats.run_s * 1e9)
        c.execution_count += 1
        _add(c.batches.setdefault(stats.size, Duration()), 1, run_ns)
        _add(c.queue, len(stats.queue_waits_s), round(sum(stats.queue_waits_s) * 1e9))
        _add(c.compute_infer, stats.size, run_ns * stats.size)

    def forget(self, model: str, version: int) -> None:
        self._counters.pop((model, version), None)

    def snapshot(self, model: str, version: int) -> VersionStatistics:
        """The version's statistics now (zeros for a version that has served nothing)."""
        c = self._counters.get((model, version)) or _Counters()
        rows = c.compute_infer.count

        def copy(d: Duration) -> Duration:
            return Duration(d.count, d.ns)

        return VersionStatistics(
            name=model, version=version, last_inference_ms=c.last_inference_ms, inference_count=c.inference_count,
            execution_count=c.execution_count, success=copy(c.success), fail=copy(c.fail), queue=copy(c.queue),
            compute_input=Duration(rows, 0), compute_infer=copy(c.compute_infer), compute_output=Duration(rows, 0),
            batches=[BatchStatistics(size, copy(d)) for size, d in sorted(c.batches.items())])
