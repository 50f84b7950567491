"""TF Serving's gRPC tensors (service/codec/tensorproto.py): TensorProto <-> numpy, examples, Classify/Regress."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from service.codec import dtypes
from service.codec.tensorproto import (MAX_FILLED_ELEMENTS, fill_classification, fill_regression,
                                       serialized_examples, to_array, typed_field, typed_tensor_proto)
from service.core.errors import InvalidInput


# ---------------------------------------------------------------------------------------- numpy -> TensorProto

@pytest.mark.parametrize("value, field", [
    (np.array([[1.5], [2.5]], np.float32), "float_val"),
    (np.array([1.5, -2.0], np.float64), "double_val"),
    (np.array([[1, 2, 3]], np.int32), "int_val"),
    (np.array([7, 8], np.uint8), "int_val"),
    (np.array([2**40, -1], np.int64), "int64_val"),
    (np.array([2**63], np.uint64), "uint64_val"),
    (np.array([True, False]), "bool_val"),
    (np.array([0.5, 2.0], np.float16), "half_val"),
    (np.array([1 + 2j], np.complex64), "scomplex_val"),
    (np.array([b"a", b"\xff"], object), "string_val"),
])
def test_predict_outputs_fill_typed_value_fields(value, field):
    proto = typed_tensor_proto(value)
    assert proto.tensor_content == b"" and len(getattr(proto, field)) > 0
    assert [d.size for d in proto.tensor_shape.dim] == list(value.shape)
    np.testing.assert_array_equal(tf.make_ndarray(proto), value)


def test_typed_string_values_from_text():
    proto = typed_tensor_proto(np.array(["héllo"], object))
    assert proto.dtype == types_pb2.DT_STRING and list(proto.string_val) == ["héllo".encode()]


@pytest.mark.parametrize("value", [np.array([0.5, -3.0], ml_dtypes.bfloat16), np.array([1 - 1j], np.complex128),
                                   np.array([2**32 - 1], np.uint32), np.array([-2, 3], np.int8),
                                   np.zeros((2, 0), np.float32), np.float32(4.5)], ids=str)
def test_typed_fields_round_trip_through_tf(value):
    proto = typed_tensor_proto(value)
    assert proto.tensor_content == b""
    np.testing.assert_array_equal(tf.make_ndarray(proto), value)


def test_the_typed_field_is_the_dtype_table_column():
    for dtype in dtypes.DTYPES:
        assert typed_field(dtype.tf_enum) == dtype.tf_field
    assert typed_field(types_pb2.DT_COMPLEX64) == "scomplex_val" and typed_field(types_pb2.DT_QINT8) is None


# ---------------------------------------------------------------------------------------- TensorProto -> numpy

def _proto(dtype: int, dims: list[int], field: str | None = None, values=()) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for d in dims:
        proto.tensor_shape.dim.add(size=d)
    if field:
        getattr(proto, field).extend(values)
    return proto


def test_to_array_reads_typed_fields_and_tensor_content():
    assert to_array("x", _proto(types_pb2.DT_FLOAT, [2, 1], "float_val", [1.0, 2.0])).tolist() == [[1.0], [2.0]]
    assert to_array("x", tf.make_tensor_proto(np.arange(6, dtype=np.int64).reshape(2, 3))).shape == (2, 3)
    assert to_array("s", _proto(types_pb2.DT_STRING, [2], "string_val", [b"a", b"b"])).tolist() == [b"a", b"b"]


def test_small_fills_are_tf_fill_rule():
    assert to_array("x", _proto(types_pb2.DT_FLOAT, [3], "float_val", [2.0])).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("dtype, field, value", [(types_pb2.DT_FLOAT, "float_val", 1.0),
                                                 (types_pb2.DT_STRING, "string_val", b"a"),
                                                 (types_pb2.DT_HALF, "half_val", 1),
                                                 (types_pb2.DT_COMPLEX64, "scomplex_val", 1.0),
                                                 (types_pb2.DT_QINT8, None, None)])
def test_a_few_values_cannot_expand_into_a_huge_tensor(dtype, field, value):
    proto = _proto(dtype, [MAX_FILLED_ELEMENTS + 1], field, [value] if field else [])
    with pytest.raises(InvalidInput, match=r"^input 'x': (1|0) values would expand to shape"):
        to_array("x", proto)


@pytest.mark.parametrize("proto", [_proto(types_pb2.DT_FLOAT, [-1]), _proto(types_pb2.DT_FLOAT, [2], "float_val",
                                                                           [1.0, 2.0, 3.0]),
                                   _proto(types_pb2.DT_INVALID, [1])], ids=["negative", "too many", "invalid"])
def test_invalid_tensor_protos(proto):
    with pytest.raises(InvalidInput, match="^input 'x' is not a valid TensorProto"):
        to_array("x", proto)


# -------------------------------------------------------------------------------------------------- examples

def _example(**features: bytes) -> example_pb2.Example:
    example = example_pb2.Example()
    for name, value in features.items():
        example.features.feature[name].bytes_list.value.append(value)
    return example


def test_serialized_examples_merge_the_context_under_each_example():
    plain = input_pb2.Input()
    plain.example_list.examples.extend([_example(a=b"1"), _example(a=b"2")])
    assert [example_pb2.Example.FromString(s) for s in serialized_examples(plain)] == [_example(a=b"1"),
                                                                                     _example(a=b"2")]
    with_context = input_pb2.Input()
    with_context.example_list_with_context.context.CopyFrom(_example(a=b"ctx", c=b"shared"))
    with_context.example_list_with_context.examples.extend([_example(a=b"own")])
    (serialized,) = serialized_examples(with_context)
    merged = example_pb2.Example.FromString(serialized).features.feature
    assert merged["a"].bytes_list.value == [b"own"] and merged["c"].bytes_list.value == [b"shared"]


@pytest.mark.parametrize("build", [lambda i: None, lambda i: i.example_list.SetInParent()], ids=["none", "empty"])
def test_no_examples(build):
    request_input = input_pb2.Input()
    build(request_input)
    with pytest.raises(InvalidInput, match="no input examples"):
        serialized_examples(request_input)


# ------------------------------------------------------------------------------------------ classify/regress

def test_fill_classification_from_scores_and_classes():
    result = classification_pb2.ClassificationResult()
    fill_classification({"scores": np.array([[0.9, 0.1]], np.float32),
                         "classes": np.array([[b"cat", b"\xff"]], object)}, result)
    (row,) = result.classifications
    assert [(c.label, round(c.score, 3)) for c in row.classes] == [("cat", 0.9), ("\ufffd", 0.1)]
    only_scores = classification_pb2.ClassificationResult()
    fill_classification({"scores": np.array([0.2, 0.8], np.float32)}, only_scores)
    assert [[c.label for c in r.classes] for r in only_scores.classifications] == [[""], [""]]
    with pytest.raises(InvalidInput, match="neither 'scores' nor 'classes'"):
        fill_classification({"other": np.zeros(1)}, classification_pb2.ClassificationResult())


def test_fill_regression():
    result = regression_pb2.RegressionResult()
    fill_regression({"outputs": np.array([[1.5], [2.5]], np.float32)}, result)
    assert [r.value for r in result.regressions] == [1.5, 2.5]
    alone = regression_pb2.RegressionResult()
    fill_regression({"y": np.array([3.0])}, alone)
    assert [r.value for r in alone.regressions] == [3.0]
    with pytest.raises(InvalidInput, match="no 'outputs' output .*not a regression signature"):
        fill_regression({"a": np.zeros(1), "b": np.zeros(1)}, regression_pb2.RegressionResult())
