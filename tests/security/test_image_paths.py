"""Every way an encoded image reaches a tlserve export is checked before decoding: HTTP (TF Serving JSON b64 and
tf.Examples, V2 binary BYTES, /classify JSON and multipart), gRPC (Predict string tensors and tf.Examples, Classify,
the Classifier service, V2 ModelInfer), the ``preprocess`` signature called directly, and warm-up records.

A bomb (a PNG header claiming 15000x15000 pixels), a GIF of 150 frames, TIFF and WebP (not in the allowed formats),
truncated data and garbage are refused with 400/415 (INVALID_ARGUMENT on gRPC), never 500, and the server answers
a good image afterwards.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc)

from service.codec.v2 import encode_bytes_elements
from service.settings import Settings
from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.security.crafted import HOSTILE, png_bomb
from tests.service.conftest import copy_version, start_server

MODEL = "shapes"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _example(data: bytes) -> bytes:
    example = example_pb2.Example()
    example.features.feature["image/encoded"].bytes_list.value.append(data)
    return example.SerializeToString()


# -- HTTP paths: (client, image) -> response -------------------------------------------------------------
def _tfserving_b64(client, image):
    return client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": _b64(image)}]})


def _tfserving_examples(client, image):
    return client.post(f"/v1/models/{MODEL}:classify",
                       json={"signature_name": "classify", "examples": [{"image/encoded": {"b64": _b64(image)}}]})


def _tfserving_preprocess(client, image):
    return client.post(f"/v1/models/{MODEL}:predict",
                       json={"signature_name": "preprocess", "inputs": {"image": {"b64": _b64(image)}}})


def _v2_binary(client, image):
    raw = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return client.post(f"/v2/models/{MODEL}/infer", content=header + raw,
                       headers={"Inference-Header-Content-Length": str(len(header)),
                                "Content-Type": "application/octet-stream"})


def _classify_json(client, image):
    return client.post("/classify", json={"model": MODEL, "images": [_b64(image)]})


def _classify_multipart(client, image):
    return client.post("/classify", data={"model": MODEL}, files=[("images", ("x", image, "image/png"))])


HTTP_PATHS = [_tfserving_b64, _tfserving_examples, _tfserving_preprocess, _v2_binary, _classify_json,
              _classify_multipart]


# -- gRPC paths: (channel, image) -> None or raises grpc.RpcError --------------------------------------------
def _predict(channel, signature, key, value):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, signature
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)


def _grpc_predict_strings(channel, image):
    _predict(channel, "serving_default", "images", np.array([image], dtype=object))


def _grpc_predict_examples(channel, image):
    _predict(channel, "classify", "inputs", np.array([_example(image)], dtype=object))


def _grpc_predict_preprocess(channel, image):
    _predict(channel, "preprocess", "image", np.array(image, dtype=object))


def _grpc_classify_examples(channel, image):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "classify"
    request.input.example_list.examples.add().CopyFrom(example_pb2.Example.FromString(_example(image)))
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, timeout=60)


def _grpc_classifier(channel, image):
    classifier_pb2_grpc.ClassifierStub(channel).Classify(
        classifier_pb2.ClassifyRequest(model=MODEL, images=[image]), timeout=60)


def _grpc_v2(channel, image):
    request = v2_pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="images", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(encode_bytes_elements([image]))
    grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)


GRPC_PATHS = [_grpc_predict_strings, _grpc_predict_examples, _grpc_predict_preprocess, _grpc_classify_examples,
              _grpc_classifier, _grpc_v2]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("path", HTTP_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_http_paths_refuse_hostile_images(client, path, kind):
    image, says = HOSTILE[kind]
    response = path(client, image)
    assert response.status_code in (400, 415), (response.status_code, response.text)
    assert says in response.json()["error"]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("path", GRPC_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_grpc_paths_refuse_hostile_images(channel, path, kind):
    image, says = HOSTILE[kind]
    with pytest.raises(grpc.RpcError) as err:
        path(channel, image)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert says in err.value.details()


@pytest.mark.parametrize("path", HTTP_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_http_paths_still_serve_good_images(client, images, path):
    assert path(client, images[0]).status_code == 200


@pytest.mark.parametrize("path", GRPC_PATHS, ids=lambda f: f.__name__.strip("_"))
def test_grpc_paths_still_serve_good_images(channel, images, path):
    path(channel, images[0])


# -- warm-up records ---------------------------------------------------------------------------------------
def _warmup_file(path, image: bytes) -> None:
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name, request.model_spec.signature_name = MODEL, "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([image], dtype=object)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())


def test_a_bomb_in_the_warmup_records_fails_that_version_only(tiny_export, tmp_path, images):
    """Version 2 arrives with a bomb in assets.extra/tf_serving_warmup_requests: it is refused with the reason in
    its status, before the graph decodes anything, and version 1 keeps answering."""
    repo = tmp_path / "repo"
    copy_version(tiny_export[0], repo / MODEL, "1")
    running = start_server(Settings(model_repo=repo, poll_interval_s=0))
    try:
        staging = tmp_path / "v2"
        shutil.copytree(tiny_export[0], staging)
        _warmup_file(staging / "assets.extra" / "tf_serving_warmup_requests", png_bomb())
        copy_version(staging, repo / MODEL, "2")
        with httpx.Client(base_url=running.url, timeout=60) as c:
            assert c.post(f"/v2/repository/models/{MODEL}/load").status_code == 200  # re-scan now
            status = {s["version"]: s for s in c.get(f"/v1/models/{MODEL}").json()["model_version_status"]}
            message = status["2"]["status"]["error_message"]
            assert "warm-up record 1" in message and "the limit is 40000000 pixels" in message, status
            answer = c.post("/classify", json={"model": MODEL, "images": [_b64(images[0])]})
            assert answer.status_code == 200 and answer.json()["version"] == "1"
    finally:
        running.stop()
