"""Faults survived by a real server: broken new versions, a model directory removed under traffic, clients that
leave mid-request, a model that raises inside a batch.

(A half-copied version and a saved_model.pb that does not parse are covered in tests/service/repository/test_hot_reload.py.)
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading

import grpc
import httpx
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from service.settings import Settings
from service.transport.http.common import RequestAccounting
from tests.conftest import TESTDATA, grpc_channel
from tests.reliability.conftest import items_run, queue_depth, save_slow_model, wait_until
from tests.reliability.test_overload import predict_request
from tests.service.conftest import copy_version, start_server
from tests.service.repository.test_hot_reload import Traffic

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three" / "00000123"
BODY = {"instances": [[1.0]]}


# -- broken new versions ------------------------------------------------------------------------------------

@pytest.fixture()
def half(tmp_path):
    """'half' = half_plus_two at version 1 (answers 3.0 for 2.0), polled every 0.2 s."""
    copy_version(HALF_PLUS_TWO, tmp_path / "half", "1")
    server = start_server(Settings(model_repo=tmp_path, poll_interval_s=0.2))
    yield tmp_path, server
    server.stop()


def _version_status(url: str, version: str, timeout_s: float = 30) -> dict:
    status = {}

    def ended():
        status.update({s["version"]: s for s in httpx.get(url + "/v1/models/half").json()["model_version_status"]})
        return version in status and status[version]["state"] == "END"

    wait_until(ended, timeout_s, f"version {version} to be given up")
    return status


def _broken_version_is_never_served(repo, server, make_version) -> dict:
    """Copy a broken version 2 in (as a deployment should: hidden name, then rename) under traffic."""
    with Traffic(server.url) as traffic:
        traffic.wait_for(3.0)
        staging = repo / "half" / ".incoming-2"
        make_version(staging)
        staging.rename(repo / "half" / "2")
        status = _version_status(server.url, "2")
        served_before = len(traffic.answers)
        wait_until(lambda: len(traffic.answers) > served_before + 10, what="traffic after the failure")
    assert traffic.failures == [] and set(traffic.answers) == {3.0}, "version 1 stopped answering"
    assert status["1"]["state"] == "AVAILABLE"
    return status["2"]["status"]["error_message"]


def test_a_version_without_its_variables_is_never_served(half):
    repo, server = half

    def without_variables(path):
        shutil.copytree(HALF_PLUS_THREE, path)
        shutil.rmtree(path / "variables")

    error = _broken_version_is_never_served(repo, server, without_variables)
    assert "load failed" in error or "incomplete" in error, error


def test_a_version_with_other_signatures_is_never_served(half):
    """A model that loads and runs, but whose default signature takes another input: version 1's clients
    would all break."""
    repo, server = half
    error = _broken_version_is_never_served(repo, server, lambda path: save_slow_model(path, 1, input_name="inputs"))
    assert error == "refused: signature 'serving_default' takes inputs ['inputs'] instead of ['x']", error


def test_a_compatible_new_version_still_switches_in(half):
    repo, server = half
    copy_version(HALF_PLUS_THREE, repo / "half", "2")  # same signatures, other numbers
    wait_until(lambda: httpx.post(server.url + "/v1/models/half:predict", json={"instances": [[2.0]]}).json() ==
               {"predictions": [[4.0]]}, what="version 2 to serve")


# -- a model directory removed under traffic ----------------------------------------------------------------

def test_a_removed_model_finishes_its_in_flight_requests_then_is_404(slow_repo, tmp_path):
    shutil.copytree(slow_repo / "slower", tmp_path / "gone")
    server = start_server(Settings(model_repo=tmp_path, poll_interval_s=0.2, max_batch_size=1,
                                   max_concurrent_batches=1))
    try:
        codes = []
        threads = [threading.Thread(target=lambda: codes.append(httpx.post(
            server.url + "/v1/models/gone:predict", json=BODY, timeout=60).status_code)) for _ in range(3)]
        for t in threads:
            t.start()
        # All three in the server before the removal (one running, two queued: batches of one, ~0.5 s each); a
        # request that arrives after the removal is rightly 404 (a fresh-clone run removed it after the first).
        wait_until(lambda: queue_depth(server, "gone") >= 2, what="requests in flight")
        shutil.rmtree(tmp_path / "gone")
        for t in threads:
            t.join(timeout=60)
        assert codes == [200, 200, 200], "in-flight requests were dropped by the unload"
        wait_until(lambda: httpx.post(server.url + "/v1/models/gone:predict", json=BODY).status_code == 404,
                   what="the removed model to be unknown")
        assert httpx.get(server.url + "/v1/models/gone").status_code == 404
    finally:
        server.stop()


# -- clients that leave, and a batch that raises --------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_server(slow_repo):
    server = start_server(Settings(model_repo=slow_repo, poll_interval_s=0, max_batch_size=8,
                                   max_concurrent_batches=1))
    yield server
    server.stop()


def _on_server_loop(server, make_coroutine):
    """Run a coroutine on the server's own event loop (the uvicorn thread) and return its result."""
    loop = server.runtime.grpc._refresher.get_loop()
    return asyncio.run_coroutine_threadsafe(make_coroutine(), loop).result(timeout=30)


