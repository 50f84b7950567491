"""What the data plane hands to the sinks: one served request and its answer, in wire-free terms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from service.core.dataplane import Prediction


@dataclass(frozen=True)
class RequestRecord:
    """One request as served. Arrays are the request's own (nothing mutates them after the answer), so building a
    record copies nothing; sinks read it in their writer thread."""

    model: str
    version: int
    transport: str  # "http" | "grpc" ("" when called outside a transport, e.g. a test)
    protocol: str  # the metrics' protocol label: tfserving-rest, v2-grpc, classifier-grpc, ...
    api: str  # the metrics' api label: predict, infer, classify, explain, ...
    request_id: str
    time: datetime  # when the answer was ready (UTC)
    signature: str  # the signature run ("" for classify)
    images: list[bytes]  # the request's encoded images, in order ([] when it carried none)
    inputs: dict[str, np.ndarray] | None  # the tensors of a request without encoded images as such
    outputs: dict[str, np.ndarray] | None  # what the signature answered (None for classify)
    predictions: list[list[Prediction]] | None  # top-k per image, best first, when the version has class names
    confident: list[bool] | None  # per image; None when the version has no unknown score

    @property
    def payload_bytes(self) -> int:
        """The request and answer bytes this record keeps alive while it waits in a queue."""
        total = sum(len(image) for image in self.images)
        for tensors in (self.inputs, self.outputs):
            for value in (tensors or {}).values():
                total += sum(len(v) for v in value.reshape(-1) if isinstance(v, bytes)) if value.dtype == object \
                    else value.nbytes
        return total

    @property
    def top_scores(self) -> list[float]:
        return [p[0].score if p else 0.0 for p in self.predictions or []]
