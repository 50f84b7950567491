"""BentoML alone: one ``@bentoml.api(batchable=True)`` calling the SavedModel, BentoML's adaptive batching.

``POST /classify`` with ``{"images": [base64 JPEG, ...]}`` -> ``[{"label", "score"}, ...]``. BentoML's
``max_latency_ms`` is a latency budget past which it refuses work (not a batch wait), so it gets the
request timeout the harness uses; its batch size limit is the harness's.
"""

from __future__ import annotations

import base64

import bentoml

from bench.peers.model import Classifier, settings

config = settings()


@bentoml.service(workers=1)
class Peer:
    def __init__(self):
        self.classifier = Classifier(config["version_dir"])

    @bentoml.api(batchable=True, max_batch_size=config["max_batch_size"], max_latency_ms=30_000)
    def classify(self, images: list[str]) -> list[dict]:
        return self.classifier.answers([base64.b64decode(i) for i in images])
