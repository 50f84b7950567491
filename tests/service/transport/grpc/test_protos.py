"""The project's .proto files: generated code is current, imports, and keeps the wire format of the specifications."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.transport.grpc.protos.inference import grpc_service_pb2 as v2
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc as v2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2 as cls
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2_grpc as cls_grpc

REPO = Path(__file__).resolve().parents[4]


def test_generated_code_is_current():
    result = subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_descriptors():
    classifier = cls.DESCRIPTOR.services_by_name["Classifier"]
    assert classifier.full_name == "tlserve.classifier.v1.Classifier"
    assert [m.name for m in classifier.methods] == ["Classify", "Explain", "ListModels", "GetModel"]
    assert classifier.methods_by_name["GetModel"].output_type.full_name == "tlserve.classifier.v1.ModelInfo"

    inference = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert inference.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in inference.methods] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        # Triton's extensions
        "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
        "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
        "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister"]
    for method in inference.methods:  # all unary-unary, request/response names as in the specification
        assert not method.client_streaming and not method.server_streaming
        assert method.input_type.full_name == f"inference.{method.name}Request"
        assert method.output_type.full_name == f"inference.{method.name}Response"

    # the grpc modules expose the stubs and servicer registration the server will use
    for module, service in ((cls_grpc, "Classifier"), (v2_grpc, "GRPCInferenceService")):
        assert hasattr(module, f"{service}Stub")
        assert hasattr(module, f"{service}Servicer")
        assert hasattr(module, f"add_{service}Servicer_to_server")


def _numbers(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


# Field numbers from the Open Inference Protocol (kserve/open-inference-protocol,
# specification/protocol/inference_grpc.md and open_inference_grpc.proto; the same numbers are in KServe's
# grpc_predict_v2.proto and Triton's grpc_service.proto). Wire compatibility with their clients depends on them.
V2_FIELDS = {
    v2.ServerLiveResponse: {"live": 1},
    v2.ServerReadyResponse: {"ready": 1},
    v2.ModelReadyRequest: {"name": 1, "version": 2},
    v2.ModelReadyResponse: {"ready": 1},
    v2.ServerMetadataResponse: {"name": 1, "version": 2, "extensions": 3},
    v2.ModelMetadataRequest: {"name": 1, "version": 2},
    v2.ModelMetadataResponse: {"name": 1, "versions": 2, "platform": 3, "inputs": 4, "outputs": 5},
    v2.ModelMetadataResponse.TensorMetadata: {"name": 1, "datatype": 2, "shape": 3},
    v2.ModelInferRequest: {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "inputs": 5, "outputs": 6,
                           "raw_input_contents": 7},
    v2.ModelInferRequest.InferInputTensor: {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
    v2.ModelInferRequest.InferRequestedOutputTensor: {"name": 1, "parameters": 2},
    v2.ModelInferResponse: {"model_name": 1, "model_version": 2, "id": 3, "parameters": 4, "outputs": 5,
                            "raw_output_contents": 6},
    v2.ModelInferResponse.InferOutputTensor: {"name": 1, "datatype": 2, "shape": 3, "parameters": 4, "contents": 5},
    v2.InferParameter: {"bool_param": 1, "int64_param": 2, "string_param": 3, "double_param": 4, "uint64_param": 5},
    v2.InferTensorContents: {"bool_contents": 1, "int_contents": 2, "int64_contents": 3, "uint_contents": 4,
                             "uint64_contents": 5, "fp32_contents": 6, "fp64_contents": 7, "bytes_contents": 8},
}


@pytest.mark.parametrize("message", list(V2_FIELDS), ids=lambda m: m.DESCRIPTOR.full_name)
def test_v2_field_numbers_match_the_specification(message):
    assert _numbers(message) == V2_FIELDS[message]


def test_v2_field_types():
    d = v2.ModelInferRequest.DESCRIPTOR
    assert d.fields_by_name["raw_input_contents"].type == d.fields_by_name["raw_input_contents"].TYPE_BYTES
    assert d.fields_by_name["parameters"].message_type.GetOptions().map_entry
    shape = v2.ModelInferRequest.InferInputTensor.DESCRIPTOR.fields_by_name["shape"]
    assert shape.type == shape.TYPE_INT64
    param = v2.InferParameter.DESCRIPTOR
    assert [f.name for f in param.oneofs_by_name["parameter_choice"].fields] == [
        "bool_param", "int64_param", "string_param", "double_param", "uint64_param"]
    contents = v2.InferTensorContents.DESCRIPTOR.fields_by_name
    assert contents["uint_contents"].type == contents["uint_contents"].TYPE_UINT32
    assert contents["fp32_contents"].type == contents["fp32_contents"].TYPE_FLOAT


def test_v2_known_wire_bytes():
    """A hand-encoded message (tag = field number << 3 | wire type) parses into the right fields."""
    wire = (b"\x0a\x01m"              # 1 model_name, length-delimited
            b"\x12\x01" b"3"          # 2 model_version
            b"\x2a\x09\x0a\x01x\x12\x04FP32"  # 5 inputs { 1 name "x", 2 datatype "FP32" }
            b"\x3a\x02\x00\x01")      # 7 raw_input_contents
    request = v2.ModelInferRequest.FromString(wire)
    assert request.model_name == "m" and request.model_version == "3"
    assert request.inputs[0].name == "x" and request.inputs[0].datatype == "FP32"
    assert list(request.raw_input_contents) == [b"\x00\x01"]
    assert v2.InferTensorContents(bytes_contents=[b"ab"]).SerializeToString() == b"\x42\x02ab"  # 8 << 3 | 2


TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"


def _walk(descriptor, messages: dict, enums: dict) -> None:
    messages[descriptor.full_name] = {
        f.name: [f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else
                 (f.enum_type.full_name if f.enum_type else "")] for f in descriptor.fields}
    for enum in descriptor.enum_types:
        enums[enum.full_name] = {v.name: v.number for v in enum.values}
    for nested in descriptor.nested_types:
        _walk(nested, messages, enums)


def test_v2_proto_is_a_subset_of_tritons_own():
    """Every RPC, message, field (number, type, repeated or not, message type) and enum value of our ``inference``
    package is the same in the descriptors tritonclient ships (its venv and process: its protobuf < 7 pin collides
    with ours), so Triton's stubs and ours interoperate; Triton's fields we leave out are read by its clients as
    unset."""
    import json

    if not TRITON_PYTHON.exists():
        pytest.fail(f"{TRITON_PYTHON} missing: `make .venv-triton/.installed` installs Triton's client")
    done = subprocess.run([str(TRITON_PYTHON), str(REPO / "tests" / "peers" / "triton_descriptors.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    triton = json.loads(done.stdout)
    ours: dict = {}
    our_enums: dict = {}
    for descriptor in v2.DESCRIPTOR.message_types_by_name.values():
        _walk(descriptor, ours, our_enums)
    for enum in v2.DESCRIPTOR.enum_types_by_name.values():
        our_enums[enum.full_name] = {v.name: v.number for v in enum.values}
    assert "inference.ModelConfig" in ours and "inference.ModelStatistics" in ours  # the extensions are there
    for name, fields in ours.items():
        assert name in triton["messages"], name
        for field, spec in fields.items():
            assert triton["messages"][name].get(field) == spec, f"{name}.{field}"
    for name, values in our_enums.items():
        assert triton["enums"].get(name, {}) | values == triton["enums"].get(name), name
    service = v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        assert triton["methods"][method.name] == [method.input_type.full_name, method.output_type.full_name]


def test_classifier_field_numbers():
    assert _numbers(cls.ClassifyRequest) == {"model": 1, "version": 2, "version_label": 3, "images": 4, "pixels": 5,
                                             "top_k": 6, "unknown_threshold": 7}
    assert [f.name for f in cls.ClassifyRequest.DESCRIPTOR.oneofs_by_name["selector"].fields] == [
        "version", "version_label"]
    assert _numbers(cls.Pixels) == {"height": 1, "width": 2, "channels": 3, "count": 4, "data": 5}
    assert _numbers(cls.ClassifyResponse) == {"model": 1, "version": 2, "results": 3}
    assert _numbers(cls.ImageResult) == {"labels": 1, "confident": 2}
    assert _numbers(cls.Label) == {"label": 1, "index": 2, "score": 3}
    assert _numbers(cls.ExplainRequest) == {"model": 1, "version": 2, "version_label": 3, "images": 4,
                                            "class_index": 5}
    assert _numbers(cls.ExplainResponse) == {"model": 1, "version": 2, "results": 3}
    assert _numbers(cls.Explanation) == {"label": 1, "index": 2, "score": 3, "height": 4, "width": 5, "heatmap": 6}
    assert _numbers(cls.ListModelsRequest) == {}
    assert _numbers(cls.ListModelsResponse) == {"models": 1}
    assert _numbers(cls.GetModelRequest) == {"name": 1}
    assert _numbers(cls.ModelInfo) == {"name": 1, "versions": 2, "version_labels": 3, "class_names": 4,
                                       "image_size": 5}
    assert _numbers(cls.VersionInfo) == {"version": 1, "state": 2, "error": 3}


def test_classify_request_round_trip():
    images = [b"\x89PNG\r\n\x1a\n fake", b"\xff\xd8\xff fake jpeg"]
    request = cls.ClassifyRequest(model="flowers", version_label="stable", images=images, top_k=5)
    parsed = cls.ClassifyRequest.FromString(request.SerializeToString())
    assert parsed == request
    assert parsed.model == "flowers" and list(parsed.images) == images and parsed.top_k == 5
    assert parsed.WhichOneof("selector") == "version_label" and parsed.version_label == "stable"
    assert not parsed.HasField("pixels")

    parsed.version = 7  # setting the other member of the oneof clears the label
    assert parsed.WhichOneof("selector") == "version" and parsed.version_label == ""

    unset = cls.ClassifyRequest.FromString(cls.ClassifyRequest(model="m").SerializeToString())
    assert unset.WhichOneof("selector") is None and unset.top_k == 0  # newest version, default top_k

    pixels = cls.ClassifyRequest(model="m", pixels=cls.Pixels(height=2, width=2, channels=3, count=1,
                                                             data=bytes(range(12))))
    again = cls.ClassifyRequest.FromString(pixels.SerializeToString())
    assert again.HasField("pixels") and again.pixels.data == bytes(range(12)) and again.pixels.count == 1


def test_model_info_round_trip():
    info = cls.ModelInfo(name="m", versions=[cls.VersionInfo(version=2, state="AVAILABLE")],
                         version_labels={"stable": 2}, class_names=["a", "b"], image_size=224)
    parsed = cls.ModelInfo.FromString(info.SerializeToString())
    assert parsed == info and dict(parsed.version_labels) == {"stable": 2}
