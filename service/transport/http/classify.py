"""``POST /classify``: the friendly API. JSON with base64 images, or a multipart form with image files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.codec.b64 import decode_b64
from service.codec.threshold import FIELD as THRESHOLD_FIELD
from service.codec.threshold import parse_threshold
from service.codec.version import parse_version
from service.core.dataplane import DEFAULT_TOP_K, MAX_IMAGES_PER_REQUEST, Classification, DataPlane, Target
from service.core.errors import InvalidInput, UnsupportedMediaType
from service.transport.http.common import (
    describe,
    json_response,
    parse_json,
    parse_off_loop,
    read_body,
    request_timeout,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

PROTOCOL = "classify"
PATH = "/classify"


class ClassifyRequest(BaseModel):
    """The JSON form (documented for OpenAPI; parsed by hand so errors keep the service's shape)."""

    model: str | None = Field(None, description="model name; may be omitted when one model is served")
    version: str | None = Field(None, description="version number (default: the newest available)")
    images: list[str] = Field(..., description="base64-encoded JPEG/PNG/GIF/BMP images")
    top_k: int = Field(DEFAULT_TOP_K, ge=1)
    unknown_threshold: float | None = Field(None, description="the unknown score above which an image is not "
                                            "confident (default: the export's own threshold)")


class Label(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[list[Label]]
    confident: list[bool] = Field(..., description="per image: its unknown score is at most the threshold (always "
                                  "true for an export without an unknown score)")


def classify_answer(model: str, answer: Classification) -> dict:
    """The JSON of a classify answer (``ClassifyResponse``), the same for /classify and the BentoML api."""
    return {"model": model, "version": str(answer.version),
            "predictions": [[{"label": p.label, "score": p.score} for p in row] for row in answer.predictions],
            "confident": answer.confident}


def _b64(value, index: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"images[{index}] must be a base64 string")
    return decode_b64(value, f"images[{index}]")


def _top_k(raw) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise InvalidInput("top_k must be a positive integer")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("top_k must be a positive integer") from None
    if value < 1:
        raise InvalidInput(f"top_k must be >= 1, got {value}")
    return value


Parsed = tuple[str | None, str | None, list[bytes], int, float | None]


def _from_json(body: bytes) -> Parsed:
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object with 'images'")
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InvalidInput("'images' must be a non-empty list of base64 strings")
    model, version = doc.get("model"), doc.get("version")
    if model is not None and not isinstance(model, str):
        raise InvalidInput("'model' must be a string")
    return model, None if version is None else str(version), [_b64(v, i) for i, v in enumerate(images)], \
        _top_k(doc.get("top_k", DEFAULT_TOP_K)), parse_threshold(doc.get(THRESHOLD_FIELD))


async def _from_form(request: Request, body: bytes) -> Parsed:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        # One file more than the limit, so that the data plane gives its own refusal (the same on every transport).
        form = await Request(request.scope, replay).form(max_files=MAX_IMAGES_PER_REQUEST + 1, max_fields=16)
    except Exception as exc:  # starlette raises MultiPartException / HTTPException for malformed forms
        raise InvalidInput(f"malformed multipart form: {getattr(exc, 'detail', exc)}") from exc
    files = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
    if not files or len(files) != len(form.getlist("images")):
        raise InvalidInput("send the images as one or more file fields named 'images'")
    images = [await f.read() for f in files]
    model, version = form.get("model"), form.get("version")
    return (model if isinstance(model, str) and model else None,
            version if isinstance(version, str) and version else None, images, _top_k(form.get("top_k", DEFAULT_TOP_K)),
            parse_threshold(form.get(THRESHOLD_FIELD)))


def build_router(dataplane: DataPlane, max_body_bytes: int) -> APIRouter:
    # FastAPI here, not at import: the BentoML arbiter imports this module for ClassifyResponse, and FastAPI's
    # import (0.2 s) would delay every cold start before the worker is even started.
    from fastapi import APIRouter

    router = APIRouter(tags=["tlserve"])

    @router.post(PATH, response_model=ClassifyResponse, summary="Top-k labels of images",
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": ClassifyRequest.model_json_schema()},
                     "multipart/form-data": {"schema": {"type": "object", "properties": {
                         "model": {"type": "string"}, "top_k": {"type": "integer"},
                         "unknown_threshold": {"type": "number"},
                         "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}},
                     "required": True}})
    async def classify(request: Request):
        describe(request, protocol=PROTOCOL, api="classify")
        body = await read_body(request, max_body_bytes)
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media == "application/json":
            model, version, images, top_k, threshold = await parse_off_loop(body, _from_json)
        elif media == "multipart/form-data":
            model, version, images, top_k, threshold = await _from_form(request, body)
        else:
            raise UnsupportedMediaType(f"content type '{media}': send application/json or multipart/form-data")
        model = model or dataplane.default_model()
        describe(request, model=model)
        answer = await dataplane.classify(
            Target(model, parse_version(version)), top_k, images=images,
            deadline=dataplane.deadline(request_timeout(request)), unknown_threshold=threshold)
        describe(request, version=answer.version)
        return json_response(classify_answer(model, answer))  # built to ClassifyResponse's shape: not validated

    return router
