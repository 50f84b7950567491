"""Triton's shared-memory and model-repository extensions, driven by tritonclient itself (HTTP and gRPC, from its own
venv: its protobuf < 7 pin collides with ours) against a real server serving a real ``simple`` SavedModel."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
import tensorflow as tf

from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from tests.conftest import grpc_channel
from tests.service.conftest import start_server

ROOT = Path(__file__).resolve().parents[3]
TRITON_PYTHON = ROOT.parent / ".venv-triton" / "bin" / "python"
if not TRITON_PYTHON.exists():  # the worktree's .venv-triton is a link; a fresh clone's make builds it
    TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
PEER = ROOT / "tests" / "peers" / "triton_shm_client.py"


def export_simple(path: Path) -> None:
    """Triton's ``simple`` model as a SavedModel: INPUT0, INPUT1 (INT32 [-1, 16]) -> OUTPUT0 = sum, OUTPUT1 =
    difference."""
    spec = tf.TensorSpec([None, 16], tf.int32)

    class Simple(tf.Module):
        @tf.function(input_signature=[spec, spec])
        def serve(self, INPUT0, INPUT1):  # noqa: N803 - the tensor names Triton's examples send
            return {"OUTPUT0": INPUT0 + INPUT1, "OUTPUT1": INPUT0 - INPUT1}

    module = Simple()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def simple_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("simple-repo")
    export_simple(repo / "simple" / "1")
    running = start_server(Settings(model_repo=repo, poll_interval_s=0.5, max_batch_size=4, batch_timeout_ms=2))
    yield running
    running.stop()


def run_peer(protocol: str, url: str) -> dict:
    done = subprocess.run([str(TRITON_PYTHON), str(PEER), protocol, url, "simple"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_shared_memory_and_repository_flows(simple_server, protocol):
    url = simple_server.url.removeprefix("http://") if protocol == "http" else simple_server.grpc_target
    answer = run_peer(protocol, url)
    shared = ["classification", "model_configuration", "statistics", "model_repository", "system_shared_memory"]
    assert answer["extensions"] == (["binary_tensor_data", *shared] if protocol == "http" else shared)

    flow = answer["shm"]
    assert flow["sum"] == [[i + 1 for i in range(16)]] and flow["difference"] == [[i - 1 for i in range(16)]]
    regions = flow["status"] if protocol == "http" else list(flow["status"]["regions"].values())
    by_name = {r["name"]: r for r in regions}
    assert set(by_name) == {"input_data", "output_data"}
    assert int(by_name["input_data"]["byte_size"]) == 128 and by_name["input_data"]["key"].startswith("/input_")
    one = flow["one"] if protocol == "http" else list(flow["one"]["regions"].values())
    assert [r["name"] for r in one] == ["input_data"]
    assert flow["after"] in ([], {})
    assert flow["response_data"] is False  # the response carries no data for an output in shared memory

    errors = flow["errors"]
    bad_input = "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    for key, text in (("unknown_key", "does not exist"), ("too_big", "exceeds"), ("twice", "already registered"),
                      ("unknown_region", "unknown shared memory region 'nope'"),
                      ("past_region", "exceeds the region's 128 bytes"), ("wrong_size", "needs 64"),
                      ("output_too_small", "the output needs 64 bytes")):
        assert errors[key][0] == bad_input and text in errors[key][1], (key, errors[key])
    assert errors["cuda_register"][0] == ("501" if protocol == "http" else "StatusCode.UNIMPLEMENTED")
    assert "no GPU shared memory" in errors["cuda_register"][1]

    assert answer["reuse"] == [True, True, True]

    repository = answer["repository"]
    index = repository["index"] if protocol == "http" else repository["index"]["models"]
    assert [(m["name"], m["version"], m["state"]) for m in index] == [("simple", "1", "READY")]
    assert repository["ready_after_unload"] is False and repository["ready_after_load"] is True


def test_shared_memory_errors_are_client_errors_on_rest(simple_server):
    """Bad register bodies and shm parameters are 400s in the service's error shape, CUDA's register a 501."""
    with httpx.Client(base_url=simple_server.url, timeout=30) as client:
        base = "/v2/systemsharedmemory/region/r"
        for body in (b"{", b"[]", b'{"key": 5, "byte_size": 4}', b'{"key": "/x", "byte_size": -1}',
                     b'{"key": "/../etc/passwd", "byte_size": 4}', b'{"key": "/a/b", "byte_size": 4}'):
            response = client.post(base + "/register", content=body)
            assert response.status_code == 400, (body, response.text)
            assert "error" in response.json()
        assert client.get(base + "/status").status_code == 404
        assert client.post(base + "/unregister").status_code == 200  # nothing to forget: not an error
        infer = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16],
                             "parameters": {"shared_memory_region": "r"}},
                            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]}
        response = client.post("/v2/models/simple/infer", json=infer)
        assert response.status_code == 400 and "given together" in response.json()["error"]
        infer["inputs"][0]["parameters"]["shared_memory_byte_size"] = 64
        infer["inputs"][0]["data"] = [0] * 16
        response = client.post("/v2/models/simple/infer", json=infer)
        assert response.status_code == 400 and "has data too" in response.json()["error"]
        response = client.post("/v2/repository/models/simple/load", json={"parameters": {"config": "{}"}})
        assert response.status_code == 501 and "config" in response.json()["error"]
        response = client.post("/v2/cudasharedmemory/region/g/register", json={"byte_size": 4})
        assert response.status_code == 501 and "no GPU shared memory" in response.json()["error"]
        assert client.get("/v2/cudasharedmemory/status").json() == []


def test_grpc_codes_and_the_ready_index(simple_server, tmp_path):
    """The project's own stubs: each mistake its table code; RepositoryIndex(ready=True) lists the ready versions."""
    with grpc_channel(simple_server) as channel:
        v2 = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for call, request, code in (
            (v2.SystemSharedMemoryRegister, pb.SystemSharedMemoryRegisterRequest(name="r", key="/nope-tlserve",
                                                                                byte_size=4), "INVALID_ARGUMENT"),
            (v2.SystemSharedMemoryRegister, pb.SystemSharedMemoryRegisterRequest(name="r", key="/../etc/passwd",
                                                                                byte_size=4), "INVALID_ARGUMENT"),
            (v2.SystemSharedMemoryStatus, pb.SystemSharedMemoryStatusRequest(name="r"), "NOT_FOUND"),
            (v2.CudaSharedMemoryRegister, pb.CudaSharedMemoryRegisterRequest(name="g", byte_size=4), "UNIMPLEMENTED"),
            (v2.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="../x"), "NOT_FOUND"),
            (v2.RepositoryModelLoad, pb.RepositoryModelLoadRequest(
                model_name="simple", parameters={"config": pb.ModelRepositoryParameter(string_param="{}")}),
             "UNIMPLEMENTED"),
        ):
            with pytest.raises(grpc.RpcError) as failed:
                call(request, timeout=30)
            assert failed.value.code() == grpc.StatusCode[code], (request, failed.value.details())
        request = pb.ModelInferRequest(model_name="simple")
        tensor = request.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
        tensor.parameters["shared_memory_region"].string_param = "r"
        tensor.parameters["shared_memory_byte_size"].int64_param = 64
        tensor.contents.int_contents.extend([0] * 16)
        with pytest.raises(grpc.RpcError) as failed:
            v2.ModelInfer(request, timeout=30)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "contents too" in failed.value.details()
        ready = v2.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=30)
        assert [(m.name, m.version, m.state) for m in ready.models] == [("simple", "1", "READY")]
