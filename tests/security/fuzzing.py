"""Shared pieces of the property-based tests: how many inputs, and what "the server coped" means.

``TLSERVE_FUZZ_EXAMPLES`` scales every test (default 150 generated inputs per test; `make fuzz` runs 2000).
Generation is derandomized so that CI runs the same inputs every time; a longer run with a random seed is
``TLSERVE_FUZZ_EXAMPLES=5000 TLSERVE_FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import os
from collections import Counter

import grpc
import httpx
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("TLSERVE_FUZZ_EXAMPLES", "150"))

fuzz_settings = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("TLSERVE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
    print_blob=True)

# gRPC codes a bad request may end with; INTERNAL and UNKNOWN mean a bug, UNAVAILABLE a crash or overload.
CLIENT_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.OUT_OF_RANGE}


SENT: Counter = Counter()  # generated requests per transport, printed by the test modules at their end


def assert_http_coped(response: httpx.Response) -> None:
    """A client error or a success: never a 500 (a bug) nor 502/503/504 (a crash or an overload we did not cause)."""
    SENT["http"] += 1
    assert response.status_code < 500 or response.status_code == 501, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert "error" in response.json(), response.text[:500]


def assert_grpc_coped(call) -> None:
    """``call()`` returns, or fails with a client-error code."""
    SENT["grpc"] += 1
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() in CLIENT_CODES, (exc.code(), exc.details())
