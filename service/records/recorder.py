"""The data plane's one record hook: a ``RequestRecord`` per served request, offered to every sink.

``observe`` runs on the request path, after the answer is known: it builds the record (references, no copies; the
top-k of a predict's scores when the version has class names) and offers it to each sink, which decides at once
(sampling, the capture rule) and queues it for its background writer. It never raises: a bug here is logged,
the request is answered all the same. With no sink configured the data plane holds no recorder at all.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.core.dataplane import DEFAULT_TOP_K
from service.core.requests import current_request
from service.records.predictions import confidences, top_predictions
from service.records.record import RequestRecord
from tlserve.contract import DEFAULT_SIGNATURE, IMAGES_INPUT, SCORES_OUTPUT, UNKNOWN_SCORE_OUTPUT

if TYPE_CHECKING:
    from service.core.dataplane import Classification

log = logging.getLogger(__name__)


class RecordedVersion(Protocol):
    """What a record needs of the version that served (``serving.version.ServedVersion`` has it)."""

    number: int
    class_names: list[str] | None
    unknown_threshold: float | None


class Sink(Protocol):
    name: str

    def offer(self, record: RequestRecord) -> None:
        """Take the record or drop it (counted); never block, never raise."""
        ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class Recorder:
    def __init__(self, sinks: list[Sink], *, top_k: int = DEFAULT_TOP_K):
        self.sinks = sinks
        self.top_k = top_k

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def observe(self, model: str, version: RecordedVersion, *, signature: str = "",
                inputs: dict[str, np.ndarray] | None = None, outputs: dict[str, np.ndarray] | None = None,
                images: list[bytes] | None = None, classification: Classification | None = None) -> None:
        """Record one answered request: ``classification`` for classify, else the signature's inputs and outputs
        (a tlserve export's ``serving_default`` images are taken out of ``inputs`` as encoded images)."""
        try:
            record = self._record(model, version, signature, inputs, outputs, images, classification)
        except Exception:  # noqa: BLE001 - records must never fail a request
            log.exception("request record of %s could not be built", model)
            return
        for sink in self.sinks:
            sink.offer(record)

    def _record(self, model, version, signature, inputs, outputs, images, classification) -> RequestRecord:
        if images is None and inputs is not None and signature in ("", DEFAULT_SIGNATURE) and version.class_names:
            values = inputs.get(IMAGES_INPUT)
            if values is not None and values.dtype == object:
                images = [v for v in values.reshape(-1) if isinstance(v, bytes)]
                inputs = {k: v for k, v in inputs.items() if k != IMAGES_INPUT} or None
        predictions, confident = None, None
        if classification is not None:
            predictions = classification.predictions
            # classify answers True for every image of an export without an unknown score: no signal to record
            confident = classification.confident if version.unknown_threshold is not None else None
        elif outputs is not None and version.class_names and SCORES_OUTPUT in outputs:
            scores = np.asarray(outputs[SCORES_OUTPUT])
            if scores.dtype.kind == "f" and scores.ndim == 2 and scores.shape[1] == len(version.class_names):
                predictions = top_predictions(scores, version.class_names, self.top_k)
                confident = confidences(outputs.get(UNKNOWN_SCORE_OUTPUT), version.unknown_threshold, len(scores))
        context = current_request()
        return RequestRecord(
            model=model, version=version.number, transport=context.transport if context else "",
            protocol=context.protocol if context else "", api=context.api if context else "",
            request_id=context.request_id if context else "", time=datetime.now(UTC), signature=signature,
            images=list(images or []), inputs=inputs, outputs=outputs, predictions=predictions, confident=confident)
