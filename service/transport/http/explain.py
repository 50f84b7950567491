"""``POST /explain``: the friendly API of Grad-CAM. JSON with base64 images; a PNG overlay per image."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from service.codec.explain import format_friendly_explain, parse_friendly_explain
from service.codec.version import parse_version
from service.core.dataplane import DataPlane, Target
from service.transport.http.common import describe, json_response, parse_off_loop, read_body, request_timeout

PROTOCOL = "classify"  # tlserve's own HTTP API, as /classify
_JSON_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
    "model": {"type": "string"}, "version": {"type": "string"},
    "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
    "class_index": {"oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}},
    "required": ["images"]}}}, "required": True}}


def build_router(dataplane: DataPlane, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["tlserve"])

    @router.post("/explain", summary="Grad-CAM overlays of images (base64 PNG per image)", openapi_extra=_JSON_BODY)
    async def explain(request: Request):
        describe(request, protocol=PROTOCOL, api="explain")
        body = await read_body(request, max_body_bytes)
        model, version, images, class_indices = await parse_off_loop(body, parse_friendly_explain)
        model = model or dataplane.default_model()
        describe(request, model=model)
        number, explanations = await dataplane.explain(Target(model, parse_version(version)), images, class_indices,
                                                       deadline=dataplane.deadline(request_timeout(request)))
        describe(request, version=number)
        return json_response(await asyncio.to_thread(format_friendly_explain, model, number, images, explanations))

    return router
