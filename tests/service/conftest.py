"""Real servers for the service tests: the app under uvicorn on 127.0.0.1, a free port, a real repository."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tensorflow as tf
import uvicorn
from prometheus_client import CollectorRegistry

from service.app import build_runtime, create_app
from service.settings import Settings
from tests.conftest import TESTDATA


@dataclass
class RunningServer:
    url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def runtime(self):
        return self.app.state.runtime

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.runtime.grpc.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings) -> RunningServer:
    """Run ``create_app(settings)`` under uvicorn in a thread; return once it answers /readyz.

    Both transports listen on 127.0.0.1 only, gRPC on a free port (``grpc_target``)."""
    settings = settings.replace(http_host="127.0.0.1", grpc_port=0)
    # The heap is pytest's, shared with every other test: a load's freeze and an unload's full collection (32.6 of
    # tests/service's 205 s, up to 2.3 s each) are for a process that only serves. tests/service/runtime/test_heap.py
    # and the servers run as processes (tests/serve_process.py) keep them covered.
    registry = CollectorRegistry()
    app = create_app(settings, runtime=build_runtime(settings, registry, manage_heap=False), registry=registry)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # TLS as BentoML would serve it (uvicorn's ssl options); the self-signed certificate is its own CA.
    tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)} \
        if settings.tls_cert_file else {}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, **tls))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            verify = ssl.create_default_context(cafile=tls["ssl_certfile"]) if tls else True
            if httpx.get(url + "/readyz", timeout=2, verify=verify).status_code == 200:
                return RunningServer(url, app, server, thread)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.should_exit = True
    raise RuntimeError("server did not become ready")


def copy_version(source: Path, model_dir: Path, name: str) -> Path:
    """Copy a version directory in the way deployments should: under a hidden name, then rename."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".incoming-{name}"
    shutil.copytree(source, staging)
    return staging.rename(model_dir / name)


@pytest.fixture(scope="session")
def model_repo(tiny_export, tmp_path_factory) -> Path:
    """A repository with the tiny tlserve export ('shapes') and TF Serving's TF1 half_plus_two."""
    root = tmp_path_factory.mktemp("repo")
    copy_version(tiny_export[0], root / "shapes", "1")
    copy_version(TESTDATA / "saved_model_half_plus_two_cpu" / "00000123", root / "half_plus_two", "00000123")
    return root


@pytest.fixture(scope="session")
def server(model_repo):
    running = start_server(Settings(model_repo=model_repo, poll_interval_s=0.5, max_batch_size=8,
                                    batch_timeout_ms=5, max_body_mb=2))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    """An HTTP client of the ``server`` in force for the module (the shared one, or the module's own)."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def images(tiny_training) -> list[bytes]:
    """Five encoded test images of the tiny shapes model."""
    return [tiny_training.data.images[i] for i in tiny_training.split.test[:5]]


@pytest.fixture(scope="session")
def expected(tiny_export, images):
    """The exported SavedModel's own scores for ``images``, called directly: what every API must answer."""
    loaded = tf.saved_model.load(str(tiny_export[0]))
    return loaded.signatures["serving_default"](images=tf.constant(images))["scores"].numpy()
