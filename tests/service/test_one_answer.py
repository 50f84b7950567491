"""Issue 13, acceptance: the same request gets the same answer on every route and transport.

Behaviour over real servers only (HTTP with httpx, gRPC with the stubs): the internals are being rewritten, so nothing
here imports a module of service/ other than the settings, the test server and the generated gRPC stubs.
"""

from __future__ import annotations

import base64
import json

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc as v2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.conftest import grpc_channel
from tests.serve_process import start_serve
from tests.service.conftest import copy_version, start_server


def assert_json_error(response: httpx.Response, statuses: range | tuple = range(400, 500)) -> None:
    """A client error in the service's shape: the status, application/json, ``{"error": "..."}``."""
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers.get("content-type", "").startswith("application/json"), \
        (response.headers.get("content-type"), response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


# -- hostile JSON on every JSON route --------------------------------------------------------------------------
DEEP = "[" * 5000 + "]" * 5000  # ~10 KB
# route -> the field its body carries its data in (where a deep value is put)
JSON_ROUTES = {
    "/v1/models/half_plus_two:predict": "instances",
    "/v1/models/shapes:classify": "examples",
    "/v1/models/half_plus_two:regress": "examples",
    "/v2/models/half_plus_two/infer": "inputs",
    "/classify": "images",
    "/v2/systemsharedmemory/region/r/register": "key",
}


def _hostile_bodies(field: str) -> dict[str, bytes]:
    return {
        "deep array": DEEP.encode(),
        "deep object": ('{"a":' * 5000 + "1" + "}" * 5000).encode(),
        "deep inside the field": f'{{"{field}": {DEEP}}}'.encode(),
        "deep inside a list in the field": f'{{"{field}": [{DEEP}]}}'.encode(),
        "invalid utf-8": b'{"' + field.encode() + b'": ["\xff\xfe\xc3\x28"]}',
        "invalid utf-8 at the top": b"\xff\xfe\xfd",
        "top-level array": b"[1, 2, 3]",
        "top-level number": b"42",
        "top-level string": b'"hello"',
        "top-level null": b"null",
        "top-level NaN": b"NaN",
        "NaN in the field": f'{{"{field}": NaN}}'.encode(),
        "huge float": f'{{"{field}": [1e999]}}'.encode(),
        "huge integer (5000 digits)": f'{{"{field}": [{"9" * 5000}]}}'.encode(),
        "huge integer at the top": ("9" * 5000).encode(),
        "empty body": b"",
        "truncated": f'{{"{field}": [1, 2'.encode(),
    }


HOSTILE_CASES = [(route, name) for route, field in JSON_ROUTES.items() for name in _hostile_bodies(field)]


@pytest.mark.parametrize("route,case", HOSTILE_CASES, ids=[f"{r} {c}" for r, c in HOSTILE_CASES])
def test_hostile_json_is_a_4xx_in_the_error_shape_on_every_route(client, route, case):
    body = _hostile_bodies(JSON_ROUTES[route])[case]
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert_json_error(response)


@pytest.mark.parametrize("case", list(_hostile_bodies("ready")))
def test_hostile_json_to_the_repository_index_is_never_a_5xx(client, case):
    # POST /v2/repository/index takes an optional body ({"ready": true} in Triton's extension). Whatever the body, the answer must not be a server error, and it is JSON either way.
    response = client.post("/v2/repository/index", content=_hostile_bodies("ready")[case],
                           headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code >= 400:
        assert_json_error(response)


# -- unknown routes and wrong methods answer {"error": ...} ---------------------------------------------------
UNKNOWN = [
    ("GET", "/nope", 404),
    ("GET", "/v1/nope", 404),
    ("POST", "/v2/models/half_plus_two/nope", 404),
    ("GET", "/v2/models/half_plus_two/versions/00000123/nope", 404),
    ("POST", "/v1/models/half_plus_two:nope", 405),  # /v1/models/{model} with model "half_plus_two:nope"
    ("GET", "/classify", 405),
    ("DELETE", "/v2/models/half_plus_two/infer", 405),
    ("PUT", "/v1/models/half_plus_two:predict", 405),
    ("GET", "/v2/repository/index", 405),
    ("POST", "/readyz", 405),  # under BentoML, one of its own routes
]


@pytest.mark.parametrize("method,path,status", UNKNOWN)
def test_unknown_routes_and_methods_answer_json_under_uvicorn(client, method, path, status):
    assert_json_error(client.request(method, path), (status,))


@pytest.fixture(scope="module")
def bento(model_repo, tmp_path_factory):
    """`tlserve serve` (BentoML's arbiter and worker): one process for the module; it is slow to start."""
    running = start_serve(model_repo, tmp_path_factory.mktemp("one-answer-bento") / "serve.log")
    yield running
    running.stop()


@pytest.mark.parametrize("method,path,status", UNKNOWN)
def test_unknown_routes_and_methods_answer_json_under_bentoml(bento, method, path, status):
    assert_json_error(httpx.request(method, bento.url + path, timeout=30), (status,))


def test_hostile_json_under_bentoml_is_a_4xx_too(bento):
    for route, field in JSON_ROUTES.items():
        for case, body in _hostile_bodies(field).items():
            response = httpx.post(bento.url + route, content=body, headers={"Content-Type": "application/json"},
                                  timeout=30)
            assert response.status_code < 500, (route, case, response.status_code, response.text[:200])


# -- unpadded base64: one answer on TF Serving REST and /classify ---------------------------------------------
def _unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def test_unpadded_base64_gets_the_same_answer_on_tfserving_rest_and_classify(client, images):
    image = next(i for i in images if len(i) % 3)  # one whose base64 needs padding
    unpadded = _unpadded(image)
    assert not unpadded.endswith("=") and len(unpadded) % 4
    tfs = client.post("/v1/models/shapes:predict", json={"instances": [{"b64": unpadded}]})
    friendly = client.post("/classify", json={"model": "shapes", "images": [unpadded], "top_k": 1})
    assert tfs.status_code == 200, tfs.text  # TF Serving accepts it: so does tlserve
    assert friendly.status_code == 200, friendly.text
    padded = client.post("/classify", json={"model": "shapes", "images": [base64.b64encode(image).decode()],
                                            "top_k": 1}).json()
    assert friendly.json()["predictions"] == padded["predictions"]
    assert max(tfs.json()["predictions"][0]["scores"]) == pytest.approx(padded["predictions"][0][0]["score"],
                                                                          abs=1e-6)


# -- a version that cannot exist is NOT_FOUND everywhere -------------------------------------------------------
@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/models/half_plus_two/versions/abc"),
    ("GET", "/v1/models/half_plus_two/versions/abc/metadata"),
    ("POST", "/v1/models/half_plus_two/versions/abc:predict"),
    ("GET", "/v2/models/half_plus_two/versions/abc"),
    ("GET", "/v2/models/half_plus_two/versions/abc/ready"),
    ("POST", "/v2/models/half_plus_two/versions/abc/infer"),
])
def test_version_abc_is_not_found_over_http(client, method, path):
    body = {"instances": [[1.0]]} if "predict" in path else \
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]} if "infer" in path else None
    assert_json_error(client.request(method, path, json=body), (404,))


