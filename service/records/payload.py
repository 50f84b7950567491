"""A record as JSON: the one document the request log writes and the CloudEvents carry.

Encoded images and other bytes are replaced by their sha256 and length unless the log asks for the bytes
(then base64, in TF Serving's ``{"b64": ...}`` shape). Large tensors keep dtype, shape and a digest only, so one
request cannot write megabytes of numbers into the log.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

from service.capture.layout import rfc3339
from service.records.record import RequestRecord

MAX_LOGGED_VALUES = 4096  # numbers per tensor written in full; beyond, a digest


def blob(data: bytes, with_bytes: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if with_bytes:
        doc["b64"] = base64.b64encode(data).decode()
    return doc


def tensor(value: np.ndarray, with_bytes: bool) -> dict[str, Any]:
    value = np.asarray(value)
    doc: dict[str, Any] = {"dtype": str(value.dtype) if value.dtype != object else "bytes", "shape": list(value.shape)}
    if value.dtype == object:
        doc["values"] = [blob(v, with_bytes) if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
    elif value.size <= MAX_LOGGED_VALUES:
        doc["values"] = value.reshape(-1).tolist()
    else:
        doc["sha256"] = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    return doc


def request_part(record: RequestRecord, with_bytes: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if record.images:
        doc["images"] = [blob(image, with_bytes) for image in record.images]
    if record.inputs:
        doc["inputs"] = {name: tensor(v, with_bytes) for name, v in record.inputs.items()}
    return doc


def response_part(record: RequestRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if record.predictions is not None:
        doc["predictions"] = [[{"label": p.label, "index": p.index, "score": p.score} for p in row]
                              for row in record.predictions]
    if record.confident is not None:
        doc["confident"] = record.confident
    if record.outputs is not None and record.predictions is None:
        doc["outputs"] = {name: tensor(v, False) for name, v in record.outputs.items()}
    return doc


def header(record: RequestRecord) -> dict[str, Any]:
    return {"time": rfc3339(record.time),
            "request_id": record.request_id, "model": record.model, "version": record.version,
            "transport": record.transport, "protocol": record.protocol, "api": record.api,
            "signature": record.signature}


def document(record: RequestRecord, with_bytes: bool) -> dict[str, Any]:
    """The request log's line for ``record``."""
    return {**header(record), "request": request_part(record, with_bytes), "response": response_part(record)}
