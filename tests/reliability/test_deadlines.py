"""Deadlines are enforced in the queue: a request whose deadline passes while it waits gets 504 /
DEADLINE_EXCEEDED and its items never reach the model. The deadline is the gRPC client's, the HTTP
``X-Request-Timeout`` header (seconds), or the server's ``request_timeout_s``, whichever is shortest."""

from __future__ import annotations

import threading
import time

import grpc
import httpx
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from service.settings import Settings
from tests.conftest import grpc_channel
from tests.reliability.conftest import items_run, queue_depth, wait_until
from tests.reliability.test_overload import predict_request
from tests.service.conftest import start_server

BODY = {"instances": [[1.0]]}


@pytest.fixture(scope="module")
def one_at_a_time(slow_repo):
    """'slower' runs one item per batch, one batch at a time, about 0.5 s each: a second request waits in the
    queue."""
    server = start_server(Settings(model_repo=slow_repo, poll_interval_s=0, max_batch_size=1,
                                   max_concurrent_batches=1))
    yield server
    server.stop()


class Blockers:
    """Two requests that keep 'slower' busy: the first runs, the second waits in its queue."""

    def __init__(self, server):
        self.server, self.codes = server, []
        self._threads = [threading.Thread(target=self._send) for _ in range(2)]

    def _send(self):
        self.codes.append(httpx.post(self.server.url + "/v1/models/slower:predict", json=BODY, timeout=60).status_code)

    def __enter__(self):
        self.items_before = items_run(self.server, "slower")
        for t in self._threads:
            t.start()
        wait_until(lambda: queue_depth(self.server, "slower") >= 1, what="a request waiting in the queue")
        return self

    def __exit__(self, *exc):
        for t in self._threads:
            t.join(timeout=60)

    def items_run_since(self) -> float:
        return items_run(self.server, "slower") - self.items_before


def test_http_request_timeout_header_expires_in_the_queue_without_running(one_at_a_time):
    with Blockers(one_at_a_time) as blockers:
        r = httpx.post(one_at_a_time.url + "/v1/models/slower:predict", json=BODY, timeout=60,
                       headers={"X-Request-Timeout": "0.1"})
    assert r.status_code == 504 and "deadline" in r.json()["error"]
    assert blockers.codes == [200, 200]
    assert blockers.items_run_since() == 2, "the expired request reached the model"


def test_grpc_deadline_expires_in_the_queue_without_running(one_at_a_time):
    with Blockers(one_at_a_time) as blockers, grpc_channel(one_at_a_time) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.Predict(predict_request(model="slower"), timeout=0.1)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert blockers.codes == [200, 200]
    assert blockers.items_run_since() == 2, "the expired call reached the model"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_a_malformed_timeout_header_is_a_400(one_at_a_time, value):
    r = httpx.post(one_at_a_time.url + "/v1/models/slow:predict", json=BODY, headers={"X-Request-Timeout": value})
    assert r.status_code == 400 and "x-request-timeout" in r.json()["error"].lower()


def test_the_server_request_timeout_applies_without_a_header(slow_repo):
    server = start_server(Settings(model_repo=slow_repo, poll_interval_s=0, max_batch_size=1, request_timeout_s=0.2,
                                   max_concurrent_batches=1))
    try:
        before = items_run(server, "slower")
        results = []
        threads = [threading.Thread(target=lambda: results.append(httpx.post(
            server.url + "/v1/models/slower:predict", json=BODY, timeout=60).status_code)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        # Both answered 504 (the running batch outlives 0.2 s too); only the one that got to run was executed.
        assert results == [504, 504]
        wait_until(lambda: items_run(server, "slower") - before >= 1, what="the running batch to finish")
        time.sleep(1.0)  # longer than one batch: a queued request that wrongly ran would be counted by now
        assert items_run(server, "slower") - before == 1
    finally:
        server.stop()
