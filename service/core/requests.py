"""Which request is running: set once by each transport's accounting, read by the data plane's record hook.

A contextvar rather than arguments: the data plane's methods keep their signatures, and the transports tell it
the transport, request id and API through the code that already labels their metrics (HTTP's RequestAccounting
and ``describe``, gRPC's ``@rpc``). Standard library only, as the rest of core.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass
class RequestContext:
    transport: str  # "http" | "grpc"
    request_id: str
    protocol: str = ""  # the metrics' protocol label (tfserving-rest, v2-grpc, ...)
    api: str = ""  # the metrics' api label (predict, classify, infer, ...)


_current: ContextVar[RequestContext | None] = ContextVar("tlserve_request", default=None)


def begin_request(context: RequestContext) -> Token:
    return _current.set(context)


def end_request(token: Token) -> None:
    _current.reset(token)


def current_request() -> RequestContext | None:
    """The request being served by this task, or None outside one (a test calling the data plane directly)."""
    return _current.get()
