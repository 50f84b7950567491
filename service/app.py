"""Composition root: settings -> repository -> serving -> data plane -> transports. No logic of its own.

``create_app(settings)`` gives an ASGI app that plain uvicorn can run (the tests do); the BentoML service
mounts the same app and drives its ``Runtime`` through the one ``Lifecycle`` (service/lifecycle.py) from
BentoML's start-up and shutdown hooks, as tlserve-model-server does around its own uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from service.auth import AuthPolicy
from service.capture.writer import CaptureSink
from service.codec.images import ImageLimits
from service.core.errors import ServiceError
from service.dataplane import RepositoryDataPlane
from service.lifecycle import Lifecycle
from service.observability.metrics import Metrics
from service.observability.predictions import PredictionMonitor
from service.observability.records import RecordMetrics
from service.records.cloudevents import CloudEventsSink
from service.records.recorder import Recorder, Sink
from service.records.requestlog import RequestLog
from service.repository.config import ConfigFileSource, ModelSpec, RepositorySource
from service.repository.discovery import LocalFolders, VersionSource
from service.repository.manager import ModelRepository
from service.repository.objectstore import ObjectStore
from service.runtime import devices, heap
from service.serving.loader import VersionLoader
from service.serving.version import BatchingSettings
from service.settings import Settings, SettingsError
from service.transport.grpc.server import GrpcServer, start_grpc_server
from service.transport.http import classify, console, explain, tfserving, v2, v2_shared_memory
from service.transport.http.auth import BearerAuth
from service.transport.http.common import CLIENT_CLOSED, RequestAccounting, error_response
from service.transport.http.direct import DirectRoutes
from tlserve.contract import is_url

log = logging.getLogger(__name__)


def server_version() -> str:
    try:
        return version("tlserve")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Runtime:
    """Everything with a lifetime: started once, stopped once, shared by HTTP and gRPC."""

    settings: Settings
    metrics: Metrics
    repository: ModelRepository
    dataplane: RepositoryDataPlane
    predictions: PredictionMonitor
    auth: AuthPolicy = AuthPolicy(None)  # built once from the settings (it reads the token file); both transports'
    device: str | None = None
    recorder: Recorder | None = None  # the request log, CloudEvents and capture sinks; None when all are off
    grpc: GrpcServer | None = None
    started: bool = False
    _grpc_stopping: asyncio.Task | None = None

    async def start(self) -> None:
        """Configure devices (in the process that serves, never at import), load the models, start gRPC."""
        if not self.started:
            self.started = True
            s = self.settings
            self.device = devices.configure(devices.DeviceSettings(
                s.gpu_memory_limit_mb or None,
                devices.intra_op_threads(s.intra_op_threads, concurrent_batches=s.max_concurrent_batches),
                s.inter_op_threads))
            if self.recorder:
                try:
                    self.recorder.start()
                except OSError as exc:  # a log file or capture folder that cannot be written: say which, stop
                    raise SettingsError(f"request records: {exc}") from exc
            await self.repository.start()
            if s.grpc_port >= 0:
                self.grpc = await start_grpc_server(self.dataplane, s, metrics=self.metrics,
                                                    auth=self.auth, server_version=server_version())

    async def drain(self) -> None:
        """The first step of a graceful shutdown: readiness false on HTTP and gRPC health; requests still served."""
        self.dataplane.begin_drain()
        if self.grpc:
            await self.grpc.health.enter_graceful_shutdown()

    def stop_accepting(self) -> None:
        """gRPC refuses new calls from now on; in-flight ones get ``shutdown_grace_s`` to finish."""
        if self.grpc and self._grpc_stopping is None:
            self._grpc_stopping = asyncio.get_running_loop().create_task(
                self.grpc.stop(self.settings.shutdown_grace_s))

    async def stop(self) -> None:
        """gRPC first (health NOT_SERVING, in-flight calls finish), then the models."""
        if self.started:
            self.started = False
            self.dataplane.begin_drain()
            self.stop_accepting()
            if self._grpc_stopping:
                await self._grpc_stopping
            self.dataplane.shared_memory.close()  # no request is left to use a region
            await self.repository.stop()
            if self.recorder:  # after the last request: what is queued is written, within a few seconds
                await asyncio.to_thread(self.recorder.close)

    def ready(self) -> bool:
        return self.dataplane.ready()


def build_runtime(settings: Settings, registry: CollectorRegistry = REGISTRY, *, auth: AuthPolicy | None = None,
                  manage_heap: bool = True) -> Runtime:
    """Wire the serving objects together from ``settings`` (``auth``: the policy, when the caller has built it).

    ``manage_heap``: loads freeze the process's heap and unloads collect all of it (service/runtime/heap.py), as a
    process that serves wants. A process that hosts other work beside the runtime (the test suite's in-process
    servers) passes False: there each unload's full collection walks everything else the process holds."""
    metrics = Metrics(registry)
    limits = ImageLimits(max_bytes=settings.max_body_bytes, max_pixels=settings.max_image_pixels)

    def batching(name: str) -> BatchingSettings:
        s = settings.batching_for(name)
        return BatchingSettings(s.max_batch_size, s.batch_timeout_ms / 1000, s.max_queue, s.max_concurrent_batches,
                                s.allowed_sizes())

    load = VersionLoader(batching, limits, device=lambda: runtime.device, on_batch=metrics.observe_batch)
    local, store = LocalFolders(), ObjectStore(settings.model_cache_dir)

    def sources(base_path) -> VersionSource:
        return store if is_url(base_path) else local

    if settings.model_base_path is not None:
        single = [ModelSpec(settings.model_name, settings.model_base_path)]

        def specs():
            return single
    elif settings.model_config_file:
        specs = ConfigFileSource(settings.model_config_file, settings.config_poll_interval_s)
    else:
        specs = RepositorySource(settings.model_repo, store.children)

    predictions = PredictionMonitor(metrics, settings.drift_window)

    def model_event(kind: str, model: str, version: int, state: str, seconds: float) -> None:
        metrics.model_event(kind, model, version, state, seconds)
        predictions.model_event(kind, model, version, state, seconds)
        if manage_heap and kind == "loaded":
            heap.after_load()
        elif manage_heap and kind == "unloaded":
            heap.after_unload()

    repository = ModelRepository(specs, load, poll_interval_s=settings.poll_interval_s, on_event=model_event,
                                 sources=sources)
    metrics.known = repository.knows  # request labels name only what the repository knows
    recorder = build_recorder(settings, RecordMetrics(metrics.registry))
    dataplane = RepositoryDataPlane(repository, request_timeout_s=settings.request_timeout_s,
                                    ready_when=settings.ready_when, stats=metrics.inference, recorder=recorder,
                                    predictions=predictions, max_explain_images=settings.max_explain_images)
    runtime = Runtime(settings, metrics, repository, dataplane, predictions,
                      auth=auth or AuthPolicy.from_settings(settings), recorder=recorder)
    return runtime


