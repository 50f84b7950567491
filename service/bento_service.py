"""The BentoML service: a thin shell around ``create_app``.

BentoML imports this module twice: in its arbiter, which only reads the service's configuration and starts the
worker, and in the worker, which serves. So the import stays light (no TensorFlow: seconds of every cold start,
issue 14), and the runtime, the app and the models are built in the worker's start-up hook, which then runs the
one ``Lifecycle`` (service/lifecycle.py), the same as tlserve-model-server's. ``workers=1``: one process owns the
models (one per GPU), and HTTP and gRPC requests share its batchers. Settings come from ``TLSERVE_*`` variables
(``tlserve serve`` sets them from its flags).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import bentoml
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute

from service.auth import AuthPolicy
from service.core.dataplane import DEFAULT_TOP_K
from service.settings import Settings
from service.transport.http.auth import BearerAuth
from service.transport.http.bento_api import ROUTE, ApiGate, classify_files
from service.transport.http.classify import ClassifyResponse
from service.transport.http.routing_errors import JsonRoutingErrors

if TYPE_CHECKING:
    from service.app import Runtime
    from service.lifecycle import Lifecycle

settings = Settings.from_env()
auth = AuthPolicy.from_settings(settings)  # read once; BentoML's own routes and the mounted app share it


def _http_listener() -> list[socket.socket]:
    """The HTTP listening socket: BentoML's arbiter opens it and hands it to this worker as ``--fd N``."""
    args = sys.argv
    if "--fd" in args[:-1] and args[args.index("--fd") + 1].isdigit():
        return [socket.socket(fileno=os.dup(int(args[args.index("--fd") + 1])))]
    return []


class Worker(Starlette):
    """What only the serving process builds: the runtime (TensorFlow, the models), its app and its lifecycle.

    It is the ASGI app BentoML mounts, standing in for the one ``build`` makes: a Starlette app, so that BentoML's
    mount is passive (it matches only the paths of ``routes``, which are the built app's, and leaves the rest,
    such as /docs.json, to BentoML's own routes), forwarding every request to the built app."""

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime | None = None
        self.app: Starlette | None = None
        self.lifecycle: Lifecycle | None = None

    @property
    def routes(self) -> list[BaseRoute]:
        return self.app.routes if self.app is not None else []

    def build(self) -> None:
        from service.runtime.tf_import import import_tensorflow

        import_tensorflow()  # first, before anything below imports it with Keras (1.1 s)
        from service.app import build_runtime, create_app  # TensorFlow: here, in the worker, never at import
        from service.lifecycle import Lifecycle  # uvicorn: the worker's

        self.runtime = build_runtime(settings, auth=auth)
        self.app = create_app(settings, runtime=self.runtime, manage_lifecycle=False)
        # Hands over to BentoML's uvicorn once no longer accepting.
        self.lifecycle = Lifecycle(self.runtime, _http_listener)

    async def __call__(self, scope, receive, send) -> None:
        if self.app is None:  # BentoML runs the start-up hook before it serves; a lifespan scope may come first
            return await super().__call__(scope, receive, send)
        await self.app(scope, receive, send)

    def ready(self) -> bool:
        return self.runtime is not None and self.runtime.ready()

    def accounting(self) -> dict:
        """``RequestAccounting``'s arguments for the BentoML api's route (the runtime's metrics and drain state)."""
        runtime = self.runtime
        assert runtime is not None, "the worker's start-up hook has not run"
        return {"metrics": runtime.metrics, "max_concurrent": settings.max_concurrent_requests,
                "closing": lambda: runtime.dataplane.draining}


worker = Worker()

# TLS for HTTP is BentoML's (its uvicorn's) ssl option; the gRPC server takes the same files (transport/grpc/server.py).
_tls = {"ssl": {"enabled": True, "certfile": str(settings.tls_cert_file), "keyfile": str(settings.tls_key_file)}} \
    if settings.tls_cert_file else {}




def _tracing() -> dict:
    """BentoML's tracing, left as configured when an exporter is (``tracing.exporter_type`` in BentoML's config);
    else every URL is excluded from its OpenTelemetry middleware, which opens three spans a request (the request,
    each receive, each send) that no exporter takes: 130-149 us of CPU a request, measured alone."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return {} if BentoMLContainer.tracing.exporter_type.get() else {"tracing": {"excluded_urls": [".*"]}}


# BentoML's access log is off: RequestAccounting writes one line per request (tlserve.access, with the request id)
# for the mounted app and the BentoML api alike, and BentoML's second line per request cost the event loop CPU.
@bentoml.service(name="tlserve", workers=1, traffic={"timeout": max(1, int(settings.request_timeout_s) + 30)},
                 logging={"access": {"enabled": False}}, **_tracing(), **_tls)
@bentoml.asgi_app(worker, path="/")
class TlServe:
    @bentoml.on_startup
    async def start(self) -> None:
        worker.build()
        # BentoML's /docs.json reads the mounted apps at each request: from now on the real FastAPI app stands in
        # for the forwarder there, so its routes are documented (requests keep going through the forwarder).
        bento.mount_apps[:] = [(worker.app if app is worker else app, path, name)
                               for app, path, name in bento.mount_apps]
        assert worker.lifecycle is not None
        await worker.lifecycle.start()  # installs its signal handlers after uvicorn's, which run once the drain is over

    @bentoml.on_shutdown
    async def stop(self) -> None:
        if worker.lifecycle is not None:
            await worker.lifecycle.stop()

    @bentoml.api(route=ROUTE)
    async def classify(self, images: list[Path], ctx: bentoml.Context, model: str | None = None,
                       top_k: int = DEFAULT_TOP_K, version: int | str | None = None,
                       unknown_threshold: float | None = None) -> ClassifyResponse:
        """Top-k labels of image files, as POST /classify answers them (the same data plane and batcher)."""
        assert worker.runtime is not None  # built by the start-up hook, which BentoML runs before it serves
        answer = await classify_files(ctx.request, worker.runtime.dataplane, images, model, top_k, version,
                                      unknown_threshold)
        if isinstance(answer, Response):  # an error from the one table, sent as it is but for the status, which
            ctx.response.status_code = answer.status_code  # BentoML takes from the context of an api that has one
            return cast(ClassifyResponse, answer)
        return ClassifyResponse.model_validate(answer)

    def __is_ready__(self) -> bool:
        return worker.ready()

    def __is_alive__(self) -> bool:
        return True


# @bentoml.service made TlServe a bentoml Service (its type hints still say the class).
bento = cast(bentoml.Service, TlServe)
bento.add_asgi_middleware(JsonRoutingErrors)  # the first added is the outermost
if auth.enabled:  # BentoML's own routes (/readyz, /metrics, /docs.json) too, not only the mounted app's
    bento.add_asgi_middleware(BearerAuth, policy=auth)
# Inside the token check: an unauthenticated client never has its body read or parsed.
bento.add_asgi_middleware(ApiGate, max_body_bytes=settings.max_body_bytes, accounting=worker.accounting)
