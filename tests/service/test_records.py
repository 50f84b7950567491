"""Issues 17 and 19, acceptance: request logging, CloudEvents and image capture over a real server and real clients.

One server with every sink on (a JSON-lines log, CloudEvents to a tiny real HTTP sink in this module, capture into a
folder), the tiny shapes model, and requests on each API that carries encoded images. Records are written in the
background: each test waits for the writers (``settle``) before reading files, and checks the drop counters too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.app import build_runtime
from service.capture.layout import CaptureDir
from service.codec.v2 import encode_bytes_elements
from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc as v2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.service.conftest import start_server

QUEUE = 16  # records waiting per sink: small, so that a flood overflows it
MAX_MB = 0.015  # bound of pending/: about twenty captures of the 32 px shapes (~0.7 KB each)


class EventSink:
    """A real HTTP server on 127.0.0.1 that keeps every CloudEvent POSTed to it (binary mode: ce-* headers)."""

    def __init__(self):
        events = self.events = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                events.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/events"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def of(self, request_id: str) -> list[tuple[dict, dict]]:
        return [e for e in self.events if e[0].get("ce-id") == request_id]

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def sink():
    running = EventSink()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def below(expected) -> float:
    """A capture threshold with one or two of the five test images below it: in the wider of the gaps after the
    lowest and the second lowest top-1 score. (A fixed place, between the 2nd and 3rd, failed CI once: the tiny
    model trained on another machine put those two 0.0008 apart. The widest gap of all then put four of five
    below, and the captures of the six APIs outgrew pending/'s bound, MAX_MB.)"""
    tops = np.sort(expected.max(axis=1))
    gap = int(np.argmax(np.diff(tops)[:2]))
    assert tops[gap + 1] - tops[gap] > 1e-3, tops  # far enough apart that every API's float rounding agrees
    return float((tops[gap] + tops[gap + 1]) / 2)


@pytest.fixture(scope="module")
def server(model_repo, sink, below, tmp_path_factory):
    """The module's server (the shared ``channel`` fixture connects to it): every record sink on."""
    root = tmp_path_factory.mktemp("records")
    running = start_server(Settings(
        model_repo=model_repo, poll_interval_s=0, max_batch_size=8, batch_timeout_ms=5,
        log_requests=str(root / "requests.jsonl"), log_requests_url=sink.url, capture_dir=root / "captures",
        capture_below=below, capture_max_mb=MAX_MB, record_queue=QUEUE))
    running.root = root
    yield running
    running.stop()


def sinks(server) -> dict:
    return {sink.name: sink for sink in server.runtime.recorder.sinks}


def settle(server) -> None:
    for sink in sinks(server).values():
        assert sink.writer.flush(30), f"{sink.name} did not catch up"


def log_lines(server, request_id: str) -> list[dict]:
    lines = [json.loads(line) for line in (server.root / "requests.jsonl").read_text().splitlines()]
    return [line for line in lines if line["request_id"] == request_id]


def captures(server, request_id: str) -> list[dict]:
    folder = CaptureDir(server.root / "captures")
    docs = [json.loads((folder.pending / f"{i}.json").read_text()) for i in folder.pending_ids()]
    return [d for d in docs if d["request_id"] == request_id]


def counter(client, name: str, **labels) -> float:
    text = client.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def to_capture(client, images, below) -> set[str]:
    """The sha256 of the test images a capture must hold: top-1 below the threshold, or unconfident."""
    answer = client.post("/classify", json={"model": "shapes", "images": [base64.b64encode(i).decode()
                                                                           for i in images]}).json()
    picked = {sha(image) for image, row, confident in zip(images, answer["predictions"], answer["confident"],
                                                          strict=True)
              if row[0]["score"] < below or not confident}
    assert 0 < len(picked) < len(images)
    return picked


def test_a_classify_request_is_logged_hashed_and_sent_as_kserve_cloudevents(server, client, sink, images):
    before = counter(client, "tlserve_request_log_records_total", sink="file")
    body = {"model": "shapes", "images": [base64.b64encode(i).decode() for i in images], "top_k": 2}
    answer = client.post("/classify", json=body, headers={"x-request-id": "log-1"})
    assert answer.status_code == 200
    settle(server)
    (line,) = log_lines(server, "log-1")
    assert (line["model"], line["version"], line["transport"], line["api"]) == ("shapes", 1, "http", "classify")
    assert line["request"]["images"] == [{"sha256": sha(i), "bytes": len(i)} for i in images]  # hashes, no bytes
    assert [[p["label"] for p in row] for row in line["response"]["predictions"]] == \
        [[p["label"] for p in row] for row in answer.json()["predictions"]]
    assert base64.b64encode(images[0]).decode()[:40] not in (server.root / "requests.jsonl").read_text()
    assert counter(client, "tlserve_request_log_records_total", sink="file") == before + 1

    events = sink.of("log-1")
    assert sorted(h["ce-type"] for h, _ in events) == ["org.kubeflow.serving.inference.request",
                                                      "org.kubeflow.serving.inference.response"]
    for headers, _ in events:
        assert headers["ce-specversion"] == "1.0" and headers["ce-inferenceservicename"] == "shapes"
        assert headers["ce-source"] and headers["ce-time"].endswith("Z") and headers["ce-component"] == "predictor"
        assert json.loads(headers["ce-metadata"])["version"] == ["1"]
        assert headers["content-type"] == "application/json"
    bodies = {h["ce-type"].rsplit(".", 1)[1]: b for h, b in events}
    assert bodies["request"]["images"][0] == {"sha256": sha(images[0]), "bytes": len(images[0])}
    assert len(bodies["response"]["predictions"]) == len(images)


def classify_http(server, client, images, request_id):
    body = {"model": "shapes", "images": [base64.b64encode(i).decode() for i in images]}
    assert client.post("/classify", json=body, headers={"x-request-id": request_id}).status_code == 200


def predict_tfserving_rest(server, client, images, request_id):
    body = {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
    answer = client.post("/v1/models/shapes:predict", json=body, headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text


def infer_v2_rest(server, client, images, request_id):
    raw = encode_bytes_elements(images)  # KServe's binary tensor extension: a JSON header, then the raw bytes
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(images)],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    answer = client.post("/v2/models/shapes/infer", content=header + raw, headers={
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream",
        "x-request-id": request_id})
    assert answer.status_code == 200, answer.text


def predict_tfserving_grpc(server, client, images, request_id, channel):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=60, metadata=(("x-request-id", request_id),))


def infer_v2_grpc(server, client, images, request_id, channel):
    request = v2_pb.ModelInferRequest(model_name="shapes")
    request.inputs.add(name="images", datatype="BYTES", shape=[len(images)])
    request.raw_input_contents.append(encode_bytes_elements(images))
    v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60, metadata=(("x-request-id", request_id),))