def build_recorder(settings: Settings, metrics: RecordMetrics) -> Recorder | None:
    """The sinks the settings ask for, behind one recorder; None when none is (recording then costs nothing)."""
    s, mb = settings, 2**20
    with_bytes = s.log_requests_images == "bytes"
    items, queued = s.record_queue, int(s.record_queue_mb * mb)
    sinks: list[Sink] = []
    if s.log_requests:
        sinks.append(RequestLog(s.log_requests, sample=s.log_requests_sample, max_bytes=int(s.log_requests_max_mb * mb),
                                with_image_bytes=with_bytes, queue_items=items, queue_bytes=queued, metrics=metrics))
    if s.log_requests_url:
        sinks.append(CloudEventsSink(s.log_requests_url, source=f"urn:tlserve:{socket.gethostname()}",
                                     sample=s.log_requests_sample, with_image_bytes=with_bytes, queue_items=items,
                                     queue_bytes=queued, metrics=metrics))
    if s.capture_dir is not None:
        sinks.append(CaptureSink(s.capture_dir, below=s.capture_below, sample=s.capture_sample,
                                 max_bytes=int(s.capture_max_mb * mb), queue_items=items, queue_bytes=queued,
                                 metrics=metrics))
    return Recorder(sinks) if sinks else None


# The inference routes: the busy ones, answered by DirectRoutes without FastAPI's router.
DIRECT = frozenset((classify.PATH, *v2.INFERENCE_PATHS, *tfserving.INFERENCE_PATHS))


