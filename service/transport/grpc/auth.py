"""gRPC side of the bearer-token auth: a server interceptor reading the ``authorization`` metadata.

A refused call ends with the error table's code for Unauthenticated (UNAUTHENTICATED) before its handler runs.
Methods are matched against the policy's open paths as ``/package.Service/Method`` (health is open by default).
"""

from __future__ import annotations

import grpc

from service.auth import AuthPolicy
from service.core.errors import Unauthenticated
from service.transport.grpc.calls import grpc_code


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, policy: AuthPolicy):
        self.policy = policy

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if self.policy.is_open(method):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self.policy.check(method, metadata.get("authorization"))
        except Unauthenticated as exc:
            handler = await continuation(handler_call_details)
            return None if handler is None else _refusing(handler, exc)
        return await continuation(handler_call_details)


def _refusing(handler: grpc.RpcMethodHandler, exc: Unauthenticated) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only aborts (gRPC needs the shape to read the request)."""
    code = grpc_code(exc)

    async def refuse(_request, context):
        await context.abort(code, exc.message)

    async def refuse_stream(_request, context):
        await context.abort(code, exc.message)
        yield  # pragma: no cover - makes this an async generator, as a streaming response handler must be

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