def _v2_infer_request(version: str) -> v2_pb.ModelInferRequest:
    request = v2_pb.ModelInferRequest(model_name="half_plus_two", model_version=version)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 1])
    tensor.contents.fp32_contents.append(1.0)
    return request


@pytest.mark.parametrize("method", ["ModelInfer", "ModelReady", "ModelMetadata"])
def test_version_abc_is_not_found_over_grpc_v2(channel, method):
    stub = v2_grpc.GRPCInferenceServiceStub(channel)
    request = {"ModelInfer": _v2_infer_request("abc"),
               "ModelReady": v2_pb.ModelReadyRequest(name="half_plus_two", version="abc"),
               "ModelMetadata": v2_pb.ModelMetadataRequest(name="half_plus_two", version="abc")}[method]
    with pytest.raises(grpc.RpcError) as failure:
        getattr(stub, method)(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND, failure.value.details()


def test_grpc_v2_with_a_real_version_still_answers(channel):
    response = v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_v2_infer_request("123"), timeout=30)
    assert list(response.outputs[0].contents.fp32_contents) == [2.5]  # typed in, typed out


# -- BOOL raw bytes must be 0 or 1 on REST and gRPC -------------------------------------------------------------
@pytest.fixture(scope="module")
def bool_server(tmp_path_factory):
    """A server with 'flip': a tiny SavedModel, BOOL ``b`` [None] -> BOOL ``y`` = not b."""

    class Flip(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.bool, name="b")])
        def serve(self, b):
            return {"y": tf.logical_not(b)}

    root = tmp_path_factory.mktemp("bool-repo")
    staging = tmp_path_factory.mktemp("bool-export") / "1"
    module = Flip()
    tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve})
    copy_version(staging, root / "flip", "1")
    running = start_server(Settings(model_repo=root, poll_interval_s=0))
    yield running
    running.stop()


