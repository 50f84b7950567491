"""`tlserve serve` end to end: BentoML's arbiter and worker, real HTTP, `tlserve predict`, SIGTERM."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.serve_process import session_processes, start_serve
from tlserve.cli import main


@pytest.fixture(scope="module")
def bento(model_repo, tmp_path_factory):
    server = start_serve(model_repo, tmp_path_factory.mktemp("bento") / "serve.log")
    yield server.url, server.process, server.grpc_port
    server.kill()


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
    assert session_processes(process.pid) == [], "worker processes outlived the arbiter"
