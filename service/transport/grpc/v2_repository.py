"""The model-repository extension over gRPC (``inference.GRPCInferenceService``): index, load, unload, with the
effect of REST's ``/v2/repository`` routes (the same data-plane calls). A mixin of ``v2.InferenceServicer``."""

from __future__ import annotations

from service.codec.v2 import check_load_parameters
from service.core.dataplane import DataPlane
from service.transport.grpc.calls import describe, rpc
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb

PROTOCOL = "v2-grpc"


class RepositoryRpcs:
    dataplane: DataPlane

    @rpc(PROTOCOL, "repository_index")
    async def RepositoryIndex(self, request, context):
        response = pb.RepositoryIndexResponse()
        for entry in self.dataplane.repository_index(request.ready):
            response.models.add(name=entry.name, version=entry.version, state=entry.state, reason=entry.reason)
        return response

    @rpc(PROTOCOL, "repository_load")
    async def RepositoryModelLoad(self, request, context):
        # As over REST: the model is (re)scanned now; whether a version is ready is ModelReady's to tell.
        describe(model=request.model_name)
        check_load_parameters(request.parameters.keys())
        await self.dataplane.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc(PROTOCOL, "repository_unload")
    async def RepositoryModelUnload(self, request, context):
        # Its one parameter, unload_dependents, concerns ensembles: tlserve serves none, so there are no dependents.
        describe(model=request.model_name)
        await self.dataplane.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()
