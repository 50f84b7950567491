"""schemathesis over the service's own OpenAPI document (FastAPI's ``app.openapi()``) against a real server:
no generated request gets a 5xx (501 aside: not implemented is an answer). ``OPERATION_EXAMPLES`` cases per
operation; the total is printed at the end of the run."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

OPERATION_EXAMPLES = int(os.environ.get("TLSERVE_SCHEMATHESIS_EXAMPLES", "10"))
_cases: list[str] = []


def _document() -> dict:
    """The OpenAPI document of ``create_app``: it depends on the routes only, not on the models or the server."""
    from prometheus_client import CollectorRegistry

    from service.app import create_app
    from service.settings import Settings

    return create_app(Settings(), registry=CollectorRegistry()).openapi()


# Unloading a model would take it away from the other tests sharing the server (unload has tests of its own).
schema = schemathesis.openapi.from_dict(_document()).exclude(path_regex=r"/unload$")


@schema.parametrize()
@settings(max_examples=OPERATION_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, server):
    response = case.call(base_url=server.url, timeout=60)
    _cases.append(case.operation.label)
    assert response.status_code < 500 or response.status_code == 501, (
        case.method, case.formatted_path, response.status_code, response.text[:300])


@pytest.fixture(scope="module", autouse=True)
def report_case_count():
    yield
    operations = len(set(_cases))
    print(f"\nschemathesis: {len(_cases)} generated requests over {operations} operations, none answered 5xx")
