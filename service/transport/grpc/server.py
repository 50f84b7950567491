"""The grpc.aio server: every servicer over the one data plane, health, reflection.

It runs on the event loop of the process that owns the models (BentoML's worker, or uvicorn in tests),
so HTTP and gRPC requests for a model version share one batcher and one copy of the weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from service.auth import AuthPolicy
from service.core.dataplane import DataPlane, Target
from service.core.errors import ServiceError
from service.transport.grpc import tfserving
from service.transport.grpc.auth import BearerAuthInterceptor
from service.transport.grpc.classifier import ClassifierServicer
from service.transport.grpc.limits import ConcurrencyLimit
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2_grpc
from service.transport.grpc.v2 import InferenceServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
    "tlserve.classifier.v1.Classifier",
    health.SERVICE_NAME,
    reflection.SERVICE_NAME,
)
HEALTH_REFRESH_S = 0.5
HEALTH_REFRESH_TASK = "grpc-health-refresh"  # the task's name: tests tell its model lookups from requests'


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    _refresher: asyncio.Task | None = None

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING at once (load balancers stop sending), then let in-flight calls finish."""
        if self._refresher:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0)]  # a second server on the same port must fail, not share it


async def start_grpc_server(dataplane: DataPlane, settings, *, metrics, auth: AuthPolicy,
                            server_version: str) -> GrpcServer:
    """Start serving on ``settings.http_host:settings.grpc_port`` (port 0 picks a free one)."""
    address = f"{settings.http_host}:{settings.grpc_port}"
    server = grpc.aio.server(options=_options(int(settings.grpc_max_message_mb * 2**20)),
                             interceptors=[*([BearerAuthInterceptor(auth)] if auth.enabled else []),
                                           ConcurrencyLimit(settings.max_concurrent_requests)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        tfserving.PredictionServicer(dataplane, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(tfserving.ModelServicer(dataplane, metrics), server)
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(dataplane, metrics, server_version), server)
    classifier_pb2_grpc.add_ClassifierServicer_to_server(ClassifierServicer(dataplane, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    if settings.tls_cert_file:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    running = GrpcServer(server, port, health_servicer)
    running._refresher = asyncio.get_running_loop().create_task(
        _refresh_health(dataplane, health_servicer), name=HEALTH_REFRESH_TASK)
    log.info("gRPC listening on port %d%s%s", port, " (TLS)" if settings.tls_cert_file else "",
             " (bearer auth)" if auth.enabled else "")
    return running


async def _refresh_health(dataplane: DataPlane, servicer: health.aio.HealthServicer) -> None:
    """Mirror readiness into the health service: overall ("") and one entry per model name."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        await servicer.set("", serving if dataplane.ready() else not_serving)
        for name in dataplane.model_names():
            await servicer.set(name, serving if _model_ready(dataplane, name) else not_serving)
        await asyncio.sleep(HEALTH_REFRESH_S)


def _model_ready(dataplane: DataPlane, name: str) -> bool:
    try:
        return dataplane.model_ready(Target(name))
    except ServiceError:  # removed since the names were listed
        return False
