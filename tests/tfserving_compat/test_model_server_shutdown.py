"""tlserve-model-server's SIGTERM: the same lifecycle as `tlserve serve` (service/lifecycle.py), in both of its modes.

SIGTERM -> readiness false (HTTP /readyz 503, gRPC health NOT_SERVING) while requests are still answered, for the
drain delay -> new connections refused -> in-flight requests get the shutdown grace -> exit status 0.
"""

from __future__ import annotations

import signal
import socket
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests.conftest import grpc_channel
from tests.tfserving_compat.conftest import HALF_PLUS_TWO, run_model_server
from tests.tfserving_compat.test_model_server_e2e import verify_predict

DRAIN_DELAY_S = 3.0
GRACE_S = 1.0  # far below the 10 s uvicorn was once given by hand
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _wait_serving(health, server, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.log()
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the gRPC health service never said SERVING:\n{server.log()}")


def _hang_a_request(rest_url: str) -> socket.socket:
    """An HTTP request in flight that never completes: its body never arrives."""
    host, port = rest_url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.sendall(b"POST /v1/models/default:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    return conn


@pytest.mark.parametrize("mode", ["rest", "grpc-only"])
def test_sigterm_drains_then_exits_0_within_the_settings_grace(mode, tmp_path):
    flags = ["--model_name=default", f"--model_base_path={HALF_PLUS_TWO}", f"--drain_delay_s={DRAIN_DELAY_S}",
             f"--shutdown_grace_s={GRACE_S}"]
    rest = mode == "rest"
    server = run_model_server(*flags, *([] if rest else ["--rest_api_port=0"]), log_path=tmp_path / "server.log",
                              wait=rest)
    hung = None
    try:
        with grpc_channel(server) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            _wait_serving(health, server)
            verify_predict(predict, 3.0)
            if rest:
                hung = _hang_a_request(server.rest_url)
                time.sleep(0.3)
            sigterm_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)

            # Not ready on every transport, yet still answering, until the drain delay is over.
            not_ready: set[str] = set()
            answered_while_not_ready: set[str] = set()
            while time.monotonic() < sigterm_at + DRAIN_DELAY_S - 0.5:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == NOT_SERVING:
                    not_ready.add("grpc")
                    verify_predict(predict, 3.0)
                    answered_while_not_ready.add("grpc")
                if rest and httpx.get(server.rest_url + "/readyz", timeout=5).status_code == 503:
                    not_ready.add("http")
                    r = httpx.post(server.rest_url + "/v1/models/default:predict", json={"instances": [2.0]},
                                   timeout=5)
                    assert r.json() == {"predictions": [3.0]}
                    answered_while_not_ready.add("http")
                time.sleep(0.1)
            expected = {"grpc", "http"} if rest else {"grpc"}
            assert not_ready == expected == answered_while_not_ready

            exit_code = server.process.wait(timeout=30)
            exited_after_s = time.monotonic() - sigterm_at
    finally:
        if hung:
            hung.close()
        server.stop()
    assert exit_code == 0, server.log()
    assert exited_after_s >= DRAIN_DELAY_S, exited_after_s
    if rest:  # the hung request held the exit for the grace the settings give, not for uvicorn's 10 s
        assert DRAIN_DELAY_S + GRACE_S - 0.3 <= exited_after_s <= DRAIN_DELAY_S + GRACE_S + 4, exited_after_s
    else:
        assert exited_after_s <= DRAIN_DELAY_S + GRACE_S + 4, exited_after_s
