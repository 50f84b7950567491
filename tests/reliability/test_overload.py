"""Overload: beyond a model's bounded queue, and beyond the concurrency cap, HTTP answers 503 with Retry-After and
gRPC UNAVAILABLE, at once and without running the model; what was admitted is answered correctly."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.settings import Settings
from tests.conftest import grpc_channel
from tests.reliability.conftest import items_run
from tests.service.conftest import start_server

FLOOD = 64


@pytest.fixture(scope="module")
def small_queue(slow_repo):
    server = start_server(Settings(model_repo=slow_repo, poll_interval_s=0, max_batch_size=4, max_queue=8,
                                   max_concurrent_batches=1))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_cap(slow_repo):
    server = start_server(Settings(model_repo=slow_repo, poll_interval_s=0, max_batch_size=4, max_queue=1000,
                                   max_concurrent_batches=1, max_concurrent_requests=4))
    yield server
    server.stop()


def flood_http(url: str, n: int = FLOOD) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(client.post("/v1/models/slow:predict", json={"instances": [[1.0]]})
                                          for _ in range(n)))

    return asyncio.run(main())


def predict_request(value: float = 1.0, model: str = "slow") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[value]], np.float32)))
    return request


def flood_grpc(target: str, n: int = FLOOD, during=None) -> list[tuple[grpc.StatusCode, str]]:
    """``n`` concurrent Predict calls; ``during(channel)`` runs while they are in flight."""
    with grpc_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        futures = [stub.Predict.future(predict_request(), timeout=60) for _ in range(n)]
        seen_during = during(channel) if during else None
        outcomes = []
        for future in futures:
            try:
                response = future.result()
                assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.0]]
                outcomes.append((grpc.StatusCode.OK, ""))
            except grpc.RpcError as exc:
                outcomes.append((exc.code(), exc.details()))
    return outcomes if during is None else (outcomes, seen_during)


def check_http(responses: list[httpx.Response], message: str) -> Counter:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers.get("retry-after") == "1" and message in r.json()["error"], (r.headers, r.text)
        else:
            assert r.json() == {"predictions": [[2.0]]}
    return codes


def test_http_beyond_the_model_queue_is_503_with_retry_after_and_never_runs(small_queue):
    before = items_run(small_queue, "slow")
    codes = check_http(flood_http(small_queue.url), "queue full")
    assert items_run(small_queue, "slow") - before == codes[200], "a refused request reached the model"


def test_grpc_beyond_the_model_queue_is_unavailable_and_never_runs(small_queue):
    before = items_run(small_queue, "slow")
    outcomes = flood_grpc(small_queue.grpc_target)
    codes = Counter(code for code, _ in outcomes)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
    assert all("queue full" in details for code, details in outcomes if code == grpc.StatusCode.UNAVAILABLE)
    assert items_run(small_queue, "slow") - before == codes[grpc.StatusCode.OK]


def test_http_beyond_the_concurrency_cap_is_503_with_retry_after(small_cap):
    codes = check_http(flood_http(small_cap.url), "too many concurrent requests")
    assert codes[200] >= 4


def test_grpc_beyond_the_concurrency_cap_is_unavailable_and_health_still_answers(small_cap):
    def health(channel):
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status

    outcomes, health_status = flood_grpc(small_cap.grpc_target, during=health)
    codes = Counter(code for code, _ in outcomes)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
    assert all("too many concurrent requests" in details
               for code, details in outcomes if code == grpc.StatusCode.UNAVAILABLE)
    assert health_status == health_pb2.HealthCheckResponse.SERVING  # probes are never capped
    # The cap is released: once the flood is over, calls are admitted again.
    assert Counter(code for code, _ in flood_grpc(small_cap.grpc_target, n=4)) == {grpc.StatusCode.OK: 4}
