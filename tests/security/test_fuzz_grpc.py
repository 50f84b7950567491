"""Property-based tests over the gRPC request messages against a real server: generated PredictRequests (random
TensorProtos: dtypes, shapes, typed values, tensor_content; ModelSpec names, versions and labels), Classify and
Regress requests with random tf.Examples, V2 ModelInferRequests and tlserve Classifier requests end with OK or a
client-error code, never INTERNAL/UNKNOWN/UNAVAILABLE, and the server answers a good request afterwards.
Generated inputs per test: ``fuzzing.EXAMPLES`` (150 by default)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from service.transport.grpc.protos.inference import grpc_service_pb2 as v2_pb
from service.transport.grpc.protos.inference import grpc_service_pb2_grpc
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.security.fuzzing import SENT, assert_grpc_coped, fuzz_settings

TIMEOUT = 30
NAMES = st.sampled_from(["shapes", "half_plus_two", "", "nope", "../shapes", "/etc/passwd", "shapes\x00",
                         "a" * 5000]) | st.text(max_size=12)
SIGNATURES = st.sampled_from(["", "serving_default", "classify", "preprocess", "pixels", "regress_x_to_y",
                              "classify_x_to_y", "nope"])
INPUT_NAMES = st.sampled_from(["images", "x", "pixels", "image", "inputs"]) | st.text(max_size=5)
DTYPES = st.sampled_from(sorted(types_pb2.DataType.values())) | st.integers(0, 200)
DIMS = st.lists(st.integers(-2, 6) | st.sampled_from([2**31, 2**40]), max_size=4)


@st.composite
def tensor_protos(draw) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    if draw(st.booleans()):
        shape = draw(DIMS)
        proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))
    else:
        proto.tensor_shape.unknown_rank = draw(st.booleans())
    content = draw(st.sampled_from(["tensor_content", "float_val", "int_val", "int64_val", "string_val",
                                    "bool_val", "half_val", "double_val", "none"]))
    if content == "tensor_content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif content == "float_val":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif content == "double_val":
        proto.double_val.extend(draw(st.lists(st.floats(), max_size=8)))
    elif content == "int_val":
        proto.int_val.extend(draw(st.lists(st.integers(-2**31, 2**31 - 1), max_size=8)))
    elif content == "int64_val":
        proto.int64_val.extend(draw(st.lists(st.integers(-2**63, 2**63 - 1), max_size=8)))
    elif content == "half_val":
        proto.half_val.extend(draw(st.lists(st.integers(0, 2**31 - 1), max_size=8)))
    elif content == "string_val":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=32), max_size=4)))
    elif content == "bool_val":
        proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=8)))
    return proto


def _model_spec(spec, draw_name, version, label, signature):
    spec.name = draw_name
    spec.signature_name = signature
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label


VERSIONS = st.none() | st.integers(-2**63, 2**63 - 1) | st.sampled_from([1, 123, 0])
LABELS = st.none() | st.text(max_size=10) | st.just("x" * 10000)


@pytest.fixture(autouse=True, scope="module")
def still_serving_afterwards(channel, images):
    yield
    print(f"\nhypothesis: {SENT['grpc']} generated gRPC requests, none answered with a server error")
    reply = classifier_pb2_grpc.ClassifierStub(channel).Classify(
        classifier_pb2.ClassifyRequest(model="shapes", images=[images[0]]), timeout=60)
    assert len(reply.results) == 1


@fuzz_settings
@given(name=NAMES, version=VERSIONS, label=LABELS, signature=SIGNATURES,
       inputs=st.dictionaries(INPUT_NAMES, tensor_protos(), max_size=3),
       output_filter=st.lists(st.sampled_from(["scores", "classes", "y", "pixels"]) | st.text(max_size=4),
                              max_size=2))
def test_predict_requests(channel, name, version, label, signature, inputs, output_filter):
    request = predict_pb2.PredictRequest(output_filter=output_filter)
    _model_spec(request.model_spec, name, version, label, signature)
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    assert_grpc_coped(lambda: stub.Predict(request, timeout=TIMEOUT))


FEATURE_VALUES = (st.lists(st.binary(max_size=40), max_size=3).map(
    lambda v: feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=v)))
    | st.lists(st.floats(width=32), max_size=3).map(lambda v: feature_pb2.Feature(
        float_list=feature_pb2.FloatList(value=v)))
    | st.lists(st.integers(-2**63, 2**63 - 1), max_size=3).map(lambda v: feature_pb2.Feature(
        int64_list=feature_pb2.Int64List(value=v))))
EXAMPLES = st.lists(st.dictionaries(st.sampled_from(["image/encoded", "x", "inputs"]) | st.text(max_size=5),
                                    FEATURE_VALUES, max_size=3).map(
    lambda features: example_pb2.Example(features=feature_pb2.Features(feature=features))), max_size=3)


@fuzz_settings
@given(name=NAMES, version=VERSIONS, label=LABELS, signature=SIGNATURES, examples=EXAMPLES,
       context=st.none() | EXAMPLES.map(lambda e: e[0] if e else example_pb2.Example()),
       regress=st.booleans())
def test_classify_and_regress_requests(channel, name, version, label, signature, examples, context, regress):
    request = (regression_pb2.RegressionRequest if regress else classification_pb2.ClassificationRequest)()
    _model_spec(request.model_spec, name, version, label, signature)
    if context is None:
        request.input.example_list.examples.extend(examples)
    else:
        request.input.example_list_with_context.examples.extend(examples)
        request.input.example_list_with_context.context.CopyFrom(context)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    assert_grpc_coped(lambda: (stub.Regress if regress else stub.Classify)(request, timeout=TIMEOUT))


@fuzz_settings
@given(name=NAMES, version=VERSIONS, label=LABELS)
def test_metadata_and_status_requests(channel, name, version, label):
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _model_spec(metadata.model_spec, name, version, label, "")
    status = get_model_status_pb2.GetModelStatusRequest()
    _model_spec(status.model_spec, name, version, label, "")
    assert_grpc_coped(lambda: prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        metadata, timeout=TIMEOUT))
    assert_grpc_coped(lambda: model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status, timeout=TIMEOUT))


V2_TYPES = st.sampled_from(["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "UINT64", "FP16", "BF16", "FP32",
                            "FP64", "BYTES", "STRING", ""])


@st.composite
def v2_requests(draw) -> v2_pb.ModelInferRequest:
    request = v2_pb.ModelInferRequest(model_name=draw(NAMES), model_version=draw(
        st.sampled_from(["", "1", "123", "-1", "abc", "99999999999999999999999"])))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(name=draw(INPUT_NAMES), datatype=draw(V2_TYPES),
                                    shape=draw(st.lists(st.integers(-2, 6) | st.sampled_from([2**31, 2**40]),
                                                        max_size=4)))
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=64)))
        else:
            field = draw(st.sampled_from(["fp32_contents", "int_contents", "int64_contents", "bytes_contents",
                                          "bool_contents", "uint_contents"]))
            values = {"fp32_contents": st.floats(width=32), "int_contents": st.integers(-2**31, 2**31 - 1),
                      "int64_contents": st.integers(-2**63, 2**63 - 1), "bytes_contents": st.binary(max_size=32),
                      "bool_contents": st.booleans(), "uint_contents": st.integers(0, 2**32 - 1)}[field]
            getattr(tensor.contents, field).extend(draw(st.lists(values, max_size=6)))
    if draw(st.booleans()):
        request.parameters["signature_name"].string_param = draw(SIGNATURES)
    for name in draw(st.lists(st.sampled_from(["scores", "classes", "y"]) | st.text(max_size=3), max_size=2)):
        output = request.outputs.add(name=name)
        kind = draw(st.sampled_from([None, "int64_param", "uint64_param", "string_param", "double_param"]))
        if kind is not None:  # Triton's classification parameter, of any member and value
            value = {"int64_param": st.integers(-2**63, 2**63 - 1), "uint64_param": st.integers(0, 2**64 - 1),
                     "string_param": st.text(max_size=4), "double_param": st.floats()}[kind]
            setattr(output.parameters["classification"], kind, draw(value))
    return request


@fuzz_settings
@given(request=v2_requests())
def test_v2_infer_requests(channel, request):
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    assert_grpc_coped(lambda: stub.ModelInfer(request, timeout=TIMEOUT))


@fuzz_settings
@given(model=NAMES, version=st.text(max_size=24))
def test_v2_config_and_statistics_requests(channel, model, version):
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    assert_grpc_coped(lambda: stub.ModelConfig(v2_pb.ModelConfigRequest(name=model, version=version), timeout=TIMEOUT))
    assert_grpc_coped(lambda: stub.ModelStatistics(v2_pb.ModelStatisticsRequest(name=model, version=version),
                                                   timeout=TIMEOUT))


@fuzz_settings
@given(model=NAMES, version=st.none() | st.integers(-2**63, 2**63 - 1), label=LABELS,
       images=st.lists(st.binary(max_size=64), max_size=3),
       pixels=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 70), st.integers(0, 70),
                                    st.integers(0, 4), st.binary(max_size=200)),
       top_k=st.integers(0, 2**32 - 1))
def test_classifier_requests(channel, model, version, label, images, pixels, top_k):
    request = classifier_pb2.ClassifyRequest(model=model, images=images, top_k=top_k)
    if version is not None:
        request.version = version
    elif label is not None:
        request.version_label = label
    if pixels is not None:
        count, height, width, channels, data = pixels
        request.pixels.CopyFrom(classifier_pb2.Pixels(count=count, height=height, width=width, channels=channels,
                                                      data=data))
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    assert_grpc_coped(lambda: stub.Classify(request, timeout=TIMEOUT))
    assert_grpc_coped(lambda: stub.GetModel(classifier_pb2.GetModelRequest(name=model), timeout=TIMEOUT))


def test_a_good_predict_still_works(channel, images):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.array(images[:2], dtype=object)))
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    assert tf.make_ndarray(reply.outputs["scores"]).shape == (2, 3)
