"""Request records as CloudEvents over HTTP, in KServe's payload-logger format (issue 19).

Each sampled request becomes two events POSTed to the sink URL in CloudEvents' binary mode (attributes in ``ce-*``
headers, the payload as the body), as KServe's logger sends them: ``org.kubeflow.serving.inference.request`` and
``org.kubeflow.serving.inference.response``, sharing one ``ce-id`` (the request id), with KServe's extension
attributes ``inferenceservicename`` (the model), ``component``, ``endpoint`` and ``metadata`` (a JSON object of
lists, here the version, transport, protocol and API). The bodies are JSON: the request's images (sha256 unless
asked for) or tensors, then its predictions or outputs, the same parts as the request log's lines.
Sent by a background thread; a sink that is down or slow costs requests nothing, its drops are counted.
"""

from __future__ import annotations

import json
import random

import httpx

from service.capture.layout import rfc3339
from service.observability.records import RecordMetrics
from service.records.background import BackgroundWriter
from service.records.payload import request_part, response_part
from service.records.record import RequestRecord

REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
SINK_TIMEOUT_S = 5.0


def event_headers(record: RequestRecord, event_type: str, source: str) -> dict[str, str]:
    metadata = {"version": [str(record.version)], "transport": [record.transport], "protocol": [record.protocol],
                "api": [record.api]}
    return {"ce-specversion": "1.0", "ce-id": record.request_id, "ce-type": event_type, "ce-source": source,
            "ce-time": rfc3339(record.time), "ce-inferenceservicename": record.model, "ce-component": "predictor",
            "ce-endpoint": "default", "ce-metadata": json.dumps(metadata, separators=(",", ":")),
            "content-type": "application/json"}


class CloudEventsSink:
    name = "cloudevents"

    def __init__(self, url: str, *, source: str, sample: float, with_image_bytes: bool, queue_items: int,
                 metrics: RecordMetrics, queue_bytes: int | None = None, rng: random.Random | None = None):
        self.url, self.source, self.sample, self.with_image_bytes = url, source, sample, with_image_bytes
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.client: httpx.Client | None = None
        self.writer = BackgroundWriter("request-log-cloudevents", self._send, max_items=queue_items,
                                       max_bytes=queue_bytes, size=lambda record: record.payload_bytes,
                                       on_drop=lambda reason: metrics.request_log_dropped.labels(self.name,
                                                                                                  reason).inc())

    def start(self) -> None:
        self.client = httpx.Client(timeout=SINK_TIMEOUT_S)
        self.writer.start()

    def offer(self, record: RequestRecord) -> None:
        if self.sample >= 1 or self.rng.random() < self.sample:
            self.writer.offer(record)

    def close(self) -> None:
        self.writer.close()
        if self.client is not None:
            self.client.close()

    def _send(self, record: RequestRecord) -> None:
        assert self.client is not None, "started before the first record"
        for event_type, body in ((REQUEST_EVENT, request_part(record, self.with_image_bytes)),
                                 (RESPONSE_EVENT, response_part(record))):
            answer = self.client.post(self.url, content=json.dumps(body).encode(),
                                      headers=event_headers(record, event_type, self.source))
            answer.raise_for_status()
        self.metrics.request_log_records.labels(self.name).inc()
