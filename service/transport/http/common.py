"""What every HTTP route shares: error bodies from the one table, bounded bodies, request accounting.

``RequestAccounting`` is plain ASGI middleware (no per-request task switching as with BaseHTTPMiddleware):
it caps concurrent requests, honours and returns ``X-Request-ID``, records the request metrics and writes
one access-log line per request. Routes say what they served through ``describe``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.codec.json_body import load_json
from service.core.errors import INTERNAL, InvalidInput, ServiceError, TooLarge, Unavailable
from service.core.requests import RequestContext, begin_request, current_request, end_request
from service.observability.metrics import Metrics

access_log = logging.getLogger("tlserve.access")
log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
TIMEOUT_HEADER = "x-request-timeout"  # seconds; optional, lowers the configured default


def error_response(exc: Exception) -> JSONResponse:
    """``{"error": message}`` with the status from the error table (TF Serving's error shape)."""
    if isinstance(exc, ServiceError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s else None
        return JSONResponse({"error": exc.message}, status_code=exc.kind.http_status, headers=headers)
    log.exception("internal error", exc_info=exc)
    return JSONResponse({"error": "internal error"}, status_code=INTERNAL.http_status)


def describe(request: Request, *, model: str = "", version: int | str | None = None, protocol: str = "",
             api: str = "") -> None:
    """Tell the accounting middleware what this request was (labels of its metrics)."""
    state = request.scope.setdefault("state", {})
    if model:
        state["model"] = model
    if version is not None:
        state["version"] = str(version)
    if protocol:
        state["protocol"] = protocol
    if api:
        state["api"] = api
    context = current_request()  # what the data plane's records say of this request
    if context is not None:
        context.protocol = state.get("protocol", context.protocol)
        context.api = state.get("api", context.api)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``max_bytes`` (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"request body of {declared} bytes exceeds the limit of {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def request_timeout(request: Request) -> float | None:
    """The client's ``X-Request-Timeout`` in seconds, or None; it can only shorten the server's own timeout."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise InvalidInput(f"{TIMEOUT_HEADER} must be a positive number of seconds, got {raw[:40]!r}")
    return value


CLIENT_CLOSED = 499  # nginx's code for "client closed the request": recorded, never sent


async def _run_unless_client_leaves(app, scope, receive, send) -> bool:
    """Run the app; cancel it if the client disconnects after sending its body. True when cancelled.

    Cancelling the handler cancels its batcher futures, so work for a client that is gone is dropped
    before it reaches the model (the same as a cancelled gRPC call).
    """
    body_read = asyncio.Event()

    async def tracking_receive():
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body"):
            body_read.set()
        return message

    handler = asyncio.ensure_future(app(scope, tracking_receive, send))

    async def watch() -> None:
        await body_read.wait()
        if (await receive())["type"] == "http.disconnect":  # nothing else can arrive after the body
            handler.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await handler
        return False
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            return True
        raise
    finally:
        watcher.cancel()


class RequestAccounting:
    def __init__(self, app, metrics: Metrics, max_concurrent: int, closing=lambda: False):
        """``closing()`` is True once shutdown has begun: answers then carry ``Connection: close`` so that
        clients stop reusing connections to a server about to stop listening."""
        self.app = app
        self.metrics = metrics
        self.max_concurrent = max_concurrent
        self.closing = closing
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.monotonic()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:128] or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(REQUEST_ID_HEADER.encode(), request_id.encode())]
                if self.closing():
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        if self.active >= self.max_concurrent:
            response = error_response(Unavailable(f"too many concurrent requests ({self.max_concurrent})",
                                                  retry_after_s=1.0))
            await response(scope, receive, send_with_id)
            self._record(scope, state, status["code"], request_id, time.monotonic() - started)
        else:
            self.active += 1
            token = begin_request(RequestContext("http", request_id))
            try:
                if await _run_unless_client_leaves(self.app, scope, receive, send_with_id):
                    status["code"] = CLIENT_CLOSED
            except Exception:
                status["code"] = 500  # answered by Starlette's outermost handler, after this middleware
                raise
            finally:
                end_request(token)
                self.active -= 1
                self._record(scope, state, status["code"], request_id, time.monotonic() - started)

    def _record(self, scope, state: dict, code: int, request_id: str, seconds: float) -> None:
        if state.get("api"):
            self.metrics.observe_request(state.get("model", ""), state.get("version", ""),
                                         state.get("protocol", "http"), state["api"], str(code), seconds)
        client = scope.get("client")
        access_log.info("%s %s %s %d %.1fms id=%s", client[0] if client else "-", scope["method"], scope["path"],
                        code, seconds * 1000, request_id)


def parse_json(body: bytes):
    """JSON body or a 400 that says where it broke (the codec's one loader)."""
    return load_json(body)


def json_response(payload, status_code: int = 200) -> Response:
    # allow_nan: TF Serving writes NaN and Infinity as bare tokens, which its clients accept.
    return Response(json.dumps(payload, allow_nan=True, separators=(",", ":")), status_code=status_code,
                    media_type="application/json")


OFF_LOOP_BYTES = 256 * 1024  # bodies above this are parsed in a worker thread, not on the event loop


async def parse_off_loop(body: bytes, parse, *args):
    """``parse(body, *args)``; in a worker thread when the body is large enough to stall other requests."""
    if len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(parse, body, *args)
    return parse(body, *args)
