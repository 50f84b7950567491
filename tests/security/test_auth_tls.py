"""Optional TLS and bearer-token auth on both transports, against a real server with both turned on."""

from __future__ import annotations

import base64
import hmac

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from service.auth import AuthPolicy, read_token
from service.settings import Settings, SettingsError
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.conftest import grpc_channel
from tests.security.conftest import TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def https(secure_server, ca_context):
    with httpx.Client(base_url=secure_server.url, verify=ca_context, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def channel(secure_server, tls_files):  # the shared fixture's, but to this module's server, which serves TLS
    with grpc_channel(secure_server, root_certificates=tls_files[0]) as ch:
        yield ch


def _classify_json(images):
    return {"model": "shapes", "images": [base64.b64encode(i).decode() for i in images[:1]]}


# -- HTTP ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body", [
    ("POST", "/classify", "classify"),
    ("POST", "/v1/models/shapes:predict", {"instances": [{"b64": ""}]}),
    ("GET", "/v1/models/shapes", None),
    ("POST", "/v2/models/shapes/infer", {"inputs": []}),
    ("POST", "/v2/repository/models/shapes/unload", None),  # admin: would take the model away
    ("POST", "/v2/repository/index", None),
    ("GET", "/ui/api/models", None),  # the console's API is protected, its static files are not
    ("GET", "/openapi.json", None),
])
def test_http_needs_the_token(https, images, method, path, body):
    json_body = _classify_json(images) if body == "classify" else body
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
        response = https.request(method, path, json=json_body, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "error" in response.json() and TOKEN not in response.text


def test_http_with_the_token_is_served(https, images):
    response = https.post("/classify", json=_classify_json(images), headers=BEARER)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0][0]["label"] in ("circle", "square", "triangle")
    assert https.get("/v1/models/shapes", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"])
def test_health_and_metrics_are_open_by_default(https, path):
    assert https.get(path).status_code == 200


def test_console_static_files_are_open(https):
    # Not 401 (the console may not be mounted on this build: then 404, which is the router's answer).
    assert https.get("/ui/index.html").status_code != 401
    assert https.get("/ui/api/models").status_code == 401


def test_plain_http_to_the_tls_port_is_refused(secure_server):
    plain = secure_server.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/livez", timeout=5)
    # And the certificate is checked: a client that does not trust it cannot connect.
    with pytest.raises(httpx.ConnectError):
        httpx.get(secure_server.url + "/livez", timeout=5)


# -- gRPC ------------------------------------------------------------------------------------------------
def _predict_request(images):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array(images[:1], dtype=object)))
    return request


@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)])
def test_grpc_needs_the_token(channel, images, metadata):
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        predict.Predict(_predict_request(images), metadata=metadata, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in (err.value.details() or "")
    admin = model_service_pb2_grpc.ModelServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        admin.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), metadata=metadata, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    classifier = classifier_pb2_grpc.ClassifierStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        classifier.ListModels(classifier_pb2.ListModelsRequest(), metadata=metadata, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_with_the_token_over_tls_is_served(channel, images):
    predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = predict.Predict(_predict_request(images), metadata=(("authorization", f"Bearer {TOKEN}"),),
                               timeout=60)
    assert tf.make_ndarray(response.outputs["scores"]).shape == (1, 3)


def test_grpc_health_is_open(channel):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_without_tls_is_refused(secure_server):
    with grpc_channel(secure_server) as plain:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


# -- the policy itself -------------------------------------------------------------------------------------
def test_open_path_rules():
    policy = AuthPolicy(b"t", ("/livez", "/ui", "/ui/*", "!/ui/api/*", "/grpc.health.v1.Health/*"))
    assert policy.is_open("/livez") and policy.is_open("/ui") and policy.is_open("/ui/app.js")
    assert policy.is_open("/grpc.health.v1.Health/Check")
    for path in ("/livez/x", "/livezz", "/ui/api/models", "/v1/models/m:predict", "/ui/api/"):
        assert not policy.is_open(path), path
    assert AuthPolicy(None, ()).is_open("/v1/models/m:predict")  # auth off


def test_the_monitoring_path_is_as_open_as_metrics(tmp_path):
    # TF Serving's monitoring config moves Prometheus to its own path: it stays open when /metrics is.
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    settings = Settings(auth_token_file=token_file, prometheus_path="/monitoring/prometheus/metrics")
    assert AuthPolicy.from_settings(settings).is_open("/monitoring/prometheus/metrics")
    closed = settings.replace(auth_open_paths="/livez")
    assert not AuthPolicy.from_settings(closed).is_open("/monitoring/prometheus/metrics")


def test_tokens_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    AuthPolicy(b"abc", ()).check("/x", "Bearer abc")
    assert calls == [(b"abc", b"abc")]


@pytest.mark.parametrize("content,problem", [("", "empty"), ("two words", "printable"), ("x" * 5000, "larger")])
def test_bad_token_files_are_refused_with_a_clear_error(tmp_path, content, problem):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(SettingsError, match=problem):
        read_token(path)


def test_tls_settings_must_come_in_pairs_and_exist(tmp_path, tls_files):
    with pytest.raises(SettingsError, match="go together"):
        Settings(tls_cert_file=tls_files[0])
    with pytest.raises(SettingsError, match="not a readable file"):
        Settings(tls_cert_file=tmp_path / "missing.pem", tls_key_file=tls_files[1])
    with pytest.raises(SettingsError, match="auth_token_file"):
        Settings.from_env({"TLSERVE_AUTH_TOKEN_FILE": str(tmp_path / "missing")})


def test_the_token_is_read_once_by_the_composition_root(tmp_path):
    """build_runtime reads the token file; the HTTP app (and BentoML's middleware) use that policy, not a re-read."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from service.app import build_runtime, create_app

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    settings = Settings(auth_token_file=token_file)
    runtime = build_runtime(settings, CollectorRegistry())
    token_file.write_text("changed")
    app = create_app(settings, runtime=runtime, manage_lifecycle=False)

    async def statuses():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as client:
            return [(await client.get("/v1/models/m", headers={"Authorization": f"Bearer {token}"})).status_code
                    for token in (TOKEN, "changed")]

    assert asyncio.run(statuses()) == [404, 401]
    assert runtime.auth.token == TOKEN.encode()
