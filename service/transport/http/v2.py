"""KServe V2 / Open Inference Protocol over REST, with Triton's extensions: binary tensor data, model repository
(index, load, unload), model configuration, statistics and classification (``codec/triton.py``), and tensors in
system shared memory (the regions' own routes: ``v2_shared_memory.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.codec import triton
from service.codec import v2 as v2_codec
from service.codec.version import parse_version
from service.core.dataplane import AVAILABLE, DataPlane, Target
from service.transport.http.common import (
    describe,
    json_response,
    parse_off_loop,
    read_body,
    request_timeout,
)

PROTOCOL = "v2-rest"
MODEL_PREFIXES = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
INFERENCE_PATHS = tuple(prefix + "/infer" for prefix in MODEL_PREFIXES)
SERVER_NAME = "tlserve"
HEADER_LENGTH = "inference-header-content-length"
_INFER_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}},
                                           "application/octet-stream": {}}, "required": True}}


def _tensor_meta(spec) -> dict:
    return {"name": spec.name, "datatype": spec.dtype.name,
            "shape": [-1 if d is None else d for d in (spec.shape or ())]}


def build_router(dataplane: DataPlane, max_body_bytes: int, server_version: str) -> APIRouter:
    router = APIRouter(tags=["KServe V2"])

    @router.get("/v2", summary="Server metadata")
    async def server_metadata(request: Request):
        describe(request, protocol=PROTOCOL, api="server_metadata")
        return {"name": SERVER_NAME, "version": server_version, "extensions": list(triton.HTTP_EXTENSIONS)}

    @router.get("/v2/health/live", summary="Server liveness")
    async def live(request: Request):
        return {"live": True}

    @router.get("/v2/health/ready", summary="Server readiness")
    async def ready(request: Request):
        ok = dataplane.ready()
        return json_response({"ready": ok}, status_code=200 if ok else 503)

    async def model_metadata(request: Request, model: str, version: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="model_metadata")
        signatures = dataplane.metadata(Target(model, parse_version(version))).signatures
        signature = signatures.get("serving_default") or next(iter(signatures.values()))
        versions = [str(s.number) for s in dataplane.status(model) if s.state == AVAILABLE]
        return {"name": model, "versions": versions, "platform": "tensorflow_savedmodel",
                "inputs": [_tensor_meta(s) for s in signature.inputs.values()],
                "outputs": [_tensor_meta(s) for s in signature.outputs.values()]}

    async def model_ready(request: Request, model: str, version: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="model_ready")
        ok = dataplane.model_ready(Target(model, parse_version(version)))
        return json_response({"name": model, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request, model: str, version: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="infer")
        target = Target(model, parse_version(version))
        body = await read_body(request, max_body_bytes)
        header = request.headers.get(HEADER_LENGTH)
        parsed = await parse_off_loop(body, v2_codec.parse_infer, header, dataplane.shared_memory_read)
        signature = str(parsed.parameters.get("signature_name", "serving_default"))
        inputs = {t.name: t.data for t in parsed.inputs}
        wanted = [o["name"] for o in parsed.outputs] or None
        requested = [(o["name"], o.get("parameters") or {}) for o in parsed.outputs]
        counts = triton.class_counts(requested)
        in_shm = v2_codec.requested_shared_outputs(requested)
        number, outputs = await dataplane.predict(target, signature, inputs, output_filter=wanted,
                                                  deadline=dataplane.deadline(request_timeout(request)),
                                                  class_counts=counts)
        describe(request, version=number)
        shared = v2_codec.write_shared_outputs(outputs, in_shm, dataplane.shared_memory_write)
        payload, header_length = v2_codec.encode_infer_response(
            model, str(number), outputs, request_id=parsed.id,
            binary_outputs=v2_codec.binary_output_names(parsed, outputs), shared=shared)
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(payload, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    async def model_config(request: Request, model: str, version: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="model_config")
        return triton.model_config_json(dataplane.model_config(Target(model, parse_version(version))))

    async def statistics(request: Request, model: str | None = None, version: str | None = None):
        describe(request, model=model or "", protocol=PROTOCOL, api="model_statistics")
        return triton.statistics_json(dataplane.statistics(model, parse_version(version)))

    # Before the model routes: /v2/models/stats is every model's statistics, not a model named "stats".
    router.add_api_route("/v2/models/stats", statistics, methods=["GET"], summary="Every model's statistics")
    for prefix in MODEL_PREFIXES:
        router.add_api_route(prefix, model_metadata, methods=["GET"], summary="Model metadata")
        router.add_api_route(prefix + "/config", model_config, methods=["GET"], summary="Model configuration")
        router.add_api_route(prefix + "/stats", statistics, methods=["GET"], summary="Model (version) statistics")
        router.add_api_route(prefix + "/ready", model_ready, methods=["GET"], summary="Model readiness")
        router.add_api_route(prefix + "/infer", infer, methods=["POST"], openapi_extra=_INFER_BODY,
                             summary="Inference (JSON or binary tensor data)")

    @router.post("/v2/repository/index", summary="Models and versions with their states")
    async def index(request: Request):
        describe(request, protocol=PROTOCOL, api="repository_index")
        body = await read_body(request, max_body_bytes)
        ready_only = v2_codec.parse_index_request(body)
        return [{"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
                for e in dataplane.repository_index(ready_only)]

    @router.post("/v2/repository/models/{model}/load", summary="Load (re-scan) a model now")
    async def load(request: Request, model: str):
        describe(request, model=model, protocol=PROTOCOL, api="repository_load")
        v2_codec.check_load_parameters(v2_codec.load_parameter_names(await read_body(request, max_body_bytes)))
        return json_response({"name": model, "ready": await dataplane.load_model(model)})

    @router.post("/v2/repository/models/{model}/unload", summary="Unload a model until the next load")
    async def unload(request: Request, model: str):
        describe(request, model=model, protocol=PROTOCOL, api="repository_unload")
        await dataplane.unload_model(model)
        return {"name": model, "ready": False}

    return router

