"""Issue 15: Triton's extensions (model configuration, statistics, classification, the extensions list) over HTTP
and gRPC against a real server, with our own clients (httpx, the project's stubs) and with Triton's own
(tritonclient, from .venv-triton, following image_client.py / grpc_image_client.py: tests/peers/)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format

from service.codec import triton
from service.core.errors import InvalidInput
from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from tests.conftest import TESTDATA
from tests.service.conftest import copy_version, start_server

REPO = Path(__file__).resolve().parents[2]
TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"
LABELS = ["ant", "bee", "cat", "dog"]
WEIGHTS = np.array([[2.0, -1.0, 0.5, 0.0], [-1.0, 2.0, 0.0, 0.5], [0.5, 0.0, -1.0, 2.0]], np.float32) / 64
MODEL = "triton_image"


class ImageNet(tf.Module):
    """Shaped as Triton's image_client.py expects: one NHWC FP32 image input, one FP32 vector of class scores."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def serve(self, image):
        return {"probs": tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2]) @ WEIGHTS)}


def expected_probs(images: np.ndarray) -> np.ndarray:
    logits = images.astype(np.float32).mean(axis=(1, 2)) @ WEIGHTS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def expected_classes(images: np.ndarray, k: int) -> list[list[list[str]]]:
    probs = expected_probs(images)
    return [[[f"{row[i]:f}", str(i), LABELS[i]] for i in np.argsort(-row, kind="stable")[:k]] for row in probs]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton-repo")
    version = root / MODEL / "1"
    tf.saved_model.save(ImageNet(), str(version), signatures={"serving_default": ImageNet().serve})
    (version / "assets").mkdir(exist_ok=True)
    (version / "assets" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    copy_version(TESTDATA / "saved_model_half_plus_two_cpu" / "00000123", root / "half_plus_two", "00000123")
    running = start_server(Settings(model_repo=root, poll_interval_s=0.5, max_batch_size=8, batch_timeout_ms=1))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def v2(channel):
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(15).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)


def infer_json(pixels: np.ndarray, **output) -> dict:
    return {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(pixels.shape),
                        "data": pixels.astype(np.float32).ravel().tolist()}],
            "outputs": [{"name": "probs", **output}]}


# -- model configuration ---------------------------------------------------------------------------------------

IMAGE_CONFIG = {
    "name": MODEL, "platform": "tensorflow_savedmodel", "backend": "tensorflow",
    "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 8,
    "input": [{"name": "image", "data_type": "TYPE_FP32", "format": "FORMAT_NHWC", "dims": [8, 8, 3]}],
    "output": [{"name": "probs", "data_type": "TYPE_FP32", "dims": [4], "label_filename": "labels.txt"}],
    "dynamic_batching": {"preferred_batch_size": [], "max_queue_delay_microseconds": 1000},
}


def test_http_model_config_is_generated_from_the_savedmodel(client):
    r = client.get(f"/v2/models/{MODEL}/config")
    assert r.status_code == 200, r.text
    assert r.json() == IMAGE_CONFIG
    assert client.get(f"/v2/models/{MODEL}/versions/1/config").json() == IMAGE_CONFIG
    tf1 = client.get("/v2/models/half_plus_two/config").json()  # a TF1 model without labels, [-1, 1] -> dims [1]
    assert tf1["input"] == [{"name": "x", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [1]}]
    assert tf1["output"] == [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}]


def test_grpc_model_config_answers_the_same(v2):
    response = v2.ModelConfig(pb.ModelConfigRequest(name=MODEL), timeout=30)
    assert response.config == json_format.ParseDict(IMAGE_CONFIG, pb.ModelConfig())
    assert list(response.config.input[0].dims) == [8, 8, 3]
    assert response.config.input[0].data_type == pb.TYPE_FP32
    assert response.config.dynamic_batching.max_queue_delay_microseconds == 1000


@pytest.mark.parametrize("path", ["/v2/models/nope/config", f"/v2/models/{MODEL}/versions/7/config",
                                  f"/v2/models/{MODEL}/versions/x/config", "/v2/models/nope/stats",
                                  f"/v2/models/{MODEL}/versions/7/stats"])
def test_config_and_stats_of_what_is_not_there_are_json_404s(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


def test_grpc_config_and_stats_of_an_unknown_model_are_not_found(v2):
    for call, request in ((v2.ModelConfig, pb.ModelConfigRequest(name="nope")),
                          (v2.ModelStatistics, pb.ModelStatisticsRequest(name=MODEL, version="7"))):
        with pytest.raises(grpc.RpcError) as failed:
            call(request, timeout=30)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND


# -- statistics ------------------------------------------------------------------------------------------------

def _stats(client, path=f"/v2/models/{MODEL}/stats") -> dict:
    r = client.get(path)
    assert r.status_code == 200, r.text
    (entry,) = [s for s in r.json()["model_stats"] if s["name"] == MODEL]
    return entry


def test_statistics_count_requests_rows_and_batches(client, v2, pixels):
    before = _stats(client)
    assert r_ok(client.post(f"/v2/models/{MODEL}/infer", json=infer_json(pixels)))
    bad = infer_json(pixels[:1])
    bad["inputs"][0]["shape"] = [1, 8, 8, 4]  # the wrong shape for the signature: a failure of this version
    bad["inputs"][0]["data"] += [0.0] * 64
    assert client.post(f"/v2/models/{MODEL}/infer", json=bad).status_code == 400
    after = _stats(client)
    assert after["version"] == "1"
    assert after["inference_count"] == before["inference_count"] + 3
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 1
    assert after["execution_count"] > before["execution_count"]
    assert after["inference_stats"]["queue"]["count"] >= before["inference_stats"]["queue"]["count"] + 3
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["last_inference"] >= max(before["last_inference"], 1)
    executions = sum(b["compute_infer"]["count"] for b in after["batch_stats"])
    assert executions == after["execution_count"] and all(b["batch_size"] >= 1 for b in after["batch_stats"])
    # The same counters over gRPC (nothing ran in between), and every model on /v2/models/stats.
    grpc_stats = v2.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=30)
    assert json_format.MessageToDict(grpc_stats, preserving_proto_field_name=True) == json_format.MessageToDict(
        json_format.ParseDict({"model_stats": [after]}, pb.ModelStatisticsResponse()),
        preserving_proto_field_name=True)
    names = {s["name"] for s in client.get("/v2/models/stats").json()["model_stats"]}
    assert names == {MODEL, "half_plus_two"}
    assert {s.name for s in v2.ModelStatistics(pb.ModelStatisticsRequest(), timeout=30).model_stats} == names


