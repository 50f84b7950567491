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
from service.records.payload import request_part, response_part
from service.records.record import RequestRecord
from service.records.sampled import SampledSink

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


class CloudEventsSink(SampledSink):
    def __init__(self, url: str, *, source: str, sample: float, with_image_bytes: bool, queue_items: int,
                 metrics: RecordMetrics, queue_bytes: int | None = None, rng: random.Random | None = None):
        super().__init__("cloudevents", self._send, sample=sample, queue_items=queue_items, metrics=metrics,
                         queue_bytes=queue_bytes, rng=rng)
        self.url, self.source, self.with_image_bytes = url, source, with_image_bytes
        self.client: httpx.Client | None = None

    def start(self) -> None:
        self.client = httpx.Client(timeout=SINK_TIMEOUT_S)
        super().start()

    def close(self) -> None:
        super().close()
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
