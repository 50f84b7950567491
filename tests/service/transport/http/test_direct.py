"""DirectRoutes: the inference routes answered without FastAPI's router, the same answers otherwise."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.app import DIRECT
from service.core.errors import NotFound, ServiceError
from service.transport.http.common import error_response
from service.transport.http.direct import DirectRoutes


async def predict(request: Request, model: str, version: str | None = None):
    if model == "missing":
        raise NotFound.servable(model)
    if model == "broken":
        return {"not": "a response"}
    # FastAPI's router puts the matched route in the scope; a direct call has none.
    return JSONResponse({"model": model, "version": version, "routed_by_fastapi": "route" in request.scope})


def build(direct: bool) -> FastAPI:
    app = FastAPI()
    for path in ("/v1/models/{model}:predict", "/v1/models/{model}/versions/{version}:predict"):
        app.add_api_route(path, predict, methods=["POST"])
    app.add_api_route("/v1/models/{model}", lambda model: {"status": model}, methods=["GET"])

    @app.exception_handler(ServiceError)
    async def service_error(_request, exc):
        return error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(_request, exc):
        return error_response(exc)

    if direct:
        app.add_middleware(DirectRoutes, routes=[r for r in app.routes if isinstance(r, APIRoute)
                                                 and "POST" in r.methods], exception_handlers=app.exception_handlers)
    return app


def ask(app: FastAPI, method: str, path: str) -> httpx.Response:
    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, json={})
    return asyncio.run(call())


@pytest.mark.parametrize("path", ["/v1/models/m:predict", "/v1/models/m/versions/7:predict",
                                  "/v1/models/missing:predict", "/v1/models/m",
                                  "/v1/models/a/b:predict"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_same_answer_direct_or_through_fastapi_and_only_the_router_differs(path, method):
    direct, routed = ask(build(True), method, path), ask(build(False), method, path)
    assert direct.status_code == routed.status_code, (direct.text, routed.text)
    if direct.headers["content-type"] == "application/json" and direct.status_code == 200 and method == "POST":
        assert direct.json() == {**routed.json(), "routed_by_fastapi": False}
        assert routed.json()["routed_by_fastapi"] is True
    else:
        assert direct.content == routed.content


def test_the_answers_differ_as_expected():
    # What the test above compares, spelled out, and the one case where the two differ by design.
    app = build(True)
    assert (ask(app, "POST", "/v1/models/m/versions/7:predict")).json() == \
        {"model": "m", "version": "7", "routed_by_fastapi": False}
    missing = ask(app, "POST", "/v1/models/missing:predict")
    assert missing.status_code == 404 and "missing" in missing.json()["error"]
    # Not a Response: a bug in the route (FastAPI would serialise it; a direct route must answer itself).
    assert (ask(app, "POST", "/v1/models/broken:predict")).status_code == 500
    assert (ask(app, "GET", "/v1/models/m/versions/7:predict")).status_code == 405


def test_only_post_routes_with_string_parameters_can_be_direct():
    app = FastAPI()
    app.add_api_route("/v1/models/{model}", lambda model: None, methods=["GET"])
    app.add_api_route("/v2/models/{n:int}/infer", lambda n: None, methods=["POST"])
    for route in app.routes[-2:]:
        with pytest.raises(ValueError, match="only POST routes"):
            DirectRoutes(None, [route], {})


def test_the_apps_inference_routes_are_direct(server):
    # create_app asserts that every DIRECT path is one of its routes; here: the middleware is in the stack and
    # holds them all.
    layer = server.app.middleware_stack
    while layer is not None and not isinstance(layer, DirectRoutes):
        layer = getattr(layer, "app", None)
    assert layer is not None, "DirectRoutes is not in the app's middleware stack"
    assert len(layer.routes) == len(DIRECT) == 1 + 2 + 9
