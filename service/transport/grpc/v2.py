"""KServe V2 / Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``, with Triton's model
configuration, statistics and classification extensions (``codec/triton.py``). The RPCs of the proto this servicer
does not override answer UNIMPLEMENTED (the generated base class)."""

from __future__ import annotations

from google.protobuf import json_format

from service.codec import triton
from service.codec.v2 import decode_input, fill_infer_outputs
from service.codec.version import parse_version
from service.core.dataplane import AVAILABLE, DataPlane, Target
from service.core.errors import InvalidInput
from service.transport.grpc.calls import describe, rpc, timeout_of
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc

PROTOCOL = "v2-grpc"


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
        ready = self.dataplane.model_ready(Target(request.name, parse_version(request.version)))
        return pb.ModelReadyResponse(ready=ready)

    @rpc(PROTOCOL, "server_metadata")
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="tlserve", version=self._version,
                                         extensions=list(triton.GRPC_EXTENSIONS))

    @rpc(PROTOCOL, "model_metadata")
    async def ModelMetadata(self, request, context):
        describe(model=request.name)
        signatures = self.dataplane.metadata(Target(request.name, parse_version(request.version))).signatures
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
            inputs[tensor.name] = decode_input(tensor, raw[i] if raw else None)
        signature = "serving_default"
        if "signature_name" in request.parameters:
            signature = request.parameters["signature_name"].string_param
        target = Target(request.model_name, parse_version(request.model_version))
        wanted = [o.name for o in request.outputs] or None
        counts = triton.class_counts((o.name, _parameter_values(o.parameters)) for o in request.outputs)
        number, outputs = await self.dataplane.predict(target, signature, inputs, output_filter=wanted,
                                                       deadline=self.dataplane.deadline(timeout_of(context)),
                                                       class_counts=counts)
        describe(version=number)
        response = pb.ModelInferResponse(model_name=request.model_name, model_version=str(number),
                                         id=request.id)
        fill_infer_outputs(response, outputs, raw=bool(raw))
        return response

    @rpc(PROTOCOL, "model_config")
    async def ModelConfig(self, request, context):
        describe(model=request.name)
        config = self.dataplane.model_config(Target(request.name, parse_version(request.version)))
        return pb.ModelConfigResponse(config=json_format.ParseDict(triton.model_config_json(config), pb.ModelConfig()))

    @rpc(PROTOCOL, "model_statistics")
    async def ModelStatistics(self, request, context):
        describe(model=request.name)
        stats = self.dataplane.statistics(request.name or None, parse_version(request.version))
        return json_format.ParseDict(triton.statistics_json(stats), pb.ModelStatisticsResponse())


def _parameter_values(parameters) -> dict:
    """A gRPC parameters map as plain values (the member of each InferParameter that is set)."""
    values = {}
    for key, parameter in parameters.items():
        member = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, member) if member else None
    return values
