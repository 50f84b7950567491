"""Capture (issue 17): the images a model is unsure of, with their predictions, written to DIR in the background.

An image is captured when its top-1 score is below ``below`` or the version calls it unconfident (reason
"below"), else with probability ``sample`` (reason "sample"). The decision is made on the request path (a
comparison and a random number); the bytes are written by one background writer through ``layout.CaptureDir``.
The writer keeps DIR/pending/ under ``max_bytes``: after each capture it evicts the oldest pending ones (never
labelled images, the user's data). A full queue, a failed write or a capture larger than the bound is a drop,
counted in ``tlserve_capture_dropped_total``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from service.capture import layout
from service.capture.layout import CaptureDir
from service.observability.records import RecordMetrics
from service.records.background import BackgroundWriter
from service.records.record import RequestRecord

BELOW, SAMPLE = "below", "sample"


@dataclass(frozen=True)
class CaptureItem:
    record: RequestRecord
    index: int  # which image of the request
    reason: str


class CaptureSink:
    name = "capture"

    def __init__(self, root, *, below: float, sample: float, max_bytes: int, queue_items: int,
                 metrics: RecordMetrics, queue_bytes: int | None = None, rng: random.Random | None = None):
        self.folder = CaptureDir(root)
        self.below, self.sample, self.max_bytes = below, sample, max_bytes
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.writer = BackgroundWriter("capture", self._write, max_items=queue_items, max_bytes=queue_bytes,
                                       size=lambda item: len(item.record.images[item.index]),
                                       on_drop=lambda reason: metrics.capture_dropped.labels(reason).inc())
        self._pending_bytes = 0  # an upper bound of DIR/pending/ (reviews only shrink it); recounted when over

    def start(self) -> None:
        self.folder.create()
        self.folder.remove_leftovers()
        self._pending_bytes = sum(e.bytes for e in self.folder.pending_entries())
        self.writer.start()

    def close(self) -> None:
        self.writer.close()

    def reason(self, top_score: float, confident: bool | None) -> str | None:
        if top_score < self.below or confident is False:
            return BELOW
        if self.sample > 0 and self.rng.random() < self.sample:
            return SAMPLE
        return None

    def offer(self, record: RequestRecord) -> None:
        if not record.images or record.predictions is None or len(record.predictions) != len(record.images):
            return  # nothing this sink can capture: no encoded images, or no class scores for them
        for i, top in enumerate(record.top_scores):
            reason = self.reason(top, record.confident[i] if record.confident else None)
            if reason is not None:
                self.writer.offer(CaptureItem(record, i, reason))

    def _write(self, item: CaptureItem) -> None:
        record, image = item.record, item.record.images[item.index]
        capture_id = layout.new_id(record.time)
        predictions = [{"label": p.label, "index": p.index, "score": p.score}
                       for p in (record.predictions or [])[item.index]]
        sidecar = layout.sidecar(
            capture_id=capture_id, model=record.model, version=record.version, transport=record.transport,
            api=record.api, request_id=record.request_id, moment=record.time, image=image, predictions=predictions,
            confident=record.confident[item.index] if record.confident else None, reason=item.reason)
        if len(image) + 2048 > self.max_bytes:  # could only stay by evicting everything, itself included
            self.metrics.capture_dropped.labels("too_large").inc()
            return
        self._pending_bytes += self.folder.write(capture_id, image, sidecar)
        self.metrics.captures.labels(record.model, item.reason).inc()
        if self._pending_bytes > self.max_bytes:
            self._evict()

    def _evict(self) -> None:
        entries = self.folder.pending_entries()  # the truth on disk: reviews took some away meanwhile
        total = sum(e.bytes for e in entries)
        for entry in entries:  # oldest first
            if total <= self.max_bytes:
                break
            freed = self.folder.evict(entry.id)
            if freed:
                total -= freed
                self.metrics.capture_evicted.inc()
        self._pending_bytes = total
