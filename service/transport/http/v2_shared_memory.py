"""Triton's shared-memory extension over REST: system shared-memory regions (status, register, unregister), and
CUDA shared memory, which this build cannot offer (no GPU memory to share)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.codec import v2 as v2_codec
from service.core.dataplane import DataPlane
from service.core.errors import NotImplementedYet
from service.transport.http.common import describe, read_body

PROTOCOL = "v2-rest"
# A register body is a small JSON object; anything larger is not one.
MAX_REGISTER_BYTES = 64 * 1024


def build_router(dataplane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["KServe V2"])

    async def status(request: Request, region: str = ""):
        describe(request, protocol=PROTOCOL, api="shared_memory_status")
        return v2_codec.shared_memory_status_json(dataplane.shared_memory_status(region))

    async def register(request: Request, region: str):
        describe(request, protocol=PROTOCOL, api="shared_memory_register")
        body = await read_body(request, MAX_REGISTER_BYTES)
        dataplane.shared_memory_register(v2_codec.parse_shared_memory_register(body, region))
        return {}

    async def unregister(request: Request, region: str = ""):
        describe(request, protocol=PROTOCOL, api="shared_memory_unregister")
        dataplane.shared_memory_unregister(region)
        return {}

    for prefix in ("/v2/systemsharedmemory", "/v2/systemsharedmemory/region/{region}"):
        router.add_api_route(prefix + "/status", status, methods=["GET"], summary="Registered shared memory regions")
        router.add_api_route(prefix + "/unregister", unregister, methods=["POST"],
                             summary="Unregister one region, or all")
    router.add_api_route("/v2/systemsharedmemory/region/{region}/register", register, methods=["POST"],
                         summary="Register a POSIX shared memory region")

    # CUDA shared memory: there are never regions to list or to unregister (clients such as Triton's
    # reuse_infer_objects_client.py unregister all of them first); registering one is not implemented.
    async def cuda_status(request: Request, region: str = ""):
        describe(request, protocol=PROTOCOL, api="cuda_shared_memory_status")
        if region:
            raise NotImplementedYet.cuda_shared_memory()
        return []

    async def cuda_register(request: Request, region: str):
        describe(request, protocol=PROTOCOL, api="cuda_shared_memory_register")
        raise NotImplementedYet.cuda_shared_memory()

    async def cuda_unregister(request: Request, region: str = ""):
        describe(request, protocol=PROTOCOL, api="cuda_shared_memory_unregister")
        return {}

    for prefix in ("/v2/cudasharedmemory", "/v2/cudasharedmemory/region/{region}"):
        router.add_api_route(prefix + "/status", cuda_status, methods=["GET"], summary="CUDA regions (none)")
        router.add_api_route(prefix + "/unregister", cuda_unregister, methods=["POST"],
                             summary="Unregister CUDA regions (there are none)")
    router.add_api_route("/v2/cudasharedmemory/region/{region}/register", cuda_register, methods=["POST"],
                         summary="Not implemented: no GPU shared memory in this build")
    return router
