"""Issue 17's acceptance, the drift part, against a real server (uvicorn + grpc.aio on 127.0.0.1, the tiny shapes
export, real HTTP and gRPC clients): every API that carries the export's scores feeds the prediction metrics, a
stream following the test split keeps the class drift low, and a stream of one class only raises it above 0.2."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.client import GrpcClient
from service.settings import Settings
from tests.conftest import grpc_channel
from tests.service.conftest import copy_version, start_server
from tlserve.contract import METADATA_FILE, METADATA_REFERENCE

# The reference holds the predictions on the test split (~23 images here), so a window of whole passes over it
# reproduces it exactly; a random sample of that small a split would carry PSI noise of ~(k-1)(1/n + 1/m) ~ 0.1.
PASSES = 3


@pytest.fixture(scope="module")
def test_images(tiny_training) -> list[bytes]:
    return [tiny_training.data.images[i] for i in tiny_training.split.test]


@pytest.fixture(scope="module")
def drift_server(tiny_export, tmp_path_factory, test_images):
    root = tmp_path_factory.mktemp("drift-repo")
    copy_version(tiny_export[0], root / "shapes", "1")
    # the same export as one from before issue 17: no reference in its metadata
    old = copy_version(tiny_export[0], root / "before17", "1")
    meta_path = old / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    del meta[METADATA_REFERENCE]
    meta_path.write_text(json.dumps(meta))
    running = start_server(Settings(model_repo=root, poll_interval_s=0, drift_window=PASSES * len(test_images)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(drift_server):
    with httpx.Client(base_url=drift_server.url, timeout=60) as c:
        yield c


def samples(http) -> dict[tuple[str, tuple], float]:
    """Every tlserve_predict* / tlserve_unconfident* sample on /metrics: (name, sorted labels) -> value."""
    text = http.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith(("tlserve_predict", "tlserve_unconfident"))}


def predicted(http) -> float:
    return sum(v for (name, _), v in samples(http).items() if name == "tlserve_predicted_class_total")


def drift(http, kind: str) -> float | None:
    return samples(http).get(("tlserve_prediction_drift", (("kind", kind), ("model", "shapes"), ("version", "1"))))


def classify(http, images: list[bytes], model: str = "shapes") -> list[str]:
    out = []
    for i in range(0, len(images), 16):
        r = http.post("/classify", json={"model": model, "top_k": 1,
                                         "images": [base64.b64encode(x).decode() for x in images[i:i + 16]]})
        assert r.status_code == 200, r.text
        out += [p[0]["label"] for p in r.json()["predictions"]]
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_every_api_carrying_the_scores_feeds_the_metrics(drift_server, http, test_images):
    image = test_images[0]
    raw = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()

    def grpc_predict():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "shapes"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
        with grpc_channel(drift_server) as ch:
            prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(request, timeout=30)

    calls = {
        "/classify": lambda: classify(http, [image]),
        "gRPC Classifier": lambda: GrpcClient(drift_server.grpc_target).classify([image], model="shapes"),
        "TF Serving REST predict": lambda: http.post("/v1/models/shapes:predict",
                                                     json={"instances": [{"b64": b64(image)}]}).raise_for_status(),
        "TF Serving REST classify": lambda: http.post("/v1/models/shapes:classify", json={
            "signature_name": "classify", "examples": [{"image/encoded": {"b64": b64(image)}}]}).raise_for_status(),
        "TF Serving gRPC Predict": grpc_predict,
        "V2 REST infer": lambda: http.post("/v2/models/shapes/infer", content=header + raw, headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream"}).raise_for_status(),
    }
    for api, call in calls.items():
        before = predicted(http)
        call()
        assert predicted(http) == before + 1, api
    names = {name for name, _ in samples(http)}
    assert {"tlserve_prediction_score_bucket", "tlserve_predicted_class_total"} <= names
    classes = {dict(labels)["class"] for name, labels in samples(http) if name == "tlserve_predicted_class_total"}
    assert classes <= {"circle", "square", "triangle"} and classes


def test_the_test_split_keeps_drift_low_and_one_class_raises_it(drift_server, http, test_images, tiny_training,
                                                                 capsys):
    classify(http, test_images * PASSES)  # fills the window with exactly the reference's distribution
    low_class, low_score = drift(http, "class"), drift(http, "score")
    assert low_class is not None and low_class < 0.1
    live = http.get("/ui/api/predictions").json()["models"]["shapes"]["1"]
    assert live["window"] == live["window_size"] == PASSES * len(test_images)
    assert live["live"] == pytest.approx(live["reference"], abs=1.5 / len(test_images))

    data = tiny_training.data
    circles = [img for img, label in zip(data.images, data.labels, strict=True) if data.classes[label] == "circle"]
    stream = (circles * PASSES * 2)[:PASSES * len(test_images)]
    answers = classify(http, stream)
    high_class, high_score = drift(http, "class"), drift(http, "score")
    assert high_class > 0.2, f"one class only gave class drift {high_class} (answers {set(answers)})"
    with capsys.disabled():
        print(f"\ndrift: test split class {low_class:.4f} score {low_score:.4f}; circles only class "
              f"{high_class:.3f} score {high_score:.3f} (predicted circle for "
              f"{answers.count('circle')}/{len(answers)})")


def test_an_export_without_a_reference_serves_and_counts_without_drift(http, test_images):
    answers = classify(http, test_images * PASSES, model="before17")
    assert len(answers) == PASSES * len(test_images)
    counted = sum(v for (name, labels), v in samples(http).items()
                  if name == "tlserve_predicted_class_total" and ("model", "before17") in labels)
    assert counted == len(answers)
    drift_series = [labels for name, labels in samples(http) if name == "tlserve_prediction_drift"]
    assert drift_series and not [labels for labels in drift_series if ("model", "before17") in labels]
    live = http.get("/ui/api/predictions").json()["models"]["before17"]["1"]
    assert live["reference"] is None and live["drift"] is None and live["window"] == len(answers)
