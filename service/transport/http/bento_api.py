"""The friendly classify as a BentoML api, so that ``bentoml.SyncHTTPClient(url).classify(images=[Path(...)])`` works.

BentoML's client finds only ``@bentoml.api`` methods (listed in ``/schema.json``); the mounted app's routes are
invisible to it. The api lives at ``ROUTE``, not ``/classify``: BentoML's api routes come before the mounted app, so
an api at ``/classify`` would take that path from the JSON and multipart clients the mounted route serves. It calls
the same data plane as ``/classify`` (and so joins the same shared batcher) and answers the same JSON; errors take
the status of the one error table and ``{"error": ...}`` (BentoML's own handler would hide 5xx messages and answer
4xx bodies in another shape).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.codec.threshold import parse_threshold
from service.codec.version import parse_version
from service.core.dataplane import MAX_IMAGES_PER_REQUEST, DataPlane, Target
from service.core.errors import InvalidInput, ServiceError, UnsupportedMediaType
from service.transport.http.classify import classify_answer
from service.transport.http.common import RequestAccounting, describe, error_response, read_body

ROUTE = "/bentoml/classify"
PROTOCOL, API = "classify", "classify-bentoml"


class ApiGate:
    """What the mounted app does for its routes, done here for the api's route (BentoML's api parses the body before
    any tlserve code runs): ``RequestAccounting`` (metrics, concurrency cap, X-Request-ID, access log), the body limit
    (413), and a multipart form whose ``images`` are all files (BentoML would answer a malformed form with a 500 and
    would fetch a URL given as an ``images`` text field). Anything else passes straight through."""

    def __init__(self, app, *, max_body_bytes: int, accounting: Callable[[], dict[str, Any]]):
        """``accounting()``: ``RequestAccounting``'s arguments, asked for at the first request (BentoML builds its
        middleware before the worker's start-up hook has built the runtime whose metrics they hold)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._accounting = accounting
        self._accounted: RequestAccounting | None = None

    async def __call__(self, scope, receive, send):
        ours = scope["type"] == "http" and scope.get("path") == ROUTE and scope.get("method") == "POST"
        if not ours:
            return await self.app(scope, receive, send)
        if self._accounted is None:
            self._accounted = RequestAccounting(self._gate, **self._accounting())
        await self._accounted(scope, receive, send)

    async def _gate(self, scope, receive, send):
        request = Request(scope, receive)
        describe(request, protocol=PROTOCOL, api=API)
        try:
            body = await read_body(request, self.max_body_bytes)
            await _check_form(scope, body)
        except ServiceError as exc:
            return await error_response(exc)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _check_form(scope, body: bytes) -> None:
    media = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaType(f"content type '{media}': send the images as files in multipart/form-data (as "
                                   "bentoml's client does); JSON with base64 images goes to POST /classify")

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:  # the limits of /classify's form: one file more than the data plane's limit, which gives its own refusal
        form = await Request(scope, replay).form(max_files=MAX_IMAGES_PER_REQUEST + 1, max_fields=16)
    except Exception as exc:  # starlette raises MultiPartException / HTTPException for malformed forms
        raise InvalidInput(f"malformed multipart form: {getattr(exc, 'detail', exc)}") from exc
    try:
        images = form.getlist("images")
        if not images or not all(isinstance(f, UploadFile) for f in images):
            raise InvalidInput("send the images as one or more file fields named 'images'")
    finally:
        await form.close()


def _read(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]  # BentoML spooled the files to disk (within the gate's body limit)


async def classify_files(request: Request, dataplane: DataPlane, images: list[Path],
                         model: str | None, top_k: int, version: int | str | None, unknown_threshold: float | None
                         ) -> dict | JSONResponse:
    """/classify's answer for uploaded files, or the error response the one table gives."""
    try:
        data = await asyncio.to_thread(_read, images)
        model = model or dataplane.default_model()
        describe(request, model=model)
        target = Target(model, parse_version(None if version is None else str(version)))
        answer = await dataplane.classify(target, top_k, images=data, deadline=dataplane.deadline(),
                                          unknown_threshold=parse_threshold(unknown_threshold))
        describe(request, version=answer.version)
        return classify_answer(model, answer)
    except ServiceError as exc:
        return error_response(exc)
