"""Issue 15: what TF Serving's own clients send (its REST guide's curls, its gRPC stubs) answers as TF Serving does,
over REST and gRPC, against a real server holding TF Serving's own test models."""

from __future__ import annotations

import grpc
import httpx
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc, regression_pb2

from service.settings import Settings
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
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


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
