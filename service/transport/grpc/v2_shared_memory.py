"""Triton's shared-memory extension over gRPC (``inference.GRPCInferenceService``): system shared-memory regions,
and CUDA shared memory, which this build cannot offer. A mixin of ``v2.InferenceServicer``."""

from __future__ import annotations

from service.codec.v2 import shared_memory_region
from service.core.dataplane import DataPlane
from service.core.errors import NotImplementedYet
from service.transport.grpc.calls import rpc
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb

PROTOCOL = "v2-grpc"


class SharedMemoryRpcs:
    dataplane: DataPlane

    @rpc(PROTOCOL, "shared_memory_status")
    async def SystemSharedMemoryStatus(self, request, context):
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self.dataplane.shared_memory_status(request.name):
            response.regions[region.name].CopyFrom(pb.SystemSharedMemoryStatusResponse.RegionStatus(
                name=region.name, key=region.key, offset=region.offset, byte_size=region.byte_size))
        return response

    @rpc(PROTOCOL, "shared_memory_register")
    async def SystemSharedMemoryRegister(self, request, context):
        self.dataplane.shared_memory_register(
            shared_memory_region(request.name, request.key, request.offset, request.byte_size))
        return pb.SystemSharedMemoryRegisterResponse()

    @rpc(PROTOCOL, "shared_memory_unregister")
    async def SystemSharedMemoryUnregister(self, request, context):
        self.dataplane.shared_memory_unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    # CUDA: never a region to list or unregister (as over REST); registering one is not implemented.
    @rpc(PROTOCOL, "cuda_shared_memory_status")
    async def CudaSharedMemoryStatus(self, request, context):
        if request.name:
            raise NotImplementedYet.cuda_shared_memory()
        return pb.CudaSharedMemoryStatusResponse()

    @rpc(PROTOCOL, "cuda_shared_memory_register")
    async def CudaSharedMemoryRegister(self, request, context):
        raise NotImplementedYet.cuda_shared_memory()

    @rpc(PROTOCOL, "cuda_shared_memory_unregister")
    async def CudaSharedMemoryUnregister(self, request, context):
        return pb.CudaSharedMemoryUnregisterResponse()
