"""A short soak (bench/soak.py's three phases, about 10 s of overload) against `tlserve serve`: every request is
served or cleanly refused, nothing else; the server's memory does not grow with the backlog. The figures are
printed; speed is never asserted (the 60 s version is `make soak`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench.soak import Traffic, soak
from tests.serve_process import start_serve


def _predict(channel):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return lambda: stub.Predict(request, timeout=60)


def test_short_soak_at_twice_capacity_loses_nothing_and_memory_stays_flat(slow_repo, tmp_path):
    # Small bounds, so that twice the capacity overflows them many times over in a few seconds.
    server = start_serve(slow_repo, tmp_path / "serve.log", "--max-batch-size", "4", "--max-queue", "16",
                         "--max-concurrent-requests", "32", "--drain-delay-s", "0")
    try:
        figures = soak(server.url, server.grpc_target, server.process.pid,
                       Traffic("/v1/models/slow:predict", {"instances": [[1.0]]}, _predict),
                       seconds=10, warmup_s=3, overload=2.0, clients=8, probe_s=3)
    finally:
        server.stop()
    print("\nshort soak:", figures)
    load = figures["soak"]
    assert load["lost"] == 0, load["lost_reasons"]  # nothing but 200 and clean 503 / UNAVAILABLE
    assert load["served"] > 0 and load["rejected_503"] > 0, "the soak did not overload the server"
    assert figures["rss_mb"]["growth_pct"] < 25, figures["rss_mb"]  # generous: the 60 s soak holds < 10%
    assert server.process.returncode == 0, server.output()
