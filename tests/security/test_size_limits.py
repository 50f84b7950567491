"""Body and message size limits exist on both transports (the secure server: max_body_mb=2, grpc_max_message_mb=2),
and they hold with auth on: an oversized authenticated request is 413 / RESOURCE_EXHAUSTED, an oversized
unauthenticated one is 401 before its body is read."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import grpc_channel
from tests.security.conftest import TOKEN

OVER = 3 * 2**20  # bytes: over both 2 MiB limits


def test_http_body_limit(secure_server, ca_context):
    with httpx.Client(base_url=secure_server.url, verify=ca_context, timeout=60) as c:
        for path in ("/v1/models/shapes:predict", "/v2/models/shapes/infer", "/classify"):
            big = c.post(path, content=b"x" * OVER, headers={"Authorization": f"Bearer {TOKEN}",
                                                              "content-type": "application/json"})
            assert big.status_code == 413, (path, big.text)
            assert c.post(path, content=b"x" * OVER).status_code == 401


def test_grpc_message_limit(secure_server, tls_files):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([b"x" * OVER], dtype=object)))
    with grpc_channel(secure_server, root_certificates=tls_files[0]) as channel:
        with pytest.raises(grpc.RpcError) as err:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