def r_ok(response: httpx.Response) -> bool:
    assert response.status_code == 200, response.text
    return True


# -- classification ------------------------------------------------------------------------------------------

def test_http_classification_json_and_binary(client, pixels):
    r = client.post(f"/v2/models/{MODEL}/infer", json=infer_json(pixels, parameters={"classification": 2}))
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probs", "BYTES", [3, 2])
    assert [s.split(":") for s in output["data"]] == [c for row in expected_classes(pixels, 2) for c in row]
    binary = infer_json(pixels, parameters={"classification": 9, "binary_data": True})  # 9 > 4 classes: all 4
    r = client.post(f"/v2/models/{MODEL}/infer", json=binary)
    assert r.status_code == 200, r.text
    head = json.loads(r.content[:int(r.headers["inference-header-content-length"])])
    assert head["outputs"][0]["shape"] == [3, 4] and head["outputs"][0]["datatype"] == "BYTES"


@pytest.mark.parametrize("value", [-1, "2", True, 1.5, None, [2]])
def test_http_classification_bad_values_are_400(client, pixels, value):
    r = client.post(f"/v2/models/{MODEL}/infer", json=infer_json(pixels, parameters={"classification": value}))
    assert r.status_code == 400 and "classification" in r.json()["error"]


def _grpc_request(pixels: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="image", datatype="FP32", shape=list(pixels.shape))
    tensor.contents.fp32_contents.extend(pixels.astype(np.float32).ravel().tolist())
    return request


def test_grpc_classification_typed_and_raw(v2, pixels):
    request = _grpc_request(pixels)
    request.outputs.add(name="probs").parameters["classification"].int64_param = 3
    response = v2.ModelInfer(request, timeout=60)
    (output,) = response.outputs
    assert (output.datatype, list(output.shape)) == ("BYTES", [3, 3])
    got = [s.decode().split(":") for s in output.contents.bytes_contents]
    assert got == [c for row in expected_classes(pixels, 3) for c in row]
    request.outputs[0].parameters["classification"].string_param = "3"
    with pytest.raises(grpc.RpcError) as failed:
        v2.ModelInfer(request, timeout=60)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_classification_of_a_non_numeric_output_is_invalid():
    with pytest.raises(InvalidInput, match="numeric"):
        triton.classify_output("classes", np.array([[b"a", b"b"]], dtype=object), 1, None, True)
    strings = triton.classify_output("y", np.array([[1.0, 3.0, 2.0]], np.float32), 2, None, True)
    assert strings.tolist() == [[b"3.000000:1", b"2.000000:2"]]  # no labels: "score:index"


# -- server metadata and errors ------------------------------------------------------------------------------

def test_extensions_list_what_is_served(client, v2):
    assert client.get("/v2").json()["extensions"] == [
        "binary_tensor_data", "classification", "model_configuration", "statistics", "model_repository",
        "system_shared_memory"]
    # binary tensor data is REST's alone
    assert list(v2.ServerMetadata(pb.ServerMetadataRequest(), timeout=30).extensions) == [
        "classification", "model_configuration", "statistics", "model_repository", "system_shared_memory"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v2/nowhere", 404), ("POST", f"/v2/models/{MODEL}/config", 405),
    ("GET", f"/v2/models/{MODEL}/infer", 405), ("PUT", "/v2/models/stats", 405)])
def test_v2_routing_errors_have_json_bodies(client, method, path, status):
    r = client.request(method, path)
    assert r.status_code == status and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


# -- Triton's own clients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["http", "grpc", "grpc-stub"])
def test_tritons_image_client_calls(server, pixels, tmp_path, protocol):
    """image_client.py (HTTP, gRPC) and grpc_image_client.py (grpc-stub) calls through tritonclient (its own venv and
    process), then (image_client) the statistics rising by what was sent."""
    if not TRITON_PYTHON.exists():
        pytest.fail(f"{TRITON_PYTHON} missing: `make .venv-triton/.installed` installs Triton's client")
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.npy"))
        np.save(paths[-1], image)
    url = server.grpc_target if protocol.startswith("grpc") else server.url.removeprefix("http://")
    done = subprocess.run([str(TRITON_PYTHON), str(REPO / "tests" / "peers" / "triton_image_client.py"), protocol,
                           url, MODEL, "2", *paths], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["parsed"] == [8, "image", "probs", 3, 8, 8, "FORMAT_NHWC", "FP32"]
    assert answer["classes"] == expected_classes(pixels, 2)
    if protocol == "grpc-stub":
        return
    before, after = answer["before"], answer["after"]
    assert after["inference_count"] == before["inference_count"] + 3
    assert after["success"] == before["success"] + 1
    assert after["execution_count"] > before["execution_count"] and after["last_inference"] > 0
    assert after["batch_sizes"]
