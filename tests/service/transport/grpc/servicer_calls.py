"""Calling a gRPC servicer method in-process, without a server, for requests that fail while they are decoded."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from service.transport.grpc import v2 as grpc_v2


class _Context:
    """Just enough of grpc.aio.ServicerContext for a method that fails before it runs anything."""

    code = details = None

    async def abort(self, code, details):
        self.code, self.details = code, details
        raise grpc.aio.AbortError()

    def time_remaining(self):
        return None

    def invocation_metadata(self):
        return ()


class _Unreached:
    """A data plane that must not be called: the request fails while it is decoded."""

    def __getattr__(self, name):
        def unreached(*args, **kwargs):
            raise AssertionError(f"dataplane.{name} called")
        return unreached


class _Metrics:
    def observe_request(self, *args):
        pass


def v2_failure(method: str, request) -> tuple[grpc.StatusCode, str]:
    """The status code and details that ``inference.GRPCInferenceService/<method>`` aborts ``request`` with."""
    servicer = grpc_v2.InferenceServicer(dataplane=_Unreached(), metrics=_Metrics(), server_version="0")
    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(getattr(servicer, method)(request, context))
    return context.code, context.details