def _rest_bool(server, raw: bytes) -> httpx.Response:
    header = json.dumps({"inputs": [{"name": "b", "datatype": "BOOL", "shape": [len(raw)],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return httpx.post(server.url + "/v2/models/flip/infer", content=header + raw, timeout=30,
                      headers={"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(len(header))})


def _grpc_bool(server, raw: bytes):
    request = v2_pb.ModelInferRequest(model_name="flip")
    request.inputs.add(name="b", datatype="BOOL", shape=[len(raw)])
    request.raw_input_contents.append(raw)
    with grpc_channel(server) as ch:
        return v2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(request, timeout=30)


def test_bool_bytes_0_and_1_are_accepted_on_rest_and_grpc(bool_server):
    rest = _rest_bool(bool_server, b"\x01\x00")
    assert rest.status_code == 200, rest.text
    assert rest.json()["outputs"][0]["data"] == [False, True]
    assert list(_grpc_bool(bool_server, b"\x01\x00").raw_output_contents[0]) == [0, 1]


def test_bool_bytes_other_than_0_and_1_are_refused_on_rest_and_grpc(bool_server):
    assert_json_error(_rest_bool(bool_server, b"\x02\x07"), (400,))
    with pytest.raises(grpc.RpcError) as failure:
        _grpc_bool(bool_server, b"\x02\x07")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()


# -- at most 256 images per request, on every route --------------------------------------------------------------
def _many(images, count: int) -> list[bytes]:
    return [images[i % len(images)] for i in range(count)]  # real images: only the count is wrong


def test_257_images_are_refused_by_http_classify(client, images):
    body = {"model": "shapes", "images": [base64.b64encode(i).decode() for i in _many(images, 257)]}
    response = client.post("/classify", json=body)
    assert_json_error(response, (400,))
    assert "256" in response.json()["error"]


def test_257_images_are_refused_by_the_grpc_classifier(channel, images):
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Classify(classifier_pb2.ClassifyRequest(model="shapes", images=_many(images, 257), top_k=1), timeout=60)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert "256" in failure.value.details()


def test_257_images_are_refused_by_tfserving_grpc_predict(channel, images):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(_many(images, 257), dtype=tf.string))
    with pytest.raises(grpc.RpcError) as failure:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert "256" in failure.value.details()


def test_257_images_are_refused_by_tfserving_rest_predict(client, images):
    body = {"instances": [{"b64": base64.b64encode(i).decode()} for i in _many(images, 257)]}
    response = client.post("/v1/models/shapes:predict", json=body)
    assert_json_error(response, (400,))
    assert "256" in response.json()["error"]
