"""Issue 13 item 7, acceptance: the error table of DESIGN.md "Errors", walked row by row through real routes of a
real server, over HTTP and over gRPC.

The expected table is written here literally, copied from DESIGN.md, never read from the service's code: a test
that read it from service/core/errors.py would agree with whatever the code says. One extra test checks that the
service's own table is this one.
"""

from __future__ import annotations

import io
import threading
import time

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from service.settings import Settings
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.conftest import TESTDATA, grpc_channel
from tests.reliability.conftest import save_slow_model
from tests.service.conftest import copy_version, start_server

# DESIGN.md "Errors", copied: kind -> (HTTP status, gRPC code). Keys are the service's names for the kinds.
TABLE = {
    "invalid_input": (400, "INVALID_ARGUMENT"),           # invalid input (bad bytes, shape, dtype, JSON, field)
    "unauthenticated": (401, "UNAUTHENTICATED"),
    "not_found": (404, "NOT_FOUND"),                      # unknown model, version, label or signature
    "too_large": (413, "RESOURCE_EXHAUSTED"),             # payload or message too large
    "unsupported_media_type": (415, "INVALID_ARGUMENT"),
    "internal": (500, "INTERNAL"),                        # internal error (a bug; never for bad input)
    "not_implemented": (501, "UNIMPLEMENTED"),
    "unavailable": (503, "UNAVAILABLE"),                  # model not ready, or overloaded (queue full; Retry-After)
    "deadline_exceeded": (504, "DEADLINE_EXCEEDED"),      # deadline passed while queued
}
# The one row that is not an answer: "client went away | (connection closed) | CANCELLED". Nothing reaches the
# client (it is gone), so there is nothing to observe on its side of the wire; it is not in the service's table.
CLIENT_WENT_AWAY = (None, "CANCELLED")

TOKEN = "error-table-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GRPC_AUTH = (("authorization", f"Bearer {TOKEN}"),)
BODY_LIMIT_MB = 1


@pytest.fixture(scope="module")
def table_server(tiny_export, tmp_path_factory):
    """Auth on (every other request carries the token), 1 MB limits on both transports, 'slower' one item a
    batch (~0.5 s) so that a second request waits in its queue, and 'spare' to unload."""
    root = tmp_path_factory.mktemp("error-table-repo")
    copy_version(tiny_export[0], root / "shapes", "1")
    half = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
    copy_version(half, root / "half_plus_two", "00000123")
    copy_version(half, root / "spare", "00000123")
    save_slow_model(root / "slower" / "1", 1500)
    token = tmp_path_factory.mktemp("error-table-auth") / "token"
    token.write_text(TOKEN + "\n")
    running = start_server(Settings(model_repo=root, poll_interval_s=0, max_body_mb=BODY_LIMIT_MB,
                                    grpc_max_message_mb=BODY_LIMIT_MB, auth_token_file=token,
                                    model_batching="slower:max_batch_size=1,max_concurrent_batches=1"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(table_server):
    with httpx.Client(base_url=table_server.url, timeout=60, headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def channel(table_server):  # the shared fixture's, to this module's server, sending messages up to 8 MB
    with grpc_channel(table_server, options=[("grpc.max_send_message_length", 8 * 2**20)]) as ch:
        yield ch


@pytest.fixture(scope="module")
def spare_unloaded(http):
    r = http.post("/v2/repository/models/spare/unload")
    assert r.status_code == 200, r.text
    return "spare"


def _predict_request(model: str = "half_plus_two", values=((1.0,),), name: str = "x") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array(values, np.float32)))
    return request


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "TIFF")
    return buffer.getvalue()


class Queued:
    """Two requests that keep 'slower' busy (one runs, one waits in its queue) while the body runs."""

    def __init__(self, server):
        self.server, self.codes = server, []
        self._threads = [threading.Thread(target=self._send) for _ in range(2)]

    def _send(self):
        r = httpx.post(self.server.url + "/v1/models/slower:predict", json={"instances": [[1.0]]}, headers=AUTH,
                       timeout=60)
        self.codes.append(r.status_code)

    def __enter__(self):
        for t in self._threads:
            t.start()
            time.sleep(0.15)  # one after the other: sent together they could share a batch
        time.sleep(0.15)
        return self

    def __exit__(self, *exc):
        for t in self._threads:
            t.join(timeout=60)


# -- each row, provoked over HTTP: a callable (server, client) -> httpx.Response -------------------------------
def _http_internal(server, http):
    pytest.skip("internal error cannot be provoked by bad input, by design: a 500 is a bug, never a client mistake")


