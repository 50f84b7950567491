"""A real ``tlserve-model-server`` process, started with TF Serving's flags on free 127.0.0.1 ports.

As TF Serving's own end-to-end test does, each server is a subprocess of the installed entry point; modules keep
their servers for all their tests (a start costs seconds: Python, TensorFlow and the models load).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TESTDATA
from tests.serve_process import NO_DRAIN_DELAY, free_port

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three"
TWO_VERSIONS = TESTDATA / "saved_model_half_plus_two_2_versions"
ENTRY_POINT = Path(sys.executable).parent / "tlserve-model-server"  # the console script `pip install` made


@dataclass
class ModelServer:
    process: subprocess.Popen
    grpc_target: str
    rest_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_model_server(*flags: str, log_path: Path, wait: bool = True) -> ModelServer:
    """Start ``tlserve-model-server --port=P --rest_api_port=R --host=127.0.0.1 <flags>``; with ``wait``, return
    once /readyz answers 200 (every configured model has a version available)."""
    grpc_port, rest_port = free_port(), free_port()
    command = [str(ENTRY_POINT), f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--host=127.0.0.1", *flags]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env={**NO_DRAIN_DELAY, **os.environ}, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = ModelServer(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}", log_path)
    if not wait:
        return server
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tlserve-model-server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.rest_url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"tlserve-model-server did not become ready:\n{server.log()}")


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """``start_server(*flags)``: a running server, stopped at the end of the module."""
    started: list[ModelServer] = []

    def start(*flags: str, wait: bool = True) -> ModelServer:
        log_path = tmp_path_factory.mktemp("model-server") / "server.log"
        server = run_model_server(*flags, log_path=log_path, wait=wait)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def write_model_config(path: Path, models: dict[str, Path], policy: str = "") -> Path:
    """A ModelServerConfig text file serving ``models`` ({name: base path}), as TF Serving's test writes one."""
    entries = "".join(f'  config: {{ name: "{name}", base_path: "{base}", model_platform: "tensorflow" {policy} }}\n'
                      for name, base in models.items())
    path.write_text("model_config_list: {\n" + entries + "}\n")
    return path
