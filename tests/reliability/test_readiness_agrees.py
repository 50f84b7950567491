"""Issue 13, acceptance: every readiness view tells the same story.

The four views: HTTP ``/readyz`` (BentoML's own route under `tlserve serve`), HTTP ``/v2/health/ready`` (KServe V2),
gRPC ``grpc.health.v1.Health/Check`` for the server (service ""), gRPC V2 ``ServerReady``. They must agree at start,
after a model is unloaded or fails to load (with ``ready_when`` "all" and "any"), and throughout a graceful drain.
Behaviour over real servers only: HTTP with httpx, gRPC with the stubs.
"""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc as v2_grpc
from tests.conftest import TESTDATA, grpc_channel
from tests.serve_process import start_serve
from tests.service.conftest import copy_version, start_server

AGREE_WITHIN_S = 3.0  # gRPC health is refreshed from readiness twice a second: allow a few refreshes


def _http_ready(url: str) -> bool | None:
    try:
        status = httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None  # no answer is not an answer either way
    assert status in (200, 503), (url, status)
    return status == 200


def _grpc(call) -> bool | None:
    try:
        return call()
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return None  # the server stopped listening
        raise


def views(url: str, channel) -> dict[str, bool | None]:
    health, v2 = health_pb2_grpc.HealthStub(channel), v2_grpc.GRPCInferenceServiceStub(channel)
    return {
        "/readyz": _http_ready(url + "/readyz"),
        "/v2/health/ready": _http_ready(url + "/v2/health/ready"),
        "grpc health": _grpc(lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
                             == health_pb2.HealthCheckResponse.SERVING),
        "grpc ServerReady": _grpc(lambda: v2.ServerReady(v2_pb.ServerReadyRequest(), timeout=5).ready),
    }


def assert_agree(url: str, channel, expected: bool | None = None, what: str = "") -> bool:
    """Poll until the four views agree (and equal ``expected`` if given); fail with the last views seen."""
    deadline = time.monotonic() + AGREE_WITHIN_S
    while True:
        seen = views(url, channel)
        values = set(seen.values())
        if len(values) == 1 and (expected is None or values == {expected}):
            return values.pop()
        if time.monotonic() > deadline:
            pytest.fail(f"readiness views disagree {what}: {seen}" + ("" if expected is None else
                                                                     f" (expected all {expected})"))
        time.sleep(0.1)


def _repo(tiny_export, root):
    copy_version(tiny_export[0], root / "shapes", "1")
    copy_version(TESTDATA / "saved_model_half_plus_two_cpu" / "00000123", root / "half_plus_two", "00000123")
    return root


def _broken_version(root):
    """A version that cannot load (a corrupt saved_model.pb), copied in as deployments do."""
    staging = root / ".incoming-broken"
    (staging / "variables").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    (root / "broken").mkdir()
    staging.rename(root / "broken" / "1")


@pytest.mark.parametrize("ready_when", ["all", "any"])
def test_views_agree_at_start_after_unload_and_with_a_model_that_fails_to_load(tiny_export, tmp_path, ready_when):
    root = _repo(tiny_export, tmp_path / "repo")
    server = start_server(Settings(model_repo=root, poll_interval_s=0.3, ready_when=ready_when))
    try:
        with grpc_channel(server) as channel, httpx.Client(base_url=server.url) as http:
            assert_agree(server.url, channel, True, "at start")

            assert http.post("/v2/repository/models/half_plus_two/unload").status_code == 200
            assert_agree(server.url, channel, True if ready_when == "any" else None,
                         f"after unloading one of two models (ready_when={ready_when})")

            assert http.post("/v2/repository/models/half_plus_two/load").status_code == 200
            assert_agree(server.url, channel, True, "after loading it again")

            _broken_version(root)  # now one of three configured models has no version that loads
            deadline = time.monotonic() + 30
            while not any(m["name"] == "broken" for m in http.post("/v2/repository/index").json()):
                assert time.monotonic() < deadline, "the broken model was never discovered"
                time.sleep(0.1)
            time.sleep(1.0)  # its load attempt has failed by now
            assert_agree(server.url, channel, ready_when == "any",
                         f"with one model failing to load (ready_when={ready_when})")
    finally:
        server.stop()


def test_views_agree_during_a_drain_of_the_uvicorn_app(model_repo):
    server = start_server(Settings(model_repo=model_repo, poll_interval_s=0))
    try:
        with grpc_channel(server) as channel:
            assert_agree(server.url, channel, True, "at start")
            loop = server.server.servers[0].get_loop()  # the event loop of the uvicorn thread
            asyncio.run_coroutine_threadsafe(server.runtime.drain(), loop).result(timeout=30)
            assert_agree(server.url, channel, False, "while draining")
            # Draining is "not ready, still serving".
            r = httpx.post(server.url + "/v1/models/half_plus_two:predict", json={"instances": [[2.0]]})
            assert r.json() == {"predictions": [[3.0]]}
    finally:
        server.stop()


DRAIN_DELAY_S = 5.0


def test_views_agree_throughout_the_drain_of_tlserve_serve(model_repo, tmp_path):
    serve = start_serve(model_repo, tmp_path / "serve.log", "--drain-delay-s", str(DRAIN_DELAY_S),
                        "--shutdown-grace-s", "5")
    try:
        with grpc_channel(serve) as channel:
            assert_agree(serve.url, channel, True, "at start")
            serve.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            # The drain turns readiness false within moments; after that, until the server stops listening, every
            # complete round of the four views must say "not ready".
            while _http_ready(serve.url + "/readyz") is not False:
                assert time.monotonic() - sent < DRAIN_DELAY_S / 2, "readiness never turned false on SIGTERM"
                time.sleep(0.05)
            time.sleep(0.6)  # gRPC health follows within one refresh
            rounds = []
            while time.monotonic() - sent < DRAIN_DELAY_S - 0.5:
                seen = views(serve.url, channel)
                if None in seen.values():
                    break  # stopped listening: the drain is over
                rounds.append(seen)
                time.sleep(0.1)
            assert rounds, "no complete round of the four views during the drain"
            disagreeing = [r for r in rounds if set(r.values()) != {False}]
            assert not disagreeing, f"{len(disagreeing)} of {len(rounds)} rounds during the drain: {disagreeing[0]}"
        assert serve.process.wait(timeout=60) == 0
    finally:
        serve.stop()
