"""The metrics of the background records (request log, CloudEvents, capture): what was written and what dropped.

Every record offered to a sink ends in exactly one of these counters (written, dropped with a reason, or for
capture also evicted later), so nothing is lost silently. Counters only: they need no multiprocess mode.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter

# Why a record was dropped: its sink's queue was full (the writer is behind), writing it failed (disk, network),
# or the server stopped before it was written.
DROP_REASONS = ("queue_full", "error", "closed", "too_large")


class RecordMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.request_log_records = Counter("tlserve_request_log_records", "Request records written, per sink",
                                           ("sink",), registry=registry)
        self.request_log_dropped = Counter("tlserve_request_log_dropped", "Request records dropped, per sink and "
                                           "reason", ("sink", "reason"), registry=registry)
        self.captures = Counter("tlserve_captures", "Images captured, per model and reason (below, sample)",
                                ("model", "reason"), registry=registry)
        self.capture_dropped = Counter("tlserve_capture_dropped", "Images to capture that were dropped, per reason",
                                       ("reason",), registry=registry)
        self.capture_evicted = Counter("tlserve_capture_evicted", "Pending captures evicted to keep "
                                       "--capture-max-mb", registry=registry)
