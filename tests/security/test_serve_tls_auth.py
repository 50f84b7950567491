"""`tlserve serve --tls-cert-file --tls-key-file --auth-token-file`: BentoML's HTTPS and the gRPC server's TLS,
bearer auth on both, health and metrics open — the real command, arbiter and worker."""

from __future__ import annotations


import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import grpc_channel
from tests.security.conftest import TOKEN
from tests.serve_process import start_serve


@pytest.fixture(scope="module")
def served(model_repo, tls_files, token_file, ca_context, tmp_path_factory):
    cert, key = tls_files
    server = start_serve(model_repo, tmp_path_factory.mktemp("tls") / "serve.log", "--tls-cert-file", str(cert),
                         "--tls-key-file", str(key), "--auth-token-file", str(token_file),
                         scheme="https", verify=ca_context)
    yield server.url, server.grpc_port
    server.stop()


def test_https_with_bearer_auth(served, ca_context):
    url, _ = served
    with httpx.Client(base_url=url, verify=ca_context, timeout=60) as c:
        assert c.get("/livez").status_code == 200  # BentoML's own routes: open by default
        assert c.get("/metrics").status_code == 200
        for path in ("/v1/models/half_plus_two", "/docs.json"):  # the mounted app and BentoML's own
            refused = c.get(path)
            assert refused.status_code == 401, (path, refused.text)
            assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # The BentoML api: the token is checked before its body is read (then the gate refuses the JSON: 415).
        assert c.post("/bentoml/classify", json={"images": []}).status_code == 401
        assert c.post("/bentoml/classify", json={"images": []},
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 415
        answer = c.post("/v1/models/half_plus_two:predict", json={"instances": [[2.0]]},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.json() == {"predictions": [[3.0]]}
    with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
        httpx.get(url.replace("https", "http") + "/livez", timeout=5)


def test_grpc_over_tls_with_bearer_auth(served, tls_files):
    _, grpc_port = served
    with grpc_channel(f"127.0.0.1:{grpc_port}", root_certificates=tls_files[0]) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30).status == \
            health_pb2.HealthCheckResponse.SERVING
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[2.0]], np.float32)))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Predict(request, timeout=30, metadata=(("authorization", f"Bearer {TOKEN}"),))
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [[3.0]])
