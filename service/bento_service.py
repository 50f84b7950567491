"""The BentoML service: a thin shell around ``create_app``.

BentoML imports this module in its arbiter and again in the worker; settings come from ``TLSERVE_*``
variables (``tlserve serve`` sets them from its flags). Models load in the worker's start-up hook, so
the arbiter never touches a model; that hook and the shutdown hook run the one ``Lifecycle``
(service/lifecycle.py), the same as tlserve-model-server's. ``workers=1``: one process owns the models
(one per GPU), and HTTP and gRPC requests share its batchers.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import cast

import bentoml
from starlette.responses import Response

from service.app import build_runtime, create_app
from service.core.dataplane import DEFAULT_TOP_K
from service.lifecycle import Lifecycle
from service.settings import Settings
from service.transport.http.auth import BearerAuth
from service.transport.http.bento_api import ROUTE, ApiGate, classify_files
from service.transport.http.classify import ClassifyResponse
from service.transport.http.routing_errors import JsonRoutingErrors

settings = Settings.from_env()
runtime = build_runtime(settings)
app = create_app(settings, runtime=runtime, manage_lifecycle=False)


def _http_listener() -> list[socket.socket]:
    """The HTTP listening socket: BentoML's arbiter opens it and hands it to this worker as ``--fd N``."""
    args = sys.argv
    if "--fd" in args[:-1] and args[args.index("--fd") + 1].isdigit():
        return [socket.socket(fileno=os.dup(int(args[args.index("--fd") + 1])))]
    return []


lifecycle = Lifecycle(runtime, _http_listener)  # hands over to BentoML's uvicorn once no longer accepting


# TLS for HTTP is BentoML's (its uvicorn's) ssl option; the gRPC server takes the same files (transport/grpc/server.py).
_tls = {"ssl": {"enabled": True, "certfile": str(settings.tls_cert_file), "keyfile": str(settings.tls_key_file)}} \
    if settings.tls_cert_file else {}


@bentoml.service(name="tlserve", workers=1, traffic={"timeout": max(1, int(settings.request_timeout_s) + 30)}, **_tls)
@bentoml.asgi_app(app, path="/")
class TlServe:
    @bentoml.on_startup
    async def start(self) -> None:
        await lifecycle.start()  # installs its signal handlers after uvicorn's, which run once the drain is over

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await lifecycle.stop()

    @bentoml.api(route=ROUTE)
    async def classify(self, images: list[Path], ctx: bentoml.Context, model: str | None = None,
                       top_k: int = DEFAULT_TOP_K, version: int | str | None = None,
                       unknown_threshold: float | None = None) -> ClassifyResponse:
        """Top-k labels of image files, as POST /classify answers them (the same data plane and batcher)."""
        answer = await classify_files(ctx.request, runtime.dataplane, images, model, top_k, version,
                                      unknown_threshold)
        if isinstance(answer, Response):  # an error from the one table, sent as it is but for the status, which
            ctx.response.status_code = answer.status_code  # BentoML takes from the context of an api that has one
            return cast(ClassifyResponse, answer)
        return ClassifyResponse.model_validate(answer)

    def __is_ready__(self) -> bool:
        return runtime.ready()

    def __is_alive__(self) -> bool:
        return True


# @bentoml.service made TlServe a bentoml Service (its type hints still say the class).
bento = cast(bentoml.Service, TlServe)
bento.add_asgi_middleware(JsonRoutingErrors)  # the first added is the outermost
if runtime.auth.enabled:  # BentoML's own routes (/readyz, /metrics, /docs.json) too, not only the mounted app's
    bento.add_asgi_middleware(BearerAuth, policy=runtime.auth)
# Inside the token check: an unauthenticated client never has its body read or parsed.
bento.add_asgi_middleware(ApiGate, max_body_bytes=settings.max_body_bytes, metrics=runtime.metrics,
                          max_concurrent=settings.max_concurrent_requests, closing=lambda: runtime.dataplane.draining)
