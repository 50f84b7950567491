"""The systems under test: how each starts (its venv, command and settings), and the exact requests each
answers (one JPEG per request, in the API that system offers)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.loadgen import Endpoint
from bench.servers import ROOT, Server, free_port

PROJECT_PYTHON = str(ROOT / ".venv" / "bin" / "python")
PEER_VENVS = {"ray-serve": ROOT / ".venv-ray", "pytriton": ROOT / ".venv-pytriton"}
SERVER_SYSTEMS = ("tlserve", "naive", "bentoml", "ray-serve", "pytriton")  # "tlserve" gives tlserve-http/-grpc


@dataclass(frozen=True)
class Limits:
    """The batching settings every system that has them gets."""

    max_batch_size: int = 32
    batch_wait_ms: float = 2.0
    max_queue: int = 256


@dataclass
class Started:
    server: Server
    endpoints: list[Endpoint]
    cold_start_s: float


def start(system: str, model: str, version_dir: Path, image: bytes, limits: Limits, logs: Path,
          repo: Path | None = None, poll_interval_s: float = 0) -> Started:
    """Start ``system`` serving ``version_dir`` and wait until it answers a real request (its cold start)."""
    argv, env, endpoints = command(system, model, version_dir, image, limits, repo, poll_interval_s)
    server = Server(f"{system}/{model}", argv, env, logs / f"{system}-{model}.log")
    try:
        cold = server.wait_ready(lambda: answers(endpoints[0]), timeout_s=300)
        for endpoint in endpoints[1:]:
            if not answers(endpoint):
                raise RuntimeError(f"{endpoint.system} {endpoint.api} does not answer correctly")
    except BaseException:
        server.stop()
        raise
    return Started(server, endpoints, cold)


def command(system: str, model: str, version_dir: Path, image: bytes, limits: Limits, repo: Path | None = None,
            poll_interval_s: float = 0) -> tuple[list[str], dict[str, str], list[Endpoint]]:
    """How ``system`` is started on free ports: its argv, its environment and the requests it answers."""
    port = free_port(span=3)
    if system == "tlserve":
        grpc_port = free_port()
        repo = repo or one_model_repo(model, version_dir)
        argv = [PROJECT_PYTHON, "-m", "tlserve.cli", "serve", "--model-repo", str(repo),
                "--host", "127.0.0.1", "--http-port", str(port), "--grpc-port", str(grpc_port),
                "--max-batch-size", str(limits.max_batch_size), "--batch-timeout-ms", str(limits.batch_wait_ms),
                "--max-queue", str(limits.max_queue), "--poll-interval-s", str(poll_interval_s)]
        return argv, {}, tlserve_endpoints(model, image, port, grpc_port)
    env = {"BENCH_VERSION_DIR": str(version_dir), "BENCH_PORT": str(port),
           "BENCH_MAX_BATCH_SIZE": str(limits.max_batch_size), "BENCH_BATCH_WAIT_MS": str(limits.batch_wait_ms),
           "BENCH_MAX_QUEUE": str(limits.max_queue)}
    argv, endpoints = _peer(system, image, port)
    if system == "pytriton":
        env["LD_LIBRARY_PATH"] = str(Path(sys.base_prefix) / "lib")  # its stub loads this libpython
    return argv, env, endpoints


def one_model_repo(model: str, version_dir: Path) -> Path:
    """A repository of ``version_dir`` alone: every peer loads the one model under test, and so does tlserve.

    build/bench/models holds both bench models; served from there, tlserve loaded the other one too before its
    first answer (cold start 9.4-9.7 s against 6.6 s for one, overhead-bound), and kept it in memory."""
    repo = ROOT / "build" / "bench" / "repos" / model
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(version_dir, repo / model / version_dir.name)
    return repo


def _peer(system: str, image: bytes, port: int) -> tuple[list[str], list[Endpoint]]:
    url = f"http://127.0.0.1:{port}"
    json_body = peer_json(image)
    if system == "naive":
        return [PROJECT_PYTHON, "-m", "bench.peers.naive_peer"], [Endpoint("naive", "json", url + "/classify", *json_body)]
    if system == "bentoml":
        return ([PROJECT_PYTHON, "-m", "bentoml", "serve", "bench.peers.bentoml_peer:Peer", "--host", "127.0.0.1",
                 "--port", str(port)], [Endpoint("bentoml", "json", url + "/classify", *json_body)])
    if system == "ray-serve":
        python = str(PEER_VENVS[system] / "bin" / "python")
        return [python, "-m", "bench.peers.ray_peer"], [Endpoint("ray-serve", "json", url + "/classify", *json_body)]
    if system == "pytriton":
        python = str(PEER_VENVS[system] / "bin" / "python")
        body, headers = v2_binary("image", [1, 1], image, ["label", "score"])
        return [python, "-m", "bench.peers.pytriton_peer"], [
            Endpoint("pytriton", "v2-binary", url + "/v2/models/peer/infer", body, headers)]
    raise ValueError(f"unknown system {system!r}")


def tlserve_endpoints(model: str, image: bytes, port: int, grpc_port: int) -> list[Endpoint]:
    from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2
    from tensorflow_serving.apis import predict_pb2

    url, target = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{grpc_port}"
    body = json.dumps({"model": model, "images": [base64.b64encode(image).decode()], "top_k": 1}).encode()
    v2_body, v2_headers = v2_binary("images", [1], image, ["scores"])
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = model
    predict.model_spec.signature_name = "serving_default"
    tensor = predict.inputs["images"]
    tensor.dtype = 7  # DT_STRING
    tensor.tensor_shape.dim.add(size=1)
    tensor.string_val.append(image)
    classify = classifier_pb2.ClassifyRequest(model=model, images=[image], top_k=1)
    grpc_headers = {"content-type": "application/grpc", "te": "trailers"}
    return [
        Endpoint("tlserve-http", "classify-json", url + "/classify", body, {"content-type": "application/json"}),
        Endpoint("tlserve-http", "v2-binary", f"{url}/v2/models/{model}/infer", v2_body, v2_headers),
        Endpoint("tlserve-grpc", "classifier", target + "/tlserve.classifier.v1.Classifier/Classify",
                 grpc_frame(classify.SerializeToString()), grpc_headers, grpc=True),
        Endpoint("tlserve-grpc", "tfs-predict", target + "/tensorflow.serving.PredictionService/Predict",
                 grpc_frame(predict.SerializeToString()), grpc_headers, grpc=True),
    ]


def peer_json(image: bytes) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"images": [base64.b64encode(image).decode()]}).encode(), {"content-type": "application/json"}


def v2_binary(name: str, shape: list[int], image: bytes, outputs: list[str]) -> tuple[bytes, dict[str, str]]:
    """A KServe V2 request with one BYTES element in Triton's binary tensor extension (no base64)."""
    element = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(element)}}],
                         "outputs": [{"name": o, "parameters": {"binary_data": False}} for o in outputs]}).encode()
    return header + element, {"content-type": "application/octet-stream",
                              "inference-header-content-length": str(len(header))}


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def answers(endpoint: Endpoint) -> bool:
    """One real request with a real client, checked for a status of success and a sensible answer."""
    if endpoint.grpc:
        import grpc

        target, method = endpoint.url.removeprefix("http://").split("/", 1)
        with grpc.insecure_channel(target) as channel:
            reply = channel.unary_unary("/" + method)(endpoint.body[5:], timeout=30)
        return len(reply) > 0  # a non-OK status raises
    r = httpx.post(endpoint.url, content=endpoint.body, headers=endpoint.headers, timeout=30)
    return r.status_code == 200 and len(r.content) > 0
