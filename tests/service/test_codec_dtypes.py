"""The dtype table and the JSON <-> numpy conversions every codec relies on."""

from __future__ import annotations

import base64
import json
import math

import ml_dtypes
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2

from service.codec import dtypes
from service.codec.dtypes import (BF16, BOOL, BYTES, FP16, FP32, FP64, INT32, INT64, UINT8, UINT64, to_json_value,
                                  to_numpy)
from service.core.errors import InvalidInput


# ----------------------------------------------------------------------------------------------- the table


def test_table_names_are_the_v2_datatypes():
    assert [d.name for d in dtypes.DTYPES] == ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                                               "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]


@pytest.mark.parametrize("dtype", dtypes.DTYPES, ids=lambda d: d.name)
def test_every_entry_is_consistent_and_found_by_each_name(dtype):
    assert types_pb2.DataType.Name(dtype.tf_enum) == dtype.tf_name
    assert dtypes.by_v2(dtype.name) is dtype
    assert dtypes.by_tf_enum(dtype.tf_enum) is dtype
    assert dtypes.by_numpy(dtype.numpy) is dtype


@pytest.mark.parametrize("dtype", dtypes.DTYPES, ids=lambda d: d.name)
def test_wire_field_columns_name_real_fields_that_carry_the_dtype(dtype):
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    from service.transport.grpc.protos.inference import grpc_service_pb2

    values = np.array([1, 0, 1], dtype.numpy) if dtype is not BYTES else np.array([b"a", b"", b"c"], object)
    proto = tensor_pb2.TensorProto(dtype=dtype.tf_enum)
    proto.tensor_shape.dim.add(size=3)
    flat = values.view(np.uint16) if dtype.tf_field == "half_val" else values
    getattr(proto, dtype.tf_field).extend(flat.tolist())
    np.testing.assert_array_equal(tf.make_ndarray(proto), values)  # TF reads the column's field for the dtype
    contents = grpc_service_pb2.InferTensorContents()
    if dtype.v2_contents is None:
        assert dtype in (FP16, BF16)  # V2 carries the 16-bit floats only as raw contents
    else:
        getattr(contents, dtype.v2_contents).extend(values.tolist())


def test_known_mappings():
    assert dtypes.by_tf_enum(types_pb2.DT_FLOAT) is FP32
    assert dtypes.by_tf_enum(types_pb2.DT_STRING) is BYTES
    assert dtypes.by_tf_enum(types_pb2.DT_HALF) is FP16
    assert FP32.numpy == np.dtype("float32") and BYTES.numpy == np.dtype(object)
    assert BF16.numpy == np.dtype(ml_dtypes.bfloat16)


def test_by_numpy_maps_every_string_like_array_to_bytes():
    assert dtypes.by_numpy(np.array([b"a"])) is BYTES
    assert dtypes.by_numpy(np.array(["a"])) is BYTES
    assert dtypes.by_numpy(np.array([b"a"], dtype=object)) is BYTES
    assert dtypes.by_numpy(np.uint8) is UINT8
    assert dtypes.by_numpy(np.zeros(2, np.float64)) is FP64


def test_unknown_names_are_invalid_input():
    with pytest.raises(InvalidInput, match="unknown datatype 'fp32'"):
        dtypes.by_v2("fp32")
    with pytest.raises(InvalidInput, match="DT_COMPLEX64"):
        dtypes.by_tf_enum(types_pb2.DT_COMPLEX64)
    with pytest.raises(InvalidInput, match="12345"):
        dtypes.by_tf_enum(12345)
    with pytest.raises(InvalidInput, match="complex64"):
        dtypes.by_numpy(np.complex64)


# ------------------------------------------------------------------------------------------- JSON -> numpy


def test_nested_numbers_become_an_array_of_the_dtype():
    array = to_numpy([[1, 2.5], [3, 4]], FP32)
    assert array.dtype == np.float32 and array.shape == (2, 2)
    np.testing.assert_array_equal(array, [[1, 2.5], [3, 4]])
    scalar = to_numpy(7, INT64)
    assert scalar.shape == () and scalar.dtype == np.int64 and scalar == 7


def test_ragged_lists_name_the_offending_index():
    with pytest.raises(InvalidInput, match=r"^instances\[2\]: expected 2 elements like the first, got 3$"):
        to_numpy([[1, 2], [3, 4], [5, 6, 7]], FP32, where="instances")
    with pytest.raises(InvalidInput, match=r"^v\[1\]\[0\]: expected a value, got a list"):
        to_numpy([[1, 2], [[3], 4]], FP32, where="v")
    with pytest.raises(InvalidInput, match=r"^v\[1\]: expected a list of 2"):
        to_numpy([[1, 2], 3], FP32, where="v")


@pytest.mark.parametrize("value", [300, -1])
def test_integers_out_of_range_are_refused(value):
    with pytest.raises(InvalidInput, match=rf"^x\[1\]: {value} is out of range for UINT8 \[0, 255\]"):
        to_numpy([0, value], UINT8, where="x")


