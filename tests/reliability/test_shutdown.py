"""Graceful shutdown of `tlserve serve` (tlserve -> BentoML's arbiter -> worker) under steady HTTP and gRPC load.

SIGTERM must turn readiness false on both transports while requests are still served, then refuse new
connections, finish what is in flight, and exit 0 with every process of the tree gone. A request is lost
when it got neither an answer nor a refused connection (see bench/outcomes.py); the goal is zero.
"""

from __future__ import annotations

import base64
import signal
import time

import grpc
import httpx
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench.outcomes import Load, Tally, grpc_client, http_client
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.conftest import grpc_channel
from tests.serve_process import session_processes, start_serve

DRAIN_DELAY_S = 2.0


def _grpc_predict(channel):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[2.0]], np.float32)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return lambda: stub.Predict(request, timeout=30)


def _grpc_classify(images):
    def make(channel):
        stub = classifier_pb2_grpc.ClassifierStub(channel)
        request = classifier_pb2.ClassifyRequest(model="shapes", images=images, top_k=1)
        return lambda: stub.Classify(request, timeout=30)

    return make


def _http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None  # not an answer: not a "not ready" either


def _health(stub) -> int | None:
    try:
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
    except grpc.RpcError:
        return None


def _served_after(tally: Tally, instant: float) -> int:
    return sum(1 for finished, _ in tally.latencies_s if finished > instant)


def test_sigterm_under_load_loses_nothing_and_every_process_exits(model_repo, tiny_training, tmp_path):
    images = [tiny_training.data.images[i % len(tiny_training.data.images)] for i in range(48)]
    server = start_serve(model_repo, tmp_path / "serve.log", "--drain-delay-s", str(DRAIN_DELAY_S),
                         "--shutdown-grace-s", "15")
    http, grpc_tally = Tally(), Tally()
    quick = {"instances": [[2.0]]}
    slow = {"model": "shapes", "images": [base64.b64encode(i).decode() for i in images], "top_k": 1}
    clients = [http_client(server.url, http, "/v1/models/half_plus_two:predict", quick) for _ in range(3)]
    clients += [http_client(server.url, http, "/classify", slow),  # several batches: in flight at the stop
                grpc_client(server.grpc_target, grpc_tally, _grpc_predict),
                grpc_client(server.grpc_target, grpc_tally, _grpc_predict),
                grpc_client(server.grpc_target, grpc_tally, _grpc_classify(images))]
    try:
        with Load(clients), grpc_channel(server) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            time.sleep(2)
            assert http.served > 0 and grpc_tally.served > 0, (http.summary(), grpc_tally.summary())
            sigterm_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)

            # Readiness turns false on both transports within the drain delay, while the server still answers.
            not_ready = {}
            while len(not_ready) < 2 and time.monotonic() < sigterm_at + DRAIN_DELAY_S:
                if "http" not in not_ready and _http_status(server.url + "/readyz") == 503:
                    not_ready["http"] = time.monotonic() - sigterm_at
                if "grpc" not in not_ready and _health(health) == health_pb2.HealthCheckResponse.NOT_SERVING:
                    not_ready["grpc"] = time.monotonic() - sigterm_at
                time.sleep(0.05)

            exit_code = server.process.wait(timeout=60)
            exited_after_s = time.monotonic() - sigterm_at
            time.sleep(1)  # clients now meet a closed port
        leftovers = session_processes(server.process.pid)
    finally:
        server.kill()

    print(f"\nSIGTERM under load: not ready after {not_ready}, exit {exit_code} after {exited_after_s:.1f} s; "
          f"HTTP {http.summary()}; gRPC {grpc_tally.summary()}")
    assert set(not_ready) == {"http", "grpc"}, f"still ready {DRAIN_DELAY_S} s after SIGTERM: {not_ready}"
    assert exit_code == 0, server.output()
    assert leftovers == [], "processes outlived the arbiter"
    assert http.lost_count == 0, (http.summary(), server.output())
    # gRPC core cancels calls that reached the server but were not yet matched to a handler when server.stop()
    # begins (grpc/grpc#41785, fix pending upstream in #41786: they should be UNAVAILABLE): seen as one CANCELLED
    # call in 2 of about 10 runs here. Tolerated up to 2 and reported; any other loss (reset, timeout, INTERNAL) fails.
    grpc_losses = dict(grpc_tally.lost)
    unmatched_at_stop = grpc_losses.pop("CANCELLED: CANCELLED", 0)
    assert grpc_losses == {} and unmatched_at_stop <= 2, (grpc_tally.summary(), server.output())
    # Served during the drain delay (not ready, still answering), then refused once no longer listening.
    assert _served_after(http, sigterm_at + 0.5) > 0 and _served_after(grpc_tally, sigterm_at + 0.5) > 0
    assert http.refused > 0 and grpc_tally.refused > 0