def _http_not_implemented(server, http):
    # Triton's CUDA shared memory: there is no GPU memory to share in this build.
    return http.post("/v2/cudasharedmemory/region/gpu/register", json={"raw_handle": {"b64": ""}, "byte_size": 4})


def _http_unavailable(server, http):
    server_spare = http.post("/v1/models/spare:predict", json={"instances": [[1.0]]})
    assert server_spare.headers.get("retry-after"), "503 without Retry-After"
    return server_spare


def _http_deadline(server, http):
    with Queued(server):
        return http.post("/v1/models/slower:predict", json={"instances": [[1.0]]},
                         headers={"X-Request-Timeout": "0.1"})


HTTP_ROWS = {
    "invalid_input": lambda s, h: h.post("/v1/models/half_plus_two:predict", json={"instances": "not a list"}),
    "unauthenticated": lambda s, h: httpx.get(s.url + "/v1/models/half_plus_two", timeout=30),
    "not_found": lambda s, h: h.get("/v1/models/nope"),
    "too_large": lambda s, h: h.post("/v1/models/half_plus_two:predict",
                                     content=b'{"instances": [' + b"1.0," * (BODY_LIMIT_MB * 2**20 // 3) + b"1.0]}",
                                     headers={"Content-Type": "application/json"}),
    "unsupported_media_type": lambda s, h: h.post("/classify", content=b"hello", headers={"Content-Type": "text/plain"}),
    "internal": _http_internal,
    "not_implemented": _http_not_implemented,
    "unavailable": _http_unavailable,
    "deadline_exceeded": _http_deadline,
}


# -- each row, provoked over gRPC: a callable (server, channel) that makes a failing call ------------------------
def _grpc_predict(channel, request, timeout=30, metadata=GRPC_AUTH):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout,
                                                                              metadata=metadata)


def _grpc_internal(server, channel):
    pytest.skip("internal error cannot be provoked by bad input, by design: INTERNAL is a bug, never a client mistake")


def _grpc_deadline(server, channel):
    with Queued(server):
        _grpc_predict(channel, _predict_request("slower"), timeout=0.1)


GRPC_ROWS = {
    "invalid_input": lambda s, c: _grpc_predict(c, _predict_request(name="nope")),
    "unauthenticated": lambda s, c: _grpc_predict(c, _predict_request(), metadata=None),
    "not_found": lambda s, c: _grpc_predict(c, _predict_request("nope")),
    "too_large": lambda s, c: _grpc_predict(c, _predict_request(values=np.ones((BODY_LIMIT_MB * 2**20 // 2, 1)))),
    "unsupported_media_type": lambda s, c: classifier_pb2_grpc.ClassifierStub(c).Classify(
        classifier_pb2.ClassifyRequest(model="shapes", images=[_tiff()]), timeout=30, metadata=GRPC_AUTH),
    "internal": _grpc_internal,
    # An empty configuration (neither model_config_list nor custom_model_config) is not implemented.
    "not_implemented": lambda s, c: model_service_pb2_grpc.ModelServiceStub(c).HandleReloadConfigRequest(
        model_management_pb2.ReloadConfigRequest(), timeout=30, metadata=GRPC_AUTH),
    "unavailable": lambda s, c: _grpc_predict(c, _predict_request("spare")),
    "deadline_exceeded": _grpc_deadline,
}


@pytest.mark.parametrize("kind", list(TABLE))
def test_each_row_over_http(table_server, http, spare_unloaded, kind):
    status, _ = TABLE[kind]
    response = HTTP_ROWS[kind](table_server, http)
    assert response.status_code == status, (kind, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    assert isinstance(response.json().get("error"), str) and response.json()["error"]


@pytest.mark.parametrize("kind", list(TABLE))
def test_each_row_over_grpc(table_server, channel, spare_unloaded, kind):
    _, code = TABLE[kind]
    with pytest.raises(grpc.RpcError) as failure:
        GRPC_ROWS[kind](table_server, channel)
    assert failure.value.code() == grpc.StatusCode[code], (kind, failure.value.code(), failure.value.details())
    assert failure.value.details(), "a status without a message"


def test_unsupported_image_format_is_415_over_http_too(http):
    import base64

    r = http.post("/classify", json={"model": "shapes", "images": [base64.b64encode(_tiff()).decode()]})
    assert r.status_code == TABLE["unsupported_media_type"][0], r.text


def test_the_services_own_table_is_the_designs():
    from service.core.errors import ERROR_TABLE  # the one internal import: the table under test

    assert {k.name: (k.http_status, k.grpc_code) for k in ERROR_TABLE} == TABLE
