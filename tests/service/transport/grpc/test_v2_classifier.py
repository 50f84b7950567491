"""KServe V2 gRPC and tlserve's Classifier service against a real server (the project's generated stubs)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from service.codec.v2 import decode_bytes_elements, encode_bytes_elements
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.conftest import grpc_channel


@pytest.fixture(scope="module")
def v2(channel):
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def classifier(channel):
    return classifier_pb2_grpc.ClassifierStub(channel)


def test_v2_health_and_metadata(v2):
    assert v2.ServerLive(pb.ServerLiveRequest()).live
    assert v2.ServerReady(pb.ServerReadyRequest()).ready
    assert v2.ModelReady(pb.ModelReadyRequest(name="shapes")).ready
    assert v2.ModelReady(pb.ModelReadyRequest(name="shapes", version="1")).ready
    meta = v2.ModelMetadata(pb.ModelMetadataRequest(name="half_plus_two"))
    assert list(meta.versions) == ["123"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 1])]
    assert v2.ServerMetadata(pb.ServerMetadataRequest()).name == "tlserve"


def test_v2_infer_raw_bytes_images(v2, images, expected):
    request = pb.ModelInferRequest(model_name="shapes", id="req-7")
    request.inputs.add(name="images", datatype="BYTES", shape=[len(images)])
    request.raw_input_contents.append(encode_bytes_elements(images))
    request.outputs.add(name="scores")
    response = v2.ModelInfer(request, timeout=60)
    assert response.id == "req-7" and response.model_version == "1"
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("scores", "FP32", [len(images), 3])
    scores = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(len(images), 3)
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_v2_infer_typed_contents_answer_typed_contents(v2):
    """A request in typed contents is answered in typed contents (as KServe's and Triton's servers answer)."""
    request = pb.ModelInferRequest(model_name="half_plus_two")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    tensor.contents.fp32_contents.extend([2.0, 4.0])
    response = v2.ModelInfer(request, timeout=60)
    assert not response.raw_output_contents
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("y", "FP32", [2, 1])
    assert list(output.contents.fp32_contents) == [3.0, 4.0]


def test_v2_string_outputs_typed_or_length_prefixed_bytes(v2, images):
    request = pb.ModelInferRequest(model_name="shapes")
    request.inputs.add(name="images", datatype="BYTES", shape=[1]).contents.bytes_contents.append(images[0])
    request.outputs.add(name="classes")
    response = v2.ModelInfer(request, timeout=60)
    assert response.outputs[0].datatype == "BYTES" and list(response.outputs[0].shape) == [1, 3]
    assert list(response.outputs[0].contents.bytes_contents) == [b"circle", b"square", b"triangle"]
    del request.inputs[0].contents.bytes_contents[:]
    request.raw_input_contents.append(encode_bytes_elements(images[:1]))
    response = v2.ModelInfer(request, timeout=60)
    assert decode_bytes_elements(response.raw_output_contents[0], 3) == [b"circle", b"square", b"triangle"]


@pytest.mark.parametrize("build, code", [
    (lambda r: setattr(r, "model_name", "nope"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.inputs.add(name="images", datatype="NOPE", shape=[1]), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: (r.inputs.add(name="images", datatype="BYTES", shape=[2]),
                r.raw_input_contents.append(encode_bytes_elements([b"x"]))), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: (r.inputs.add(name="images", datatype="BYTES", shape=[1]),
                r.raw_input_contents.append(encode_bytes_elements([b"\x89PNG\r\n\x1a\ntruncated"]))),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: (r.inputs.add(name="images", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)),
     grpc.StatusCode.INVALID_ARGUMENT),
    # A version that cannot exist is unknown, as over HTTP (it was INVALID_ARGUMENT here, 404 there).
    (lambda r: setattr(r, "model_version", "abc"), grpc.StatusCode.NOT_FOUND),
])
def test_v2_bad_requests(v2, build, code):
    request = pb.ModelInferRequest(model_name="shapes")
    build(request)
    with pytest.raises(grpc.RpcError) as failed:
        v2.ModelInfer(request, timeout=60)
    assert failed.value.code() == code, failed.value.details()


def test_v2_version_that_cannot_exist_is_not_found(v2):
    for call, request in ((v2.ModelReady, pb.ModelReadyRequest(name="shapes", version="abc")),
                          (v2.ModelMetadata, pb.ModelMetadataRequest(name="shapes", version="abc"))):
        with pytest.raises(grpc.RpcError) as failed:
            call(request, timeout=60)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND, failed.value.details()


def test_v2_raw_bool_is_strictly_0_or_1_as_over_rest(v2):
    request = pb.ModelInferRequest(model_name="half_plus_two")
    request.inputs.add(name="x", datatype="BOOL", shape=[2, 1])
    request.raw_input_contents.append(b"\x02\x07")
    with pytest.raises(grpc.RpcError) as failed:
        v2.ModelInfer(request, timeout=60)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "0 or 1" in failed.value.details()


def test_classifier_images_and_pixels(classifier, images, expected, tiny_training):
    labels = ["circle", "square", "triangle"]
    response = classifier.Classify(classifier_pb2.ClassifyRequest(model="shapes", images=images, top_k=2), timeout=60)
    assert response.model == "shapes" and response.version == 1
    assert [r.labels[0].label for r in response.results] == [labels[i] for i in expected.argmax(1)]
    assert [r.labels[0].index for r in response.results] == list(expected.argmax(1))
    np.testing.assert_allclose([r.labels[0].score for r in response.results], expected.max(1), atol=1e-5)
    assert all(len(r.labels) == 2 for r in response.results)

    size = tiny_training.config.image_size
    pixels = np.stack([tf.cast(tf.round(tf.image.resize(tf.io.decode_png(i), [size, size], antialias=True)),
                               tf.uint8).numpy() for i in images])
    message = classifier_pb2.Pixels(height=size, width=size, channels=3, count=len(images), data=pixels.tobytes())
    by_pixels = classifier.Classify(classifier_pb2.ClassifyRequest(model="shapes", pixels=message), timeout=60)
    assert [r.labels[0].label for r in by_pixels.results] == [r.labels[0].label for r in response.results]


def test_classifier_errors(classifier, images):
    with pytest.raises(grpc.RpcError) as failed:
        classifier.Classify(classifier_pb2.ClassifyRequest(model="half_plus_two", images=images))
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND  # not an image classifier
    bad = classifier_pb2.Pixels(height=5, width=5, channels=3, count=1, data=b"\0" * 75)
    with pytest.raises(grpc.RpcError) as failed:
        classifier.Classify(classifier_pb2.ClassifyRequest(model="shapes", pixels=bad))
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_classifier_lists_models(classifier):
    models = {m.name: m for m in classifier.ListModels(classifier_pb2.ListModelsRequest()).models}
    assert set(models) == {"half_plus_two", "shapes"}
    shapes = classifier.GetModel(classifier_pb2.GetModelRequest(name="shapes"))
    assert list(shapes.class_names) == ["circle", "square", "triangle"] and shapes.image_size == 32
    assert [(v.version, v.state) for v in shapes.versions] == [(1, "AVAILABLE")]
    with pytest.raises(grpc.RpcError) as failed:
        classifier.GetModel(classifier_pb2.GetModelRequest(name="nope"))
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND


TRITON_PYTHON = Path(__file__).resolve().parents[4] / ".venv-triton" / "bin" / "python"


def test_tritons_own_grpc_client_works_unchanged(server, images, expected, tmp_path):
    """Triton's client runs in its own venv and process (its protobuf < 7 pin collides with ours)."""
    import json
    import subprocess

    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(image)
    script = Path(__file__).resolve().parents[3] / "peers" / "triton_v2_client.py"
    done = subprocess.run([str(TRITON_PYTHON), str(script), server.grpc_target, "shapes", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["live"] and answer["ready"] and answer["model_ready"]
    assert answer["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": ["-1"]}]
    np.testing.assert_allclose(answer["scores"], expected, atol=1e-5)


KSERVE_PYTHON = Path(__file__).resolve().parents[4] / ".venv-kserve" / "bin" / "python"


def test_kserves_own_grpc_client_works_unchanged(server, images, tmp_path):
    """KServe's InferenceGRPCClient (its own venv and process: it pins its own grpcio and protobuf) gets typed
    contents back for typed contents and raw contents for raw, and decodes both (``make`` builds .venv-kserve)."""
    import json
    import subprocess

    if not KSERVE_PYTHON.exists():
        pytest.fail(f"{KSERVE_PYTHON} missing: `make .venv-kserve/.installed` installs KServe's client")
    (tmp_path / "0.png").write_bytes(images[0])
    script = Path(__file__).resolve().parents[3] / "peers" / "kserve_v2_client.py"
    done = subprocess.run([str(KSERVE_PYTHON), str(script), server.grpc_target, str(tmp_path / "0.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["live"] and answer["ready"]
    for key, wire in (("typed", {"raw_output_contents": 0, "typed_fields": ["fp32_contents"]}),
                      ("raw", {"raw_output_contents": 1, "typed_fields": []})):
        assert answer[key] == {"id": "kserve-1", "name": "y", "datatype": "FP32", "shape": [3, 1],
                               "values": [2.5, 3.0, 4.5], "from_grpc": [2.5, 3.0, 4.5], **wire}, key
    assert answer["bytes"]["datatype"] == "BYTES" and answer["bytes"]["shape"] == [1, 3]
    assert answer["bytes"]["values"] == ["circle", "square", "triangle"]
    assert answer["bytes"]["typed_fields"] == ["bytes_contents"] and answer["bytes"]["raw_output_contents"] == 0


def test_http_and_grpc_requests_share_the_pixels_batches(server, images):
    """Mixed load on one model: both transports feed one batcher of one loaded version."""
    import asyncio
    import base64

    import httpx

    version = server.runtime.repository.resolve("shapes")
    histogram = server.runtime.metrics.batch_size.labels("shapes", "1")

    def total_items():
        return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_sum"))

    before = total_items()

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http, \
                grpc_channel(server, aio=True) as channel:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            calls = [http.post("/classify", json={"model": "shapes", "images": [base64.b64encode(images[0]).decode()]})
                     for _ in range(16)]
            calls += [stub.Classify(classifier_pb2.ClassifyRequest(model="shapes", images=[images[1]]))
                      for _ in range(16)]
            return await asyncio.gather(*calls)

    answers = asyncio.run(main())
    assert all(a.status_code == 200 for a in answers[:16]) and all(len(a.results) == 1 for a in answers[16:])
    assert total_items() - before == 32  # every image of both transports went through this version's batches
    assert set(version._batchers) == {"pixels"}  # one queue for the version
    assert server.runtime.repository.resolve("shapes") is version
