"""Servers for the reliability tests: `tlserve serve` as a real process tree, and the shared in-process server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import model_repo  # noqa: F401 - the shared repository fixture (shapes + half_plus_two)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServeProcess:
    """`tlserve serve` (which becomes BentoML's arbiter, which starts the worker) on free 127.0.0.1 ports."""

    process: subprocess.Popen
    url: str
    grpc_target: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_serve(repo: Path, log: Path, *args: str) -> ServeProcess:
    port, grpc_port = free_port(), free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(repo), "--host", "127.0.0.1",
             "--http-port", str(port), "--grpc-port", str(grpc_port), "--poll-interval-s", "0", *args],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    running = ServeProcess(process, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(running.url + "/readyz", timeout=2).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    running.kill()
    pytest.fail(f"tlserve serve did not become ready:\n{running.output()}")


def session_processes(pid: int) -> list[str]:
    """Processes still alive in the session ``pid`` leads (the whole tree started by `tlserve serve`)."""
    return subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()
