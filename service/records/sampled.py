"""What the request log's sinks share (the JSON-lines file or stdout, CloudEvents): a sample of the records, handed
to a background writer whose drops are counted as ``tlserve_request_log_dropped_total{sink}``."""

from __future__ import annotations

import random
from collections.abc import Callable

from service.observability.records import RecordMetrics
from service.records.background import BackgroundWriter
from service.records.record import RequestRecord


class SampledSink:
    """``sample`` (0..1) of the offered records go to ``write``, one by one, in the writer's thread. Subclasses open
    what they write to in ``start`` and close it in ``close``, around these."""

    def __init__(self, name: str, write: Callable[[RequestRecord], None], *, sample: float, queue_items: int,
                 metrics: RecordMetrics, queue_bytes: int | None = None, rng: random.Random | None = None):
        self.name, self.sample, self.metrics = name, sample, metrics
        self.rng = rng or random.Random()
        self.writer = BackgroundWriter(f"request-log-{name}", write, max_items=queue_items, max_bytes=queue_bytes,
                                       size=lambda record: record.payload_bytes,
                                       on_drop=lambda reason: metrics.request_log_dropped.labels(name, reason).inc())

    def start(self) -> None:
        self.writer.start()

    def offer(self, record: RequestRecord) -> None:
        if self.sample >= 1 or self.rng.random() < self.sample:
            self.writer.offer(record)

    def close(self) -> None:
        self.writer.close()