def create_app(settings: Settings, *, runtime: Runtime | None = None, registry: CollectorRegistry = REGISTRY,
               manage_lifecycle: bool = True) -> FastAPI:
    """The HTTP app. With ``manage_lifecycle`` its lifespan runs the runtime's ``Lifecycle`` (plain uvicorn, the
    tests); BentoML's hooks and tlserve-model-server run it themselves (service/lifecycle.py) and pass False."""
    runtime = runtime or build_runtime(settings, registry)

    @asynccontextmanager
    async def lifespan(_app):
        lifecycle = Lifecycle(runtime) if manage_lifecycle else None
        if lifecycle:
            await lifecycle.start()
        yield
        if lifecycle:
            await lifecycle.stop()

    app = FastAPI(title="tlserve", version=server_version(), lifespan=lifespan,
                  description="TF Serving REST, KServe V2 and /classify for fine-tuned image classifiers")
    app.state.runtime = runtime
    dataplane, limit = runtime.dataplane, settings.max_body_bytes
    # Routes are matched in order, each a regular expression: the busiest paths first (POST /classify matched in
    # 58 us behind the others, 5 us in front; the inference routes now skip this, see DirectRoutes below). No two
    # routers' paths overlap, so the order changes nothing else.
    routers = [classify.build_router(dataplane, limit), tfserving.build_router(dataplane, limit),
               v2.build_router(dataplane, limit, server_version()), v2_shared_memory.build_router(dataplane),
               explain.build_router(dataplane, limit),
               console.build_router(dataplane, runtime.metrics, runtime.predictions, settings.capture_dir)]
    for router in routers:
        app.include_router(router)
    # FastAPI keeps an included router whole (app.routes lists it, not its routes): the direct ones from here.
    direct = [route for router in routers for route in router.routes
              if isinstance(route, APIRoute) and route.path in DIRECT]
    assert {route.path for route in direct} == DIRECT, f"routes missing: {DIRECT - {r.path for r in direct}}"

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError):
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_request: Request, exc: StarletteHTTPException):
        # Unknown paths and methods answer in the service's error shape too.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, status_code=400)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_request: Request, _exc: ClientDisconnect):
        # The client closed the connection before its body was read (a client timeout): nobody to answer, and not
        # a server error. The status is only recorded, as for a client that leaves after its body.
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        return error_response(exc)

    # Under BentoML these three are BentoML's own routes (it answers them first, through the service's
    # __is_alive__ / __is_ready__); they are here for plain uvicorn and the tests.
    @app.get("/livez", include_in_schema=False)
    async def livez():
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        ok = runtime.ready()
        return PlainTextResponse("ready" if ok else "not ready", status_code=200 if ok else 503)

    async def metrics():
        return Response(generate_latest(runtime.metrics.registry), media_type="text/plain; version=0.0.4")

    for path in dict.fromkeys(["/metrics", settings.prometheus_path or "/metrics"]):
        app.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)

    # Innermost (added first): the inference routes' endpoints called without FastAPI's router (direct.py).
    app.add_middleware(DirectRoutes, routes=direct, exception_handlers=app.exception_handlers)
    if runtime.auth.enabled:  # inside RequestAccounting: refused requests are counted and logged too
        app.add_middleware(BearerAuth, policy=runtime.auth)
    app.add_middleware(RequestAccounting, metrics=runtime.metrics, max_concurrent=settings.max_concurrent_requests,
                       closing=lambda: runtime.dataplane.draining)
    return app
