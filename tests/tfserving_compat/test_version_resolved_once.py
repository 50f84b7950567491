"""A request resolves its model version once: the version whose signatures checked the request is the one that
runs it. (Resolving twice let a version swapped in between answer a request checked against another.)"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc, regression_pb2

from service.settings import Settings
from service.transport.grpc.server import HEALTH_REFRESH_TASK
from tests.conftest import grpc_channel
from tests.service.conftest import copy_version, start_server
from tests.tfserving_compat.conftest import HALF_PLUS_TWO


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """An in-process server whose repository counts its resolve calls (the real method, only counted)."""
    repo = tmp_path_factory.mktemp("repo")
    copy_version(HALF_PLUS_TWO / "00000123", repo / "half_plus_two", "123")
    server = start_server(Settings(model_repo=repo, poll_interval_s=0))
    repository = server.runtime.repository
    real, calls = repository.resolve, []

    def resolve(*args, **kwargs):
        if _task_name() != HEALTH_REFRESH_TASK:  # the gRPC health refresher looks models up on its own, every 0.5 s
            calls.append(args)
        return real(*args, **kwargs)

    repository.resolve = resolve
    yield server, calls
    server.stop()


def _task_name() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread (a worker thread)
        return None
    return task.get_name() if task else None


def _examples_request(message, signature):
    request = message()
    request.model_spec.name, request.model_spec.signature_name = "half_plus_two", signature
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    return request


@pytest.mark.parametrize("method, message, signature", [
    ("Classify", classification_pb2.ClassificationRequest, "classify_x_to_y"),
    ("Regress", regression_pb2.RegressionRequest, "regress_x_to_y"),
])
def test_grpc_classify_and_regress_resolve_once(counted, method, message, signature):
    server, calls = counted
    calls.clear()
    with grpc_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        getattr(stub, method)(_examples_request(message, signature), timeout=30)
    assert len(calls) == 1


@pytest.mark.parametrize("verb, body", [
    ("classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}),
    ("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}),
    ("predict", {"instances": [[2.0]]}),
])
def test_rest_resolves_once(counted, verb, body):
    server, calls = counted
    calls.clear()
    response = httpx.post(f"{server.url}/v1/models/half_plus_two:{verb}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert len(calls) == 1