def test_integer_limits():
    assert to_numpy([2**64 - 1], UINT64)[0] == 2**64 - 1
    with pytest.raises(InvalidInput, match="out of range for INT64"):
        to_numpy([2**63], INT64)


def test_floats_for_integer_dtypes_are_refused_even_when_whole():
    with pytest.raises(InvalidInput, match=r"^x\[0\]\[1\]: expected an integer for INT32, got number 2.0"):
        to_numpy([[1, 2.0]], INT32, where="x")


@pytest.mark.parametrize("value, got", [("1.5", "string"), (True, "boolean"), (None, "null"), ({"a": 1}, "an object")])
def test_non_numbers_for_float_dtypes_are_refused(value, got):
    with pytest.raises(InvalidInput, match=rf"^x\[1\]: expected a number for FP32, got {got}"):
        to_numpy([1.0, value], FP32, where="x")


def test_booleans_only_for_bool():
    np.testing.assert_array_equal(to_numpy([True, False], BOOL), [True, False])
    assert to_numpy([True], BOOL).dtype == np.bool_
    with pytest.raises(InvalidInput, match="expected true or false for BOOL, got integer 1"):
        to_numpy([True, 1], BOOL)
    with pytest.raises(InvalidInput, match="expected an integer for INT32, got boolean true"):
        to_numpy([1, True], INT32)  # numpy alone would quietly make True a 1


def test_floats_that_overflow_the_dtype_are_refused():
    with pytest.raises(InvalidInput, match=r"^value\[1\]: 70000.0 is out of range for FP16"):
        to_numpy([1.0, 70000.0], FP16)
    with pytest.raises(InvalidInput, match="out of range for FP64"):
        to_numpy([10**400], FP64)
    # Non-finite values stay allowed: JSON NaN / Infinity tokens are how TF Serving spells them.
    array = to_numpy([math.nan, math.inf], FP32)
    assert math.isnan(array[0]) and array[1] == np.inf


def test_bytes_from_strings_bytes_and_b64_objects():
    array = to_numpy(["héllo", b"\xff\x00"], BYTES)
    assert array.dtype == object and array.tolist() == ["héllo".encode(), b"\xff\x00"]
    decoded = to_numpy([[{"b64": base64.b64encode(b"\x00\x01").decode()}]], BYTES, b64_objects=True)
    assert decoded.shape == (1, 1) and decoded[0, 0] == b"\x00\x01"


def test_b64_objects_only_when_allowed_and_only_for_bytes():
    with pytest.raises(InvalidInput, match=r"expected a string for BYTES, got a \{\"b64\": ...\} object"):
        to_numpy([{"b64": "AA=="}], BYTES)
    with pytest.raises(InvalidInput, match="only for BYTES"):
        to_numpy([{"b64": "AA=="}], FP32, b64_objects=True)
    with pytest.raises(InvalidInput, match=r"^x\[0\]: invalid base64"):
        to_numpy([{"b64": "not base64!"}], BYTES, where="x", b64_objects=True)


def test_numbers_for_bytes_are_refused():
    with pytest.raises(InvalidInput, match="expected a string for BYTES, got number 1.5"):
        to_numpy(["a", 1.5], BYTES)


def test_reshape_to_a_given_shape():
    array = to_numpy([1, 2, 3, 4, 5, 6], INT32, shape=[2, 3])
    assert array.shape == (2, 3) and array[1, 0] == 4
    with pytest.raises(InvalidInput, match=r"6 values do not fill shape \[4, 2\]"):
        to_numpy([1, 2, 3, 4, 5, 6], INT32, shape=[4, 2])
    with pytest.raises(InvalidInput, match="do not fill"):
        to_numpy([1, 2], INT32, shape=[-1, 2])


# ------------------------------------------------------------------------------------------- numpy -> JSON


def test_json_values_are_python_scalars():
    value = to_json_value(np.array([[1, 2]], np.int32), bytes_as_b64=False)
    assert value == [[1, 2]] and type(value[0][0]) is int
    assert to_json_value(np.array([True]), bytes_as_b64=False) == [True]
    assert to_json_value(np.float32(2.5), bytes_as_b64=False) == 2.5


def test_float32_is_written_with_its_shortest_decimal():
    value = to_json_value(np.array([0.1, 3.0], np.float32), bytes_as_b64=False)
    assert json.dumps(value) == "[0.1, 3.0]"
    assert to_json_value(np.array([0.5], ml_dtypes.bfloat16), bytes_as_b64=False) == [0.5]


def test_non_finite_floats_are_written_as_tf_serving_tokens():
    value = to_json_value(np.array([np.nan, np.inf, -np.inf], np.float32), bytes_as_b64=False)
    assert json.dumps(value) == "[NaN, Infinity, -Infinity]"


def test_bytes_as_text_or_b64():
    array = np.array([b"abc", b"\xff"], dtype=object)
    assert to_json_value(array, bytes_as_b64=False) == ["abc", {"b64": "/w=="}]  # not UTF-8: still valid JSON
    assert to_json_value(array, bytes_as_b64=True) == [{"b64": "YWJj"}, {"b64": "/w=="}]
    assert to_json_value(np.array(b"x", dtype=object), bytes_as_b64=False) == "x"
