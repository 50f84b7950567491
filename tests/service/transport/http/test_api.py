"""Every HTTP API against a real server, answers compared with the SavedModel's own outputs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import struct
import time

import httpx
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image



def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_tfserving_predict_row_format(client, images, expected):
    r = client.post("/v1/models/shapes:predict", json={"instances": [{"b64": b64(i)} for i in images]})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    np.testing.assert_allclose([p["scores"] for p in predictions], expected, atol=1e-5)
    assert predictions[0]["classes"] == ["circle", "square", "triangle"]


def test_tfserving_predict_columnar_with_version_path(client, images, expected):
    r = client.post("/v1/models/shapes/versions/1:predict",
                    json={"signature_name": "serving_default", "inputs": {"images": [{"b64": b64(i)} for i in images]}})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"]["scores"], expected, atol=1e-5)


def test_tfserving_predict_pixels_signature(client, tiny_training, images, expected):
    pixels = [tf.io.decode_png(i).numpy() for i in images]
    size = tiny_training.config.image_size
    pixels = [tf.cast(tf.round(tf.image.resize(p, [size, size], antialias=True)), tf.uint8).numpy().tolist()
              for p in pixels]
    r = client.post("/v1/models/shapes:predict", json={"signature_name": "pixels", "instances": pixels})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["scores"] for p in r.json()["predictions"]], expected, atol=1e-4)


def test_tfserving_classify_with_examples(client, images, expected):
    body = {"signature_name": "classify", "examples": [{"image/encoded": {"b64": b64(i)}} for i in images]}
    r = client.post("/v1/models/shapes:classify", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [[label for label, _ in row] for row in results] == [["circle", "square", "triangle"]] * len(images)
    np.testing.assert_allclose([[score for _, score in row] for row in results], expected, atol=1e-5)


def test_tfserving_status_and_metadata(client):
    status = client.get("/v1/models/shapes").json()
    assert status == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    meta = client.get("/v1/models/shapes/metadata").json()
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "pixels", "preprocess", "classify"} <= set(sigs)
    assert sigs["pixels"]["inputs"]["pixels"]["dtype"] == "DT_UINT8"


def test_tf1_half_plus_two_answers_as_tf_serving_does(client):
    assert client.post("/v1/models/half_plus_two:predict",
                       json={"instances": [[2.0], [3.0], [4.0]]}).json() == {"predictions": [[3.0], [3.5], [4.0]]}
    assert client.post("/v1/models/half_plus_two:classify",
                       json={"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}).json() == \
        {"results": [[["", 3.0]]]}
    assert client.post("/v1/models/half_plus_two:regress",
                       json={"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}).json() == \
        {"results": [3.0]}
    assert client.get("/v1/models/half_plus_two").json()["model_version_status"][0]["version"] == "123"


def test_v2_infer_json_bytes(client, images, expected):
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                        "data": [images[0].decode("latin-1")]}]}
    # JSON cannot carry raw PNG bytes as text faithfully (utf-8 re-encoding), so BYTES images go binary below;
    # here a numeric model shows the JSON path.
    del body
    r = client.post("/v2/models/half_plus_two/infer",
                    json={"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 1], "data": [1, 2]}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_version"] == "123"
    assert out["outputs"][0]["data"] == [2.5, 3.0]


def test_v2_infer_binary_images(client, images, expected):
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [len(images)],
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "scores", "parameters": {"binary_data": True}}]}).encode()
    r = client.post("/v2/models/shapes/infer", content=header + raw,
                    headers={"Inference-Header-Content-Length": str(len(header)),
                             "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    json_length = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:json_length])
    (output,) = doc["outputs"]
    assert output["name"] == "scores" and output["shape"] == [len(images), 3]
    scores = np.frombuffer(r.content[json_length:], dtype="<f4").reshape(len(images), 3)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_v2_metadata_health_and_repository(client):
    assert client.get("/v2").json()["name"] == "tlserve"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/shapes").json()
    assert meta["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
    assert client.get("/v2/models/shapes/versions/1/ready").json() == {"name": "shapes", "ready": True}
    index = client.post("/v2/repository/index").json()
    assert {"name": "shapes", "version": "1", "state": "READY", "reason": ""} in index


def test_classify_json_and_multipart_agree_with_the_model(client, images, expected):
    labels = ["circle", "square", "triangle"]
    best = [labels[i] for i in expected.argmax(1)]
    r = client.post("/classify", json={"model": "shapes", "images": [b64(i) for i in images], "top_k": 2})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert [p[0]["label"] for p in predictions] == best
    assert all(len(p) == 2 and p[0]["score"] >= p[1]["score"] for p in predictions)
    np.testing.assert_allclose([p[0]["score"] for p in predictions], expected.max(1), atol=1e-5)

    files = [("images", (f"{n}.png", i, "image/png")) for n, i in enumerate(images)]
    r = client.post("/classify", data={"model": "shapes", "top_k": "1"}, files=files)
    assert r.status_code == 200, r.text
    assert [p[0]["label"] for p in r.json()["predictions"]] == best


def _png_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, "PNG")
    return buffer.getvalue()


DEEP_JSON = b"[" * 5000 + b"]" * 5000  # ~10 KB, deeper than the interpreter's recursion limit

BAD_REQUESTS = [
    ("deep JSON to :predict", "POST", "/v1/models/shapes:predict", {"content": DEEP_JSON}, 400),
    ("deep JSON to /classify", "POST", "/classify", {"content": DEEP_JSON,
                                                      "headers": {"content-type": "application/json"}}, 400),
    ("deep JSON to V2 infer", "POST", "/v2/models/shapes/infer", {"content": DEEP_JSON}, 400),
    ("non-numeric V2 version", "GET", "/v2/models/shapes/versions/abc", {}, 404),
    ("non-numeric V2 version infer", "POST", "/v2/models/shapes/versions/abc/infer", {"content": b"{}"}, 404),
    ("invalid base64", "POST", "/classify", {"json": {"model": "shapes", "images": ["@@not base64@@"]}}, 400),
    ("random bytes", "POST", "/classify", {"json": {"model": "shapes", "images": [b64(b"\x00\x01garbage")]}}, 400),
    ("empty body", "POST", "/v1/models/shapes:predict", {"content": b""}, 400),
    ("invalid JSON", "POST", "/v1/models/shapes:predict", {"content": b"{nope"}, 400),
    ("wrong JSON shape", "POST", "/v1/models/shapes:predict", {"json": {"instances": {"a": 1}}}, 400),
    ("no instances or inputs", "POST", "/v1/models/shapes:predict", {"json": {"foo": []}}, 400),
    ("float for bytes input", "POST", "/v1/models/shapes:predict", {"json": {"instances": [1.5]}}, 400),
    ("unknown model", "POST", "/v1/models/nope:predict", {"json": {"instances": [1.0]}}, 404),
    ("unknown version", "GET", "/v1/models/shapes/versions/99", {}, 404),
    ("non-ascii digit version", "GET", "/v1/models/shapes/versions/%C2%B2", {}, 404),
    ("empty batch", "POST", "/v1/models/half_plus_two:predict", {"json": {"inputs": {"x": []}}}, 400),
    ("unknown label", "GET", "/v1/models/shapes/labels/stable", {}, 404),
    ("unknown signature", "POST", "/v1/models/shapes:predict", {"json": {"signature_name": "x", "instances": [1]}},
     404),
    ("dotdot model name", "POST", "/classify", {"json": {"model": "../shapes", "images": ["AAAA"]}}, 404),
    ("encoded dotdot in path", "GET", "/v1/models/..%2Fshapes", {}, 404),
    ("negative top_k", "POST", "/classify", {"json": {"model": "shapes", "images": ["AAAA"], "top_k": -1}}, 400),
    ("unsupported media type", "POST", "/classify", {"content": b"x", "headers": {"content-type": "text/plain"}},
     415),
    ("oversized body", "POST", "/v1/models/shapes:predict", {"content": b"x" * (3 * 2**20)}, 413),
    ("v2 bad binary size", "POST", "/v2/models/shapes/infer",
     {"content": b'{"inputs":[{"name":"images","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":9}}]}'
                 b"abc", "headers": {"Inference-Header-Content-Length": "98"}}, 400),
]


def test_classify_takes_base64_as_tf_serving_does(client, images):
    padded = client.post("/classify", json={"model": "shapes", "images": [b64(images[0])]})
    assert padded.status_code == 200, padded.text
    text = b64(images[0])
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # as the base64 command writes it
    for text in (text.rstrip("="), wrapped):
        r = client.post("/classify", json={"model": "shapes", "images": [text]})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == padded.json()["predictions"]


@pytest.mark.parametrize("what, method, path, kwargs, status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(client, images, what, method, path, kwargs,
                                                                  status):
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, (what, r.status_code, r.text)
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    ok = client.post("/classify", json={"model": "shapes", "images": [b64(images[0])]})
    assert ok.status_code == 200


def test_decompression_bomb_and_truncated_png_are_400s(client, images):
    for bad in (_png_bomb(), images[0][: len(images[0]) // 2]):
        r = client.post("/classify", json={"model": "shapes", "images": [b64(bad)]})
        assert r.status_code == 400, r.text
        assert "image 0" in r.json()["error"]


def test_a_bad_image_fails_only_its_own_request(server, images):
    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            good = [c.post("/classify", json={"model": "shapes", "images": [b64(images[i % 5])]}) for i in range(6)]
            bad = c.post("/classify", json={"model": "shapes", "images": [b64(b"\x89PNG\r\n\x1a\nbroken")]})
            return await asyncio.gather(*good, bad)

    *good, bad = asyncio.run(main())
    assert [r.status_code for r in good] == [200] * 6
    assert bad.status_code == 400


def test_64_concurrent_requests_share_batches(server, images, expected):
    labels = ["circle", "square", "triangle"]

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as c:
            return await asyncio.gather(*(
                c.post("/classify", json={"model": "shapes", "images": [b64(images[i % 5])], "top_k": 1})
                for i in range(64)))

    responses = asyncio.run(main())
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["predictions"][0][0]["label"] for r in responses] == \
        [labels[expected[i % 5].argmax()] for i in range(64)]
    histogram = server.runtime.metrics.batch_size.labels("shapes", "1")
    sizes = {s.labels["le"]: s.value for s in histogram.collect()[0].samples if s.name.endswith("_bucket")}
    assert sizes["1.0"] < sizes["+Inf"], "every batch held a single item: nothing was batched"


def test_metrics_and_request_id(client):
    r = client.get("/v1/models/shapes", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert client.get("/v1/models/shapes").headers["x-request-id"]
    text = client.get("/metrics").text
    for name in ("tlserve_requests_total", "tlserve_request_latency_seconds_bucket", "tlserve_batch_size_bucket",
                 "tlserve_queue_wait_seconds_bucket", "tlserve_batch_execution_seconds_bucket",
                 "tlserve_model_state", "tlserve_model_load_seconds_bucket"):
        assert name in text, name
    assert 'protocol="tfserving-rest"' in text and 'code="404"' in text


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/classify" in paths and "/v1/models/{model}:predict" in paths and "/v2/models/{model}/infer" in paths


def test_regress_on_a_classifier_is_a_client_error(client, images):
    body = {"signature_name": "classify", "examples": [{"image/encoded": {"b64": b64(images[0])}}]}
    r = client.post("/v1/models/shapes:regress", json=body)
    assert r.status_code == 400 and "not a regression signature" in r.json()["error"]


def test_a_client_that_leaves_while_sending_its_body_is_counted_as_gone_not_as_a_server_error(server, caplog):
    """A client that closes the connection halfway through its body (a timeout before the server reads it):
    Starlette raises ClientDisconnect from the body's stream. It was logged as an internal error, with its
    traceback, and counted as a 500; it is a client gone, counted as 499 like one that leaves after its body."""
    host, port = server.url.removeprefix("http://").split(":")
    requests = server.runtime.metrics.requests

    def count(code):
        return requests.labels("", "", "classify", "classify", code)._value.get()

    before_500, before_499 = count("500"), count("499")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b'{"model": "shapes", "images": ["' + b"A" * 1000)
        time.sleep(0.2)  # the handler is reading the body when the client goes
    deadline = time.monotonic() + 30
    while count("499") == before_499 and count("500") == before_500:
        assert time.monotonic() < deadline, "the request was never recorded"
        time.sleep(0.05)
    assert count("500") == before_500 and count("499") == before_499 + 1
    assert not [r for r in caplog.records if r.getMessage() == "internal error"]


def test_a_client_that_leaves_cancels_its_request(server, images):
    """The handler is cancelled when the client disconnects; it is counted as 499, never answered 200."""
    body = {"model": "shapes", "images": [b64(images[i % 5]) for i in range(200)]}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/classify", json=body, timeout=httpx.Timeout(5, read=0.05))
    requests = server.runtime.metrics.requests

    def count(code):
        return requests.labels("shapes", "", "classify", "classify", code)._value.get()

    deadline = time.monotonic() + 30
    while count("499") < 1:
        assert time.monotonic() < deadline, "the abandoned request was not cancelled"
        time.sleep(0.05)
