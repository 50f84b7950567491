"""What every gRPC method shares: status codes from the one error table, metrics, deadlines.

``@rpc(protocol, api)`` wraps a servicer method: a ServiceError aborts the call with the table's code,
anything else with INTERNAL and no details; the call is counted in the request metrics with its gRPC
code name. Methods name the model and version they served through ``describe``, as HTTP routes do.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextvars import ContextVar
from functools import wraps

import grpc

from service.core.errors import INTERNAL, ServiceError
from service.core.requests import RequestContext, begin_request, end_request

log = logging.getLogger(__name__)
# Status messages travel in trailing metadata, which clients cap (8 KiB by default): an error that echoes a huge
# name from the request would reach the client as RESOURCE_EXHAUSTED instead of its own code.
MAX_DETAILS = 500
_labels: ContextVar[dict] = ContextVar("grpc_call_labels")
REQUEST_ID_KEY = "x-request-id"  # HTTP's header name, as metadata keys are lower case


def grpc_code(exc: BaseException) -> grpc.StatusCode:
    kind = exc.kind if isinstance(exc, ServiceError) else INTERNAL
    return grpc.StatusCode[kind.grpc_code]


def timeout_of(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds left before the client's deadline, or None when it set none (the server default applies)."""
    return context.time_remaining()


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_DETAILS else message[:MAX_DETAILS - 15] + "... (truncated)"


def describe(*, model: str | None = None, version: int | str | None = None) -> None:
    """Label the current call's metrics with the model and version it served."""
    labels = _labels.get(None)
    if labels is not None:
        if model is not None:
            labels["model"] = model
        if version is not None:
            labels["version"] = str(version)


def request_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's x-request-id metadata (as HTTP's header, at most 128 characters), else a fresh one."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and value:
            return value[:128]
    return uuid.uuid4().hex


def rpc(protocol: str, api: str):
    def decorate(method):
        @wraps(method)
        async def wrapper(self, request, context):
            labels = {"model": "", "version": ""}
            token = _labels.set(labels)
            current = begin_request(RequestContext("grpc", request_id(context), protocol, api))
            started = time.monotonic()
            code = grpc.StatusCode.OK
            try:
                return await method(self, request, context)
            except ServiceError as exc:
                code = grpc_code(exc)
                await context.abort(code, _bounded(exc.message))
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:  # noqa: BLE001 - a bug; the client gets no internals
                log.exception("internal error in %s", method.__qualname__)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, "internal error")
            finally:
                end_request(current)
                _labels.reset(token)
                self.metrics.observe_request(labels["model"], labels["version"], protocol, api, code.name,
                                             time.monotonic() - started)

        return wrapper

    return decorate