def classify_grpc(server, client, images, request_id, channel):
    classifier_pb2_grpc.ClassifierStub(channel).Classify(
        classifier_pb2.ClassifyRequest(model="shapes", images=images, top_k=3), timeout=60,
        metadata=(("x-request-id", request_id),))


@pytest.mark.parametrize(("send", "transport", "api"), [
    (classify_http, "http", "classify"), (predict_tfserving_rest, "http", "predict"), (infer_v2_rest, "http", "infer"),
    (predict_tfserving_grpc, "grpc", "predict"), (infer_v2_grpc, "grpc", "infer"), (classify_grpc, "grpc", "classify")])
def test_unsure_images_are_captured_from_every_image_api(server, client, channel, images, to_capture, send, transport,
                                                         api):
    request_id = f"capture-{send.__name__}"
    if transport == "grpc":
        send(server, client, images, request_id, channel)
    else:
        send(server, client, images, request_id)
    settle(server)
    got = captures(server, request_id)
    assert {d["sha256"] for d in got} == to_capture
    folder = CaptureDir(server.root / "captures")
    for doc in got:
        assert (doc["model"], doc["version"], doc["transport"], doc["api"], doc["reason"]) == \
            ("shapes", 1, transport, api, "below")
        assert sha(folder.image_path(doc["id"]).read_bytes()) == doc["sha256"] and doc["image"].endswith(".png")
        assert len(doc["predictions"]) == 3 and doc["top_score"] == doc["predictions"][0]["score"]
    assert len(log_lines(server, request_id)) == 1  # every API is request-logged too


