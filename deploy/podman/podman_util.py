"""What the podman checks share: running podman with the project's configuration, free loopback ports,
and asking a running tlserve the questions Kubernetes and clients would ask."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
IMAGE = os.environ.get("TLSERVE_IMAGE", "localhost/tlserve:latest")


class CheckFailed(RuntimeError):
    """A check saw something wrong; the message says what."""


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``podman ARGS`` with the project's containers.conf (runc, lower ulimits), unless one is already set."""
    env = {**os.environ}
    env.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    result = subprocess.run(["podman", *args], env=env, text=True, timeout=timeout,
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and result.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:3])} ... exited {result.returncode}: {(result.stderr or '')[-2000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_status(url: str, status: int = 200, timeout_s: float = 300.0, alive=lambda: True) -> float:
    """Seconds until ``url`` answers ``status``; CheckFailed if it does not in time or ``alive()`` turns False."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout_s:
        if not alive():
            raise CheckFailed(f"the container stopped before {url} answered {status} (last: {last})")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return time.monotonic() - start
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise CheckFailed(f"{url} did not answer {status} within {timeout_s:.0f} s (last: {last})")


def grpc_health(target: str, service: str = "") -> str:
    """The grpc.health.v1 status name of ``service`` ("" = the whole server)."""
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def sample_digit() -> tuple[bytes, str]:
    """A real handwritten digit (scikit-learn's set, as the digits model was trained on) and its label."""
    from training.data import load_images

    digits = load_images("builtin:digits")
    return digits.images[0], digits.classes[int(digits.labels[0])]