def _task_count(server) -> int:
    async def count():
        return len(asyncio.all_tasks())

    return _on_server_loop(server, count)


def _accounting(server) -> RequestAccounting:
    layer = server.app.middleware_stack
    while not isinstance(layer, RequestAccounting):
        layer = layer.app
    return layer


def _block_slower(server) -> list[threading.Thread]:
    """Two requests: the first running (~0.5 s), the second waiting in the queue behind it. Sent one after the
    other: sent together they can share one batch (max_batch_size 8) and leave nothing queued."""
    version = server.runtime.repository.resolve("slower")
    threads = [threading.Thread(target=httpx.post, args=(server.url + "/v1/models/slower:predict",),
                                kwargs={"json": BODY, "timeout": 60}) for _ in range(2)]
    threads[0].start()
    wait_until(lambda: version._in_flight >= 1 and queue_depth(server, "slower") == 0, what="the first one running")
    threads[1].start()
    wait_until(lambda: queue_depth(server, "slower") >= 1, what="a request waiting in the queue")
    return threads


def test_clients_that_leave_mid_request_leak_nothing(slow_server, caplog):
    server = slow_server
    httpx.post(server.url + "/v1/models/slower:predict", json=BODY, timeout=60)  # its batcher's task exists now
    version = server.runtime.repository.resolve("slower")
    tasks_before = _task_count(server)
    items_before = items_run(server, "slower")
    blockers = _block_slower(server)
    left = []

    def leave_http():  # the client gives up and closes its connection while its request waits
        try:
            httpx.post(server.url + "/v1/models/slower:predict", json=BODY, timeout=httpx.Timeout(10, read=0.2))
        except httpx.TimeoutException:
            left.append("http")

    def leave_grpc():  # the call's deadline passes while it waits: gRPC cancels it on the server
        with grpc_channel(server) as channel:
            try:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request(model="slower"),
                                                                                   timeout=0.2)
            except grpc.RpcError:
                left.append("grpc")

    leavers = [threading.Thread(target=leave_http), threading.Thread(target=leave_grpc)]
    for t in leavers:  # together, so both leave while the first blocker still runs (about 0.5 s)
        t.start()
    for t in leavers + blockers:
        t.join(timeout=60)
    wait_until(lambda: queue_depth(server, "slower") == 0 and version._in_flight == 0
               and _accounting(server).active == 0, what="queue, in-flight count and active requests back to 0")
    assert sorted(left) == ["grpc", "http"]
    assert items_run(server, "slower") - items_before == 2, "work for a client that left reached the model"
    wait_until(lambda: _task_count(server) <= tasks_before, what=f"tasks back to {tasks_before}")
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()], "a future was left unobserved"


def test_an_exception_inside_a_batch_fails_only_its_culprit_and_the_service_stays_up(slow_server):
    server = slow_server

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            blocker = asyncio.ensure_future(client.post("/v1/models/slower:predict", json=BODY))
            # Once the blocker is at the model, the burst queues behind it and leaves as one batch.
            while not server.runtime.repository.resolve("slower")._in_flight and not blocker.done():
                await asyncio.sleep(0.001)
            values = [1.0, 2.0, -1.0, 3.0, 4.0]  # -1 trips the model's own assertion: its batch raises
            answers = await asyncio.gather(*(client.post("/v1/models/slower:predict", json={"instances": [[v]]})
                                             for v in values))
            return await blocker, list(zip(values, answers))

    batches_before = _batch_count(server, "slower")
    blocker, answers = asyncio.run(burst())
    assert blocker.status_code == 200
    for value, r in answers:
        if value < 0:
            # The runtime reports TensorFlow's InvalidArgumentError as the input's fault (400).
            assert r.status_code == 400 and "rejected the input" in r.json()["error"], r.text
        else:
            assert r.status_code == 200 and r.json() == {"predictions": [[2 * value]]}, (value, r.text)
    # Two batches ran: the blocker, then the whole burst together (it raised; each item was then retried alone,
    # within that batch). Split bursts would not test that neighbours of a failing item survive.
    assert _batch_count(server, "slower") - batches_before == 2
    assert httpx.post(server.url + "/v1/models/slower:predict", json=BODY).json() == {"predictions": [[2.0]]}


def _batch_count(server, model: str) -> float:
    histogram = server.runtime.metrics.batch_size.labels(model, "1")
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))
