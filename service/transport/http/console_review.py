"""The console's review of captured images (issue 17): list the pending captures, show one, label or discard it.

- ``GET /ui/api/captures?model=&limit=&offset=``: a page of pending captures, lowest top-1 score first
  (``service.capture.review``), with the total and the count per model;
- ``GET /ui/api/captures/{id}/image``: the image bytes as captured, with their content type;
- ``POST /ui/api/captures/{id}``: ``{"label": "<class>"}`` moves the image to DIR/labelled/<model>/<class>/,
  ``{"discard": true}`` deletes it; both file the sidecar under DIR/reviewed/ (``layout.CaptureDir``).

With capture off (no ``--capture-dir``) the listing answers ``"enabled": false`` and no captures, so the page can
say so; the image and review routes answer 404. A second review of one id is a 404: the first one took it.
Under ``/ui/api/`` these routes need the bearer token when auth is on, as the console's other API routes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.capture.layout import CaptureDir, sniff
from service.capture.review import PendingCaptures, page_bounds
from service.codec.json_body import load_object
from service.core.errors import InvalidInput, NotFound
from service.transport.http.common import json_response, read_body

MAX_REVIEW_BODY = 4096  # {"label": <at most 255 characters>} with room to spare
REVIEW_SHAPE = 'send {"label": "<class name>"} or {"discard": true}'
IMAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff",
                 "Cache-Control": "private, max-age=3600"}  # an id's image never changes


def capture_off() -> NotFound:
    return NotFound("capture is off: start the server with --capture-dir DIR to capture and review images")


def parse_review(body: bytes) -> str | None:
    """The label of a review body, or None for a discard; InvalidInput for anything else."""
    doc = load_object(body)
    if set(doc) == {"label"}:
        return doc["label"] if isinstance(doc["label"], str) else _refuse(REVIEW_SHAPE + ": a label is a string")
    if set(doc) == {"discard"} and doc["discard"] is True:
        return None
    return _refuse(REVIEW_SHAPE)


def _refuse(message: str) -> str:
    raise InvalidInput(message)


def read_image(folder: CaptureDir, capture_id: str) -> tuple[bytes, str]:
    """A pending capture's image bytes and content type (read whole: a review may move the file at any time)."""
    path = folder.image_path(capture_id)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no pending capture {capture_id} (reviewed or evicted meanwhile?)") from None
    return data, sniff(data)[1]


def add_routes(router: APIRouter, capture_dir: Path | None) -> None:
    folder = CaptureDir(capture_dir) if capture_dir is not None else None
    pending = PendingCaptures(folder) if folder is not None else None

    @router.get("/ui/api/captures", summary="Pending captures, lowest top-1 score first (model, limit, offset)")
    async def list_captures(model: str | None = None, limit: str | None = None, offset: str | None = None):
        size, start = page_bounds(limit, offset)
        if pending is None:
            return json_response({"enabled": False, "total": 0, "offset": start, "limit": size, "models": {},
                                  "captures": []})
        page = await asyncio.to_thread(pending.page, model=model or None, limit=size, offset=start)
        return json_response({"enabled": True, **page})

    @router.get("/ui/api/captures/{capture_id}/image", summary="The image of a pending capture")
    async def capture_image(capture_id: str):
        if folder is None:
            raise capture_off()
        data, content_type = await asyncio.to_thread(read_image, folder, capture_id)
        return Response(data, media_type=content_type, headers=IMAGE_HEADERS)

    @router.post("/ui/api/captures/{capture_id}", summary='Review a capture: {"label": ...} or {"discard": true}')
    async def review_capture(capture_id: str, request: Request):
        if folder is None:
            raise capture_off()
        label = parse_review(await read_body(request, MAX_REVIEW_BODY))
        if label is None:
            reviewed = await asyncio.to_thread(folder.discard, capture_id)
        else:
            reviewed = await asyncio.to_thread(folder.label, capture_id, label)
        return json_response(reviewed)
