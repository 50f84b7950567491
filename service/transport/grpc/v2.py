"""KServe V2 / Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``."""

from __future__ import annotations

import math

import numpy as np

from service.codec import dtypes
from service.codec.v2 import decode_bytes_elements, encode_bytes_elements
from service.core.errors import InvalidInput
from service.core.dataplane import AVAILABLE, DataPlane, Target
from service.transport.grpc.calls import describe, rpc, timeout_of
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc

PROTOCOL = "v2-grpc"
# Which typed-contents field carries each datatype (FP16 and BF16 travel only as raw contents).
_CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                   "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                   "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                   "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _version(raw: str) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"model_version '{raw}' is not a version number")
    return int(raw)


def _input_array(tensor, raw: bytes | None) -> np.ndarray:
    dtype = dtypes.by_v2(tensor.datatype)
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{tensor.name}': shape {list(shape)} has a negative dimension")
    dtypes.check_shape_size(shape, f"input '{tensor.name}'")
    count = math.prod(shape)
    if raw is not None:
        if dtype.name == "BYTES":
            values = decode_bytes_elements(raw, count, what=f"input '{tensor.name}'")
            return np.array(values, dtype=object).reshape(shape)
        little = dtype.numpy.newbyteorder("<")
        if len(raw) != count * little.itemsize:
            raise InvalidInput(f"input '{tensor.name}': {len(raw)} raw bytes for {count} {dtype.name} elements")
        return np.frombuffer(raw, little).astype(dtype.numpy).reshape(shape)
    field = _CONTENTS_FIELD.get(dtype.name)
    if field is None:
        raise InvalidInput(f"input '{tensor.name}': {dtype.name} must be sent in raw_input_contents")
    values = list(getattr(tensor.contents, field))
    return dtypes.to_numpy(values, dtype, shape, where=f"input '{tensor.name}'")


def _raw_output(array: np.ndarray) -> tuple[str, bytes]:
    dtype = dtypes.by_numpy(array.dtype)
    if dtype.name == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
        return dtype.name, encode_bytes_elements(items)
    return dtype.name, np.ascontiguousarray(array, dtype=dtype.numpy.newbyteorder("<")).tobytes()


class InferenceServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics, server_version: str):
        self.dataplane, self.metrics, self._version = dataplane, metrics, server_version

    @rpc(PROTOCOL, "server_live")
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @rpc(PROTOCOL, "server_ready")
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @rpc(PROTOCOL, "model_ready")
    async def ModelReady(self, request, context):
        describe(model=request.name)
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(Target(request.name, _version(request.version))))

    @rpc(PROTOCOL, "server_metadata")
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="tlserve", version=self._version,
                                         extensions=["model_repository"])

    @rpc(PROTOCOL, "model_metadata")
    async def ModelMetadata(self, request, context):
        describe(model=request.name)
        signatures = self.dataplane.metadata(Target(request.name, _version(request.version))).signatures
        signature = signatures.get("serving_default") or next(iter(signatures.values()))
        response = pb.ModelMetadataResponse(name=request.name, platform="tensorflow_savedmodel")
        response.versions.extend(str(s.number) for s in self.dataplane.status(request.name) if s.state == AVAILABLE)
        for specs, out in ((signature.inputs, response.inputs), (signature.outputs, response.outputs)):
            for spec in specs.values():
                out.add(name=spec.name, datatype=spec.dtype.name,
                        shape=[-1 if d is None else d for d in (spec.shape or ())])
        return response

    @rpc(PROTOCOL, "infer")
    async def ModelInfer(self, request, context):
        describe(model=request.model_name)
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
        inputs = {}
        for i, tensor in enumerate(request.inputs):
            if tensor.name in inputs:
                raise InvalidInput(f"input '{tensor.name}' appears twice")
            inputs[tensor.name] = _input_array(tensor, raw[i] if raw else None)
        signature = "serving_default"
        if "signature_name" in request.parameters:
            signature = request.parameters["signature_name"].string_param
        target = Target(request.model_name, _version(request.model_version))
        wanted = [o.name for o in request.outputs] or None
        number, outputs = await self.dataplane.predict(target, signature, inputs, output_filter=wanted,
                                                       deadline=self.dataplane.deadline(timeout_of(context)))
        describe(version=number)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version=str(number),
                                         id=request.id)
        for name, value in outputs.items():
            datatype, data = _raw_output(np.asarray(value))
            response.outputs.add(name=name, datatype=datatype, shape=list(np.shape(value)))
            response.raw_output_contents.append(data)
        return response
