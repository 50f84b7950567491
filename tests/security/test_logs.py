"""No tokens and no request payloads in the logs: requests carrying the bearer token (right and wrong) and bodies
with a marker string go through HTTP and gRPC at DEBUG level; the server's log records (caplog) and its output on
stdout/stderr (capfd) contain neither, while the access log does carry the request ids, status codes and timings."""

from __future__ import annotations

import base64
import logging

import grpc
import httpx
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import grpc_channel
from tests.security.conftest import TOKEN

MARKER = "PAYLOAD-MARKER-7f3a9c"
CLIENT_LOGGERS = ("httpx", "httpcore", "hpack")  # the test's own client, not the server


def test_tokens_and_payloads_stay_out_of_the_logs(secure_server, ca_context, tls_files, images, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    good, bad = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}{MARKER}"}
    marker_b64 = base64.b64encode(MARKER.encode()).decode()
    with httpx.Client(base_url=secure_server.url, verify=ca_context, timeout=60) as c:
        calls = [
            ("/classify", {"model": "shapes", "images": [base64.b64encode(images[0]).decode()]}, good, 200),
            ("/classify", {"model": MARKER, "images": [marker_b64]}, good, 404),
            ("/classify", {"model": "shapes", "images": [marker_b64]}, good, 400),
            ("/classify", {"model": "shapes", "images": [MARKER]}, good, 400),
            ("/v1/models/shapes:predict", {"instances": [{"b64": marker_b64}]}, good, 400),
            ("/v1/models/half_plus_two:predict", {"instances": [MARKER]}, good, 400),
            ("/v2/models/half_plus_two/infer", {"inputs": [{"name": MARKER, "datatype": "FP32", "shape": [1],
                                                            "data": [MARKER]}]}, good, 400),
            ("/classify", {"model": "shapes", "images": [marker_b64]}, bad, 401),
        ]
        for i, (path, body, headers, status) in enumerate(calls):
            response = c.post(path, json=body, headers={**headers, "x-request-id": f"log-test-{i}"})
            assert response.status_code == status, (path, response.text)
        assert c.post("/classify", content=b'{"images": [' + MARKER.encode(), headers={
            **good, "content-type": "application/json", "x-request-id": "log-test-bad-json"}).status_code == 400
    with grpc_channel(secure_server, root_certificates=tls_files[0]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "shapes"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([MARKER.encode()], dtype=object)))
        for metadata, code in (((("authorization", f"Bearer {TOKEN}"),), grpc.StatusCode.INVALID_ARGUMENT),
                               ((("authorization", f"Bearer {MARKER}"),), grpc.StatusCode.UNAUTHENTICATED)):
            try:
                stub.Predict(request, metadata=metadata, timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() == code, exc.details()

    server_records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    server_text = "\n".join(r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "") for r in server_records)
    output = capfd.readouterr()
    for secret in (TOKEN, MARKER, base64.b64encode(MARKER.encode()).decode()[:16]):
        assert secret not in server_text
        assert secret not in output.out and secret not in output.err
    # What the access log does carry: one line per request with its id, its status code and its time.
    access = [r.getMessage() for r in server_records if r.name == "tlserve.access"]
    for i, (_, _, _, status) in enumerate(calls):
        line = next(line for line in access if f"id=log-test-{i}" in line)
        assert f" {status} " in line and "ms" in line
