"""Issue 17's loop end to end, against a real server (uvicorn + grpc.aio on 127.0.0.1, the tiny shapes export):
production sends images of a kind the model has never seen (crosses); capture keeps them; a person labels them
through the console's review API; ``tlserve train --init-from`` retrains from the served version on them; the
running server hot-loads the next version, which does better than the old one did on held-out crosses.

The drift part of the loop (a stream of one class raises the class drift above 0.2, the test split keeps it low)
is tests/service/observability/test_drift_server.py; the capture bound under a flood with the writer stalled,
and the counting of every drop, tests/service/test_records.py."""

from __future__ import annotations

import base64
import hashlib

import httpx
import numpy as np
import pytest

from service.settings import Settings
from tests.conftest import RETRAIN_QUICK, cross_or_circle, encode, wait_until
from tests.service.conftest import copy_version, start_server
from tlserve.cli import main

SENT, HELD_OUT = 40, 12


@pytest.fixture
def loop(tiny_export, tmp_path):
    repo, captures = tmp_path / "models", tmp_path / "captures"
    copy_version(tiny_export[0], repo / "shapes", "1")
    # capture_sample 1: every image is kept, whatever its score (the rule itself: tests/service/records)
    server = start_server(Settings(model_repo=repo, poll_interval_s=0.5, capture_dir=captures, capture_sample=1.0))
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            yield repo / "shapes", captures, http
    finally:
        server.stop()


def _classify(http, images: list[bytes], version: int) -> list[str]:
    r = http.post("/classify", json={"model": "shapes", "version": version, "top_k": 1,
                                     "images": [base64.b64encode(i).decode() for i in images]})
    assert r.status_code == 200, r.text
    return [p[0]["label"] for p in r.json()["predictions"]]


def test_captured_images_labelled_in_the_console_retrain_a_better_served_version(loop, capsys):
    model_dir, captures, http = loop
    rng = np.random.default_rng(7)
    crosses = [encode(cross_or_circle("cross", rng)) for _ in range(SENT + HELD_OUT)]
    sent, held_out = crosses[:SENT], crosses[SENT:]
    for i in range(0, SENT, 8):  # production traffic: requests of 8 images
        assert set(_classify(http, sent[i:i + 8], version=1)) <= {"circle", "square", "triangle"}
    old = np.mean([label == "cross" for label in _classify(http, held_out, version=1)])

    # Every image sent was captured (the writer is in the background: wait for it), and is listed for review:
    # the held-out crosses too, which the reviewer discards here to keep them out of the training data.
    listed = wait_until(lambda: (page := http.get("/ui/api/captures", params={"model": "shapes", "limit": 100}).json())
                   ["total"] == SENT + HELD_OUT and page, what="the captures")
    to_label = {hashlib.sha256(image).hexdigest() for image in sent}
    assert {c["sha256"] for c in listed["captures"]} == to_label | {hashlib.sha256(i).hexdigest() for i in held_out}

    # A person labels them: a class the model does not have yet, typed in.
    for capture in listed["captures"]:
        review = {"label": "cross"} if capture["sha256"] in to_label else {"discard": True}
        r = http.post(f"/ui/api/captures/{capture['id']}", json=review)
        assert r.status_code == 200, r.text
    assert http.get("/ui/api/captures", params={"model": "shapes"}).json()["total"] == 0
    labelled = captures / "labelled" / "shapes" / "cross"
    assert len(list(labelled.iterdir())) == SENT

    # Retrained from the served version, on the labelled captures and the original data together.
    code = main(["train", "--init-from", str(model_dir), "--data", "builtin:shapes",
                 "--data", str(captures / "labelled" / "shapes"), *RETRAIN_QUICK])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "new classes: cross" in out and (model_dir / "2").is_dir()

    # The running server hot-loads version 2 (and, by the default policy, serves only the latest from then on).
    def available():
        status = http.get("/v1/models/shapes").json()["model_version_status"]
        return {s["version"]: s["state"] for s in status}.get("2") == "AVAILABLE"
    wait_until(available, timeout=120, what="version 2 to be served")
    new = np.mean([label == "cross" for label in _classify(http, held_out, version=2)])
    print(f"held-out crosses recognised: version 1 {old:.2f}, version 2 {new:.2f}")
    assert old == 0 and new > old
