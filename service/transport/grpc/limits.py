"""A cap on concurrent gRPC calls, as HTTP has one (``max_concurrent_requests``): beyond it, UNAVAILABLE at once.

Without it a flood of calls would each hold its message and wait for an image decode before reaching the
model's bounded queue, so memory would grow with the backlog. gRPC's own ``maximum_concurrent_rpcs`` answers
RESOURCE_EXHAUSTED, which the error table keeps for oversized messages; overload is UNAVAILABLE (retryable).
Health checks are never refused: a probe must see the server, busy or not.
"""

from __future__ import annotations

import grpc

from service.core.errors import Unavailable
from service.transport.grpc.calls import grpc_code

UNLIMITED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ConcurrencyLimit(grpc.aio.ServerInterceptor):
    def __init__(self, max_concurrent: int):
        self.max_concurrent = max_concurrent
        self.active = 0

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or \
                handler_call_details.method.startswith(UNLIMITED_PREFIXES):
            return handler
        return grpc.unary_unary_rpc_method_handler(self._limited(handler.unary_unary),
                                                   request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    def _limited(self, method):
        async def limited(request, context):
            if self.active >= self.max_concurrent:
                error = Unavailable(f"too many concurrent requests ({self.max_concurrent})", retry_after_s=1.0)
                await context.abort(grpc_code(error), error.message)
            self.active += 1
            try:
                return await method(request, context)
            finally:
                self.active -= 1

        return limited
