"""TF Serving's gRPC API with the unmodified tensorflow-serving-api stubs, against a real server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)


@pytest.fixture(scope="module")
def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _request(model, signature="serving_default", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_images_as_string_val(predict_stub, images, expected):
    response = predict_stub.Predict(_request("shapes", images=np.array(images, dtype=object)), timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), expected, atol=1e-5)
    assert response.model_spec.version.value == 1
    assert [c.decode() for c in tf.make_ndarray(response.outputs["classes"])[0]] == ["circle", "square", "triangle"]


def test_predict_pixels_as_tensor_content_with_output_filter(predict_stub, images, expected, tiny_training):
    size = tiny_training.config.image_size
    pixels = np.stack([tf.cast(tf.round(tf.image.resize(tf.io.decode_png(i), [size, size], antialias=True)),
                               tf.uint8).numpy() for i in images])
    request = _request("shapes", "pixels", pixels=pixels)
    request.output_filter.append("scores")
    response = predict_stub.Predict(request, timeout=60)
    assert list(response.outputs) == ["scores"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), expected, atol=1e-4)


def test_tf1_model_predict_classify_regress_by_version(predict_stub):
    request = _request("half_plus_two", x=np.array([[2.0], [4.0]], np.float32))
    request.model_spec.version.value = 123
    np.testing.assert_allclose(tf.make_ndarray(predict_stub.Predict(request).outputs["y"]), [[3.0], [4.0]])

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name, classify.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
    example = classify.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(2.0)
    result = predict_stub.Classify(classify).result
    assert result.classifications[0].classes[0].score == pytest.approx(3.0)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name, regress.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    regress.input.example_list.examples.add().features.feature["x"].float_list.value.append(4.0)
    assert predict_stub.Regress(regress).result.regressions[0].value == pytest.approx(4.0)


def test_classify_images_through_tf_examples(predict_stub, images, expected):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "shapes", "classify"
    for image in images:
        request.input.example_list.examples.add().features.feature["image/encoded"].bytes_list.value.append(image)
    result = predict_stub.Classify(request, timeout=60).result
    assert [[c.label for c in r.classes] for r in result.classifications] == [["circle", "square", "triangle"]] * len(images)
    np.testing.assert_allclose([[c.score for c in r.classes] for r in result.classifications], expected, atol=1e-5)


def test_regress_on_a_classifier_is_a_client_error(predict_stub, images):
    """As over REST (transport/http/test_api.py): a classifier's outputs are not regressions, whatever their shape."""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = "shapes", "classify"
    request.input.example_list.examples.add().features.feature["image/encoded"].bytes_list.value.append(images[0])
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Regress(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a regression signature" in err.value.details()


def test_model_metadata_has_the_real_signature_defs(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = predict_stub.GetModelMetadata(request)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    assert sigs.signature_def["regress_x_to_y"].method_name == "tensorflow/serving/regress"
    assert sigs.signature_def["serving_default"].inputs["x"].name == "x:0"
    assert response.model_spec.version.value == 123


def test_model_status(channel):
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "shapes"
    (status,) = stub.GetModelStatus(request).model_version_status
    assert status.version == 1 and status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_message == ""


@pytest.mark.parametrize("change, code", [
    (lambda r: setattr(r.model_spec, "name", "nope"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.model_spec.version.__setattr__("value", 99), grpc.StatusCode.NOT_FOUND),
    (lambda r: setattr(r.model_spec, "signature_name", "missing"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([1.5], np.float32))),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array([b"garbage"], dtype=object))),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["other"].CopyFrom(tf.make_tensor_proto(np.array([b"x"], dtype=object))),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs.clear(), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_bad_requests_get_the_table_code_and_the_server_keeps_serving(predict_stub, images, change, code):
    request = _request("shapes", images=np.array(images[:1], dtype=object))
    change(request)
    with pytest.raises(grpc.RpcError) as failed:
        predict_stub.Predict(request, timeout=60)
    assert failed.value.code() == code, failed.value.details()
    assert predict_stub.Predict(_request("shapes", images=np.array(images[:1], dtype=object)), timeout=60)


def test_oversized_message_is_resource_exhausted(server, predict_stub):
    limit = int(server.runtime.settings.grpc_max_message_mb * 2**20)
    big = np.zeros(limit // 4 + 1024, np.float32)
    with pytest.raises(grpc.RpcError) as failed:
        predict_stub.Predict(_request("half_plus_two", x=big.reshape(-1, 1)), timeout=60)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_overall_and_per_model(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    assert stub.Check(health_pb2.HealthCheckRequest(service="shapes")).status == serving


def test_reflection_lists_every_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in response.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_grpc_requests_are_counted_with_their_code(server, predict_stub):
    with pytest.raises(grpc.RpcError):
        predict_stub.Predict(_request("nope", x=np.ones((1, 1), np.float32)))
    text = "\n".join(str(m) for m in server.runtime.metrics.registry.collect())
    assert "tfserving-grpc" in text and "NOT_FOUND" in text
