"""`tlserve serve` end to end: BentoML's arbiter and worker, real HTTP, `tlserve predict`, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tlserve.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bento(model_repo):
    port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tlserve.cli", "serve", "--model-repo", str(model_repo), "--host", "127.0.0.1",
         "--http-port", str(port), "--grpc-port", str(grpc_port), "--poll-interval-s", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"tlserve serve did not become ready:\n{process.stdout.read().decode()[-3000:]}")
    yield url, process, grpc_port
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)


def test_bentoml_serves_the_apis_and_its_own_routes(bento):
    url, _, _ = bento
    assert httpx.get(url + "/livez").status_code == 200
    r = httpx.post(url + "/v1/models/half_plus_two:predict", json={"instances": [[2.0]]})
    assert r.json() == {"predictions": [[3.0]]}
    metrics = httpx.get(url + "/metrics").text
    # tlserve's metrics appear on BentoML's own /metrics (its multiprocess registry), beside BentoML's.
    assert 'tlserve_requests_total{api="predict",code="200",model="half_plus_two"' in metrics
    assert "bentoml_service_request_total" in metrics
    assert "/classify" in httpx.get(url + "/docs.json").text


def test_tlserve_predict_prints_labels(bento, tiny_training, tmp_path, capsys):
    url, _, _ = bento
    image = tmp_path / "shape.png"
    image.write_bytes(tiny_training.data.images[0])
    assert main(["predict", str(image), "--model", "shapes", "--url", url, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{image}:"
    assert len(lines) == 3 and lines[1].split()[0] in {"circle", "square", "triangle"}
    assert main(["predict", str(image), "--model", "nope", "--url", url]) == 1
    assert "404" in capsys.readouterr().err


def test_grpc_runs_in_the_bentoml_worker_beside_http(bento, tiny_training, tmp_path, capsys):
    url, _, grpc_port = bento
    image = tmp_path / "shape.png"
    image.write_bytes(tiny_training.data.images[0])
    assert main(["predict", str(image), "--model", "shapes", "--grpc", f"127.0.0.1:{grpc_port}"]) == 0
    by_grpc = capsys.readouterr().out
    assert main(["predict", str(image), "--model", "shapes", "--url", url]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == by_grpc.splitlines()[1].split()[0]
    metrics = httpx.get(url + "/metrics").text
    # One copy of the weights: the version was loaded once, in the process that answers both transports.
    assert 'tlserve_model_loads_total{model="shapes",result="ok",version="1"} 1.0' in metrics
    assert 'protocol="classifier-grpc"' in metrics and 'protocol="classify"' in metrics


def test_sigterm_stops_every_process_cleanly(bento):
    _, process, _ = bento
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "worker processes outlived the arbiter"
