"""A per-request server as users write by hand: FastAPI + uvicorn, one model call per request, no batching.

``POST /classify`` with ``{"images": [base64 JPEG, ...]}`` -> ``{"predictions": [{"label", "score"}, ...]}``.
"""

from __future__ import annotations

import base64

import uvicorn
from fastapi import FastAPI, Request

from bench.peers.model import Classifier, settings

config = settings()
classifier = Classifier(config["version_dir"])
app = FastAPI()


@app.post("/classify")
def classify(body: dict) -> dict:  # a plain def: FastAPI runs it in its thread pool
    return {"predictions": classifier.answers([base64.b64decode(i) for i in body["images"]])}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=config["port"], log_level="warning")