def test_a_flood_with_the_writer_stalled_drops_counted_and_the_bound_holds(server, client, images, to_capture):
    capture = sinks(server)["capture"]
    settle(server)
    folder = CaptureDir(server.root / "captures")
    mine = folder.labelled / "shapes" / "circle" / "20260101T000000Z-000000000000.png"
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_bytes(images[0])  # the user's labelled data: never evicted
    dropped = counter(client, "tlserve_capture_dropped_total")
    captured = counter(client, "tlserve_captures_total")
    requests = 3 * QUEUE
    capture.writer.stall()
    try:
        started = time.monotonic()
        for n in range(requests):
            classify_http(server, client, images, f"flood-{n}")
        flood_s = time.monotonic() - started
        assert capture.writer.pending() == QUEUE  # the queue is full and stays bounded
    finally:
        capture.writer.stall(False)
    settle(server)
    offered = requests * len(to_capture)
    new_drops = counter(client, "tlserve_capture_dropped_total") - dropped
    new_captures = counter(client, "tlserve_captures_total") - captured
    assert new_drops == offered - QUEUE and new_captures == QUEUE  # every image accounted for: none lost silently
    assert counter(client, "tlserve_capture_dropped_total", reason="queue_full") >= new_drops
    pending = sum(e.bytes for e in folder.pending_entries())
    assert pending <= MAX_MB * 2**20 and counter(client, "tlserve_capture_evicted_total") > 0
    assert mine.read_bytes() == images[0]
    assert flood_s < 60, flood_s  # the stalled writer did not hold the requests (each ~ a batch of 5 tiny images)


def test_records_are_off_by_default(model_repo):
    """No flag, no recorder: the data plane's hooks are an attribute test, nothing is built or started."""
    from prometheus_client import CollectorRegistry

    runtime = build_runtime(Settings(model_repo=model_repo), CollectorRegistry())
    assert runtime.recorder is None and runtime.dataplane.recorder is None


def test_a_grpc_request_without_an_id_gets_one(server, channel, images):
    before = {line["request_id"] for line in map(json.loads, (server.root / "requests.jsonl").read_text().splitlines())}
    classifier_pb2_grpc.ClassifierStub(channel).Classify(classifier_pb2.ClassifyRequest(model="shapes",
                                                                                        images=images[:1]), timeout=60)
    settle(server)
    lines = [json.loads(line) for line in (server.root / "requests.jsonl").read_text().splitlines()]
    new = [line for line in lines if line["request_id"] not in before]
    assert len(new) == 1 and len(new[0]["request_id"]) == 32 and new[0]["transport"] == "grpc"


def test_a_sink_that_is_down_costs_requests_nothing_and_is_counted(server, client, sink, images):
    settle(server)
    events = sinks(server)["cloudevents"]
    url, events.url = events.url, "http://127.0.0.1:9/down"  # the discard port: nothing listens
    errors = counter(client, "tlserve_request_log_dropped_total", sink="cloudevents", reason="error")
    try:
        classify_http(server, client, images[:1], "sink-down")
        settle(server)
    finally:
        events.url = url
    assert counter(client, "tlserve_request_log_dropped_total", sink="cloudevents", reason="error") == errors + 1
    assert len(log_lines(server, "sink-down")) == 1  # the other sinks carry on
