"""`tlserve serve` end to end: BentoML's arbiter and worker, real HTTP, `tlserve predict`, SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import bentoml
import httpx
import pytest
from bentoml.exceptions import BentoMLException

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
    confident = httpx.post(url + "/classify", data={"model": "shapes"},
                           files=[("images", ("shape.png", image.read_bytes(), "image/png"))]).json()["confident"][0]
    assert lines[0] == f"{image}: {'confident' if confident else 'unknown'}"
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


def shape_files(tiny_training, folder, count=2) -> list[Path]:
    paths = []
    for i in range(count):
        paths.append(folder / f"shape{i}.png")
        paths[-1].write_bytes(tiny_training.data.images[i])
    return paths


def classify_by_bentoml_client(url: str, files: list[Path]) -> None:
    """BentoML's own client, as its users call it: it finds the api in /schema.json and uploads the files. Its
    answer is /classify's for the same files (the same data plane), and bad input is a 4xx with the message."""
    with bentoml.SyncHTTPClient(url) as client:
        assert "classify" in client.endpoints
        answer = client.classify(images=files, model="shapes", top_k=2)
        with httpx.Client(base_url=url) as plain:
            by_route = plain.post("/classify", data={"model": "shapes", "top_k": "2"},
                                  files=[("images", (f.name, f.read_bytes(), "image/png")) for f in files]).json()
        assert answer == by_route
        assert len(answer["predictions"]) == len(files) and all(len(row) == 2 for row in answer["predictions"])
        assert len(answer["confident"]) == len(files)
        files[0].write_bytes(b"not an image")
        with pytest.raises(BentoMLException) as bad:
            client.classify(images=files[:1], model="shapes")
        assert bad.value.error_code == 400 and "image" in str(bad.value)
        with pytest.raises(BentoMLException) as unknown:
            client.classify(images=files[1:], model="nope")
        assert unknown.value.error_code == 404 and "Servable not found for request: Latest(nope)" in str(unknown.value)
        with pytest.raises(BentoMLException) as no_top:
            client.classify(images=files[1:], model="shapes", top_k=0)
        assert no_top.value.error_code == 400 and "top_k" in str(no_top.value)


def test_bentoml_client_classifies_image_files(bento, tiny_training, tmp_path):
    url, _, _ = bento
    classify_by_bentoml_client(url, shape_files(tiny_training, tmp_path))
    route = url + "/bentoml/classify"
    # What BentoML's own parser would answer with a 500 (or a fetch of a URL) is refused first, in the table's shape.
    for request, status, text in [
            (dict(content=b"garbage", headers={"content-type": "multipart/form-data; boundary=xx"}), 400, "malformed"),
            (dict(files=[("images", (None, "http://127.0.0.1:1/x.png"))]), 400, "file fields named 'images'"),
            (dict(json={"images": ["aGVsbG8="]}), 415, "POST /classify"),
            (dict(content=(b"x" * 2**20 for _ in range(65)),
                  headers={"content-type": "multipart/form-data; boundary=xx"}), 413, "limit")]:
        response = httpx.post(route, **request)
        assert (response.status_code, response.headers["content-type"]) == (status, "application/json"), request
        assert text in response.json()["error"]
    metrics = httpx.get(url + "/metrics").text
    # The api fed the version's one shared pixels batcher (the same metric /classify and gRPC record).
    assert 'tlserve_requests_total{api="classify-bentoml",code="200",model="shapes"' in metrics


def test_sigterm_stops_every_process_cleanly(bento):
    _, process, _ = bento
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    time.sleep(1)
    assert session_processes(process.pid) == [], "worker processes outlived the arbiter"
