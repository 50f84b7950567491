"""Issue 15: what TF Serving's own clients send (its REST guide's curls, its gRPC stubs) answers as TF Serving does,
over REST and gRPC, against a real server holding TF Serving's own test models."""

from __future__ import annotations

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from tests.conftest import TESTDATA
from tests.service.conftest import copy_version, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs-repo")
    copy_version(TESTDATA / "saved_model_half_plus_three" / "00000123", root / "half_plus_three", "00000123")
    copy_version(TESTDATA / "saved_model_half_plus_two_cpu" / "00000123", root / "half_plus_two", "00000123")
    running = start_server(Settings(model_repo=root, poll_interval_s=0.5, batch_timeout_ms=1))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


REGRESS = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}


def test_rest_guide_regress_curl_on_half_plus_three(client):
    """The signature declares DT_FLOAT, the placeholder it feeds is DT_STRING: fed by the placeholder's type."""
    r = client.post("/v1/models/half_plus_three:regress", json=REGRESS)
    assert r.status_code == 200, r.text
    assert r.json() == {"results": [3.5, 4.0]}


def test_grpc_regress_on_half_plus_three(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = "half_plus_three", "tensorflow/serving/regress"
    for x in (1.0, 2.0):
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    values = [r.value for r in stub.Regress(request, timeout=60).result.regressions]
    assert values == pytest.approx([3.5, 4.0])


# -- TF Serving's own error texts, from every transport (its ServableRequest::DebugString, ServerCore, predict_util) --

MISSING_MODEL = "Servable not found for request: Latest(nope)"
MISSING_VERSION = "Servable not found for request: Specific(half_plus_two, 7)"
MISSING_LABEL = "Unrecognized servable version label: stable"
MISSING_SIGNATURE = 'Serving signature key "nope" not found.'


@pytest.mark.parametrize(("method", "path", "body", "text"), [
    ("GET", "/v1/models/nope", None, MISSING_MODEL),
    ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, MISSING_MODEL),
    ("GET", "/v1/models/half_plus_two/versions/7", None, MISSING_VERSION),
    ("POST", "/v1/models/half_plus_two/versions/7:predict", {"instances": [1.0]}, MISSING_VERSION),
    ("POST", "/v1/models/half_plus_two/labels/stable:predict", {"instances": [1.0]}, MISSING_LABEL),
    ("GET", "/v1/models/half_plus_two/labels/stable", None, MISSING_LABEL),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "nope", "instances": [1.0]}, MISSING_SIGNATURE),
    ("POST", "/v1/models/half_plus_two:regress", {"signature_name": "nope", "examples": [{"x": 1.0}]},
     MISSING_SIGNATURE),
    ("GET", "/v2/models/nope", None, MISSING_MODEL),
    ("POST", "/v2/models/half_plus_two/versions/7/infer",
     {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}, MISSING_VERSION),
])
def test_rest_not_found_texts_are_tf_servings(client, method, path, body, text):
    r = client.request(method, path, json=body)
    assert (r.status_code, r.json()) == (404, {"error": text})


def _predict(model, version=None, label=None, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = model, signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    return request


@pytest.mark.parametrize(("request_args", "text"), [
    ({"model": "nope"}, MISSING_MODEL),
    ({"model": "half_plus_two", "version": 7}, MISSING_VERSION),
    ({"model": "half_plus_two", "label": "stable"}, MISSING_LABEL),
    ({"model": "half_plus_two", "signature": "nope"}, MISSING_SIGNATURE),
])
def test_grpc_not_found_texts_are_tf_servings(stub, request_args, text):
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_predict(**request_args), timeout=30)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND, text)


def test_v2_grpc_not_found_texts_are_tf_servings(channel):
    v2 = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for call, request, text in ((v2.ModelMetadata, pb.ModelMetadataRequest(name="nope"), MISSING_MODEL),
                                (v2.ModelInfer, pb.ModelInferRequest(model_name="half_plus_two", model_version="7"),
                                 MISSING_VERSION)):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=30)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND, text)
