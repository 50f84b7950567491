"""Bugs the property-based tests found, each pinned by a plain test against a real server (and the unit below it)."""

from __future__ import annotations

import json

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from service.codec import dtypes
from service.core.errors import InvalidInput
from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc


def test_a_shape_whose_size_overflows_int64_is_invalid_not_internal(channel):
    # 2**31 * 2**33 == 2**64: an int64 product wraps to 0, which "matched" an empty tensor and crashed in reshape.
    request = v2_pb.ModelInferRequest(model_name="half_plus_two")
    request.inputs.add(name="x", datatype="FP32", shape=[2**31, 2**33])
    with pytest.raises(grpc.RpcError) as err:
        grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    with pytest.raises(InvalidInput, match="too large"):
        dtypes.to_numpy([], dtypes.by_v2("FP32"), (2**31, 2**33), where="x")


def test_a_tensorproto_cannot_expand_a_few_bytes_into_a_huge_tensor(channel):
    # TF's fill rule: fewer values than the shape repeats the last one. A 30-byte PredictRequest asking for 2**26
    # floats (256 MiB) or strings would be materialised before any check; it is refused before it allocates.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for dtype, field, value in ((types_pb2.DT_FLOAT, "float_val", 1.0), (types_pb2.DT_STRING, "string_val", b"a")):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        proto = request.inputs["x"]
        proto.dtype = dtype
        proto.tensor_shape.dim.add(size=2**26)
        getattr(proto, field).append(value)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert "expand" in err.value.details()
    # Small fills stay valid (TF Serving's clients use them for constant tensors).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=3)
    request.inputs["x"].tensor_shape.dim.add(size=1)
    request.inputs["x"].float_val.append(2.0)
    reply = stub.Predict(request, timeout=30)
    assert list(reply.outputs["y"].float_val) == [3.0, 3.0, 3.0]


ZERO_SIZED_HUGE = [2**31, 2**40, 0]  # no elements, but numpy cannot even describe the shape: "array is too big"


@pytest.mark.parametrize("datatype,raw", [("FP32", None), ("FP32", b""), ("BYTES", b"")])
def test_a_zero_sized_tensor_with_huge_dimensions_is_invalid_over_grpc(channel, datatype, raw):
    request = v2_pb.ModelInferRequest(model_name="half_plus_two")
    request.inputs.add(name="x", datatype=datatype, shape=ZERO_SIZED_HUGE)
    if raw is not None:
        request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as err:
        grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


def test_a_zero_sized_tensor_with_huge_dimensions_is_invalid_over_http(client):
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": ZERO_SIZED_HUGE, "data": []}]}
    assert client.post("/v2/models/half_plus_two/infer", json=doc).status_code == 400
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": ZERO_SIZED_HUGE,
                                     "parameters": {"binary_data_size": 0}}]}).encode()
    response = client.post("/v2/models/half_plus_two/infer", content=header,
                           headers={"Inference-Header-Content-Length": str(len(header)),
                                    "content-type": "application/octet-stream"})
    assert response.status_code == 400, response.text
