"""KServe V2 tensors: REST bodies (JSON and binary tensor data, requests and responses) and the gRPC tensors,
one raw decoder and encoder for both."""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace

import grpc
import ml_dtypes
import numpy as np
import pytest

from service.codec import dtypes
from service.codec.v2 import (binary_output_names, check_shape, decode_bytes_elements, decode_contents,
                              decode_input, decode_raw, encode_bytes_elements, encode_contents,
                              encode_infer_response, encode_raw, fill_infer_outputs, output_array, parse_infer,
                              raw_output)
from service.core.errors import InvalidInput
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from tests.service.transport.grpc.servicer_calls import v2_failure


def body_of(doc: dict, *binary: bytes) -> tuple[bytes, int | None]:
    """A request body and its Inference-Header-Content-Length (None without binary parts)."""
    head = json.dumps(doc).encode()
    if not binary:
        return head, None
    return head + b"".join(binary), len(head)


def parse_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """Reads a response back with parse_infer: response outputs have the layout of request inputs."""
    json_end = len(body) if header_length is None else header_length
    head = json.dumps({"inputs": json.loads(body[:json_end])["outputs"]}).encode()
    request = parse_infer(head + body[json_end:], None if header_length is None else len(head))
    return {t.name: t.data for t in request.inputs}


# ------------------------------------------------------------------------------------------------ JSON requests

def test_json_nested_and_flat_data_give_the_same_tensor():
    nested = {"id": "r1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3],
                                      "data": [[1, 2, 3], [4, 5, 6.5]]}]}
    flat = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6.5]}]}
    a, b = parse_infer(*body_of(nested)), parse_infer(*body_of(flat))
    assert a.id == "r1" and b.id is None
    for request in (a, b):
        (x,) = request.inputs
        assert (x.name, x.datatype, x.shape) == ("x", "FP32", [2, 3])
        assert x.data.dtype == np.float32 and x.data.shape == (2, 3)
        np.testing.assert_array_equal(x.data, [[1, 2, 3], [4, 5, 6.5]])


def test_json_request_keeps_outputs_and_parameters():
    doc = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [7], "parameters": {"p": 1}}],
           "outputs": [{"name": "scores", "parameters": {"binary_data": True}}, {"name": "classes"}],
           "parameters": {"binary_data_output": False}}
    request = parse_infer(*body_of(doc))
    assert request.outputs == doc["outputs"]
    assert request.parameters == {"binary_data_output": False}
    assert request.inputs[0].parameters == {"p": 1} and request.inputs[0].data.dtype == np.int64
    assert binary_output_names(request, ["scores", "classes"]) == {"scores"}


def test_binary_data_output_request_parameter_is_the_default():
    doc = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
           "outputs": [{"name": "classes", "parameters": {"binary_data": False}}],
           "parameters": {"binary_data_output": True}}
    assert binary_output_names(parse_infer(*body_of(doc)), ["scores", "classes"]) == {"scores"}


def test_json_bytes_are_utf8_encoded():
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2, 1], "data": [["héllo"], [""]]}]}
    (s,) = parse_infer(*body_of(doc)).inputs
    assert s.data.dtype == object and s.data.shape == (2, 1)
    assert s.data.ravel().tolist() == ["héllo".encode(), b""]


@pytest.mark.parametrize("doc, message", [
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}, "input 'x'"),
    ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}, "out of range"),
    ({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}, "input 'x'.*FP99"),
    ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "input 'x'"),
    ({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}, "'datatype'"),
    ({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, r"inputs\[0\].*'name'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}, "input 'x'.*'shape'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "non-negative"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5], "data": [1]}]}, "'shape'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                 {"name": "x", "datatype": "FP32", "shape": [1], "data": [2]}]}, "duplicate input name 'x'"),
    ({"inputs": []}, "'inputs'"),
    ({"id": "a"}, "'inputs'"),
    ({"id": 5, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, "'id'"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{}]}, "outputs"),
])
def test_invalid_json_requests(doc, message):
    with pytest.raises(InvalidInput, match=message):
        parse_infer(*body_of(doc))


@pytest.mark.parametrize("body, message", [
    (b"[1, 2]", "JSON object"),
    (b"{not json", "invalid JSON"),
    (b"\xff\xfe\x00", "invalid JSON: request body is not valid UTF-8"),
    (b"", "request body is empty"),
])
def test_body_that_is_not_a_json_object(body, message):
    with pytest.raises(InvalidInput, match=message):
        parse_infer(body, None)


# ---------------------------------------------------------------------------------------------- binary requests

def test_fp32_binary_round_trip_with_header_length():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4],
                       "parameters": {"binary_data_size": x.nbytes}}]}
    body, length = body_of(doc, x.astype("<f4").tobytes())
    (got,) = parse_infer(body, length).inputs
    assert got.data.dtype == np.float32 and got.data.shape == (3, 4)
    np.testing.assert_array_equal(got.data, x)
    got.data[0, 0] = 1  # a writable copy, not a view into the request body
    # The header may arrive as the header's text.
    np.testing.assert_array_equal(parse_infer(body, str(length)).inputs[0].data, x)


def test_big_endian_dtypes_are_not_what_the_wire_carries():
    # The wire is little-endian: reading 1.0 written big-endian must not give 1.0.
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}
    (got,) = parse_infer(*body_of(doc, np.array([1], dtype=">f4").tobytes())).inputs
    assert got.data[0] != 1.0


def test_bytes_binary_round_trip_length_prefixed():
    values = [b"abc", b"", b"\x00\xff\x10", "ü".encode()]
    raw = encode_bytes_elements(values)
    assert raw[:7] == struct.pack("<I", 3) + b"abc"
    doc = {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2, 2],
                       "parameters": {"binary_data_size": len(raw)}}]}
    (s,) = parse_infer(*body_of(doc, raw)).inputs
    assert s.data.dtype == object and s.data.shape == (2, 2)
    assert s.data.ravel().tolist() == values
    assert decode_bytes_elements(raw, 4) == values


@pytest.mark.parametrize("raw, count, message", [
    (encode_bytes_elements([b"ab", b"c"]), 3, "2 elements; the shape needs 3"),
    (encode_bytes_elements([b"ab", b"c"]), 1, "left after"),
    (struct.pack("<I", 10) + b"abc", 1, "claims 10 bytes"),
    (encode_bytes_elements([b"ab"]) + b"\x01\x00", 2, "truncated length prefix"),
])
def test_bad_length_prefixed_bytes(raw, count, message):
    with pytest.raises(InvalidInput, match=message):
        decode_bytes_elements(raw, count)


def test_mixed_json_and_binary_inputs_consume_binary_in_order():
    a = np.array([[1, -2], [3, 4]], dtype=np.int16)
    c = np.array([True, False, True])
    strings = encode_bytes_elements([b"x", b"yz"])
    doc = {"inputs": [
        {"name": "a", "datatype": "INT16", "shape": [2, 2], "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "datatype": "FP64", "shape": [2], "data": [0.5, 1.5]},
        {"name": "c", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}},
        {"name": "d", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(strings)}},
    ]}
    got = {t.name: t for t in parse_infer(*body_of(doc, a.tobytes(), c.tobytes(), strings)).inputs}
    assert list(got) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(got["a"].data, a)
    np.testing.assert_array_equal(got["b"].data, [0.5, 1.5])
    assert got["c"].data.dtype == np.bool_ and got["c"].data.tolist() == [True, False, True]
    assert got["d"].data.tolist() == [b"x", b"yz"]


def _one_fp32(size: int | None = 8, shape=(2,), **extra) -> dict:
    tensor = {"name": "x", "datatype": "FP32", "shape": list(shape), **extra}
    if size is not None:
        tensor["parameters"] = {"binary_data_size": size}
    return {"inputs": [tensor]}


@pytest.mark.parametrize("doc, tail, message", [
    (_one_fp32(8), b"\x00" * 12, "add up to 8"),  # bytes left over
    (_one_fp32(8), b"\x00" * 4, "runs past the end"),  # too few bytes
    (_one_fp32(8, shape=(3,)), b"\x00" * 8, "input 'x': 8 bytes.*needs 12"),  # size disagrees with shape
    (_one_fp32(6), b"\x00" * 6, "needs 8"),  # not a whole number of elements
    (_one_fp32(-1), b"", "binary_data_size must be"),
    (_one_fp32(True), b"\x00", "binary_data_size must be"),
    (_one_fp32(8, data=[1.0, 2.0]), b"\x00" * 8, "both"),
    ({"inputs": [{"name": "b", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}}]},
     b"\x01\x02", "BOOL"),
    ({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 7}}]},
     encode_bytes_elements([b"abc"]), "input 's'.*1 elements"),
])
def test_binary_size_mismatches(doc, tail, message):
    body, length = body_of(doc, tail) if tail else (json.dumps(doc).encode(), len(json.dumps(doc).encode()))
    with pytest.raises(InvalidInput, match=message):
        parse_infer(body, length)


def test_binary_input_without_header_length():
    body = json.dumps(_one_fp32(8)).encode()
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        parse_infer(body, None)


@pytest.mark.parametrize("length, message", [
    (-1, "negative"),
    ("-1", "non-negative integer"),
    (10_000, "exceeds the body length"),
    ("abc", "non-negative integer"),
    (1.5, "integer"),
    (True, "integer"),
])
def test_bad_header_length(length, message):
    body, _ = body_of(_one_fp32(8), b"\x00" * 8)
    with pytest.raises(InvalidInput, match=message):
        parse_infer(body, length)


def test_header_length_that_cuts_the_json_is_invalid():
    body, length = body_of(_one_fp32(8), b"\x00" * 8)
    with pytest.raises(InvalidInput, match="invalid JSON"):
        parse_infer(body, length - 1)


# --------------------------------------------------------------------------------------------------- responses

def test_json_only_response():
    outputs = {"scores": np.array([[0.1, 0.9]], dtype=np.float32),
               "classes": np.array([[b"cat", "dög".encode()]], dtype=object),
               "flag": np.array([True, False])}
    body, length = encode_infer_response("digits", "3", outputs, request_id="r9", binary_outputs=set())
    assert length is None
    doc = json.loads(body)
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("digits", "3", "r9")
    assert doc["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.9]},
        {"name": "classes", "datatype": "BYTES", "shape": [1, 2], "data": ["cat", "dög"]},
        {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
    ]
    back = parse_response(body, length)
    np.testing.assert_array_equal(back["scores"], outputs["scores"])
    assert back["classes"].tolist() == outputs["classes"].tolist()


def test_response_without_version_or_id_omits_them():
    body, _ = encode_infer_response("m", None, {"y": np.zeros(1, np.int32)}, request_id=None, binary_outputs=set())
    assert set(json.loads(body)) == {"model_name", "outputs"}


def test_response_with_binary_outputs_parses_back():
    scores = np.random.default_rng(0).random((2, 3)).astype(np.float32)
    labels = np.array([[b"a", b"bb", b"ccc"], [b"d", b"", b"f"]], dtype=object)
    ids = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    body, length = encode_infer_response("m", "1", {"scores": scores, "labels": labels, "ids": ids},
                                         request_id=None, binary_outputs={"scores", "labels"})
    assert length is not None
    doc = json.loads(body[:length])
    entries = {o["name"]: o for o in doc["outputs"]}
    assert "data" not in entries["scores"] and entries["scores"]["parameters"] == {"binary_data_size": 24}
    assert entries["labels"]["parameters"]["binary_data_size"] == 6 * 4 + 8  # prefixes + "abbcccdf"
    assert entries["ids"]["data"] == [1, 2, 3, 4, 5, 6] and "parameters" not in entries["ids"]
    assert len(body) == length + 24 + 32
    back = parse_response(body, length)
    np.testing.assert_array_equal(back["scores"], scores)
    assert back["labels"].tolist() == labels.tolist()
    np.testing.assert_array_equal(back["ids"], ids)


def test_undecodable_bytes_output_is_forced_to_binary():
    raw = np.array([b"\xff\xfe", b"ok"], dtype=object)
    body, length = encode_infer_response("m", None, {"blob": raw}, request_id=None, binary_outputs=set())
    assert length is not None
    (entry,) = json.loads(body[:length])["outputs"]
    assert "data" not in entry and entry["datatype"] == "BYTES"
    assert parse_response(body, length)["blob"].tolist() == [b"\xff\xfe", b"ok"]


def test_numpy_string_arrays_are_bytes_outputs():
    body, _ = encode_infer_response("m", None, {"u": np.array(["x", "yy"]), "s": np.array([b"z"])},
                                    request_id=None, binary_outputs=set())
    outs = json.loads(body)["outputs"]
    assert [(o["datatype"], o["data"]) for o in outs] == [("BYTES", ["x", "yy"]), ("BYTES", ["z"])]


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint64, np.float16, np.float64, np.bool_])
def test_binary_response_round_trip_per_dtype(dtype):
    array = (np.arange(6) % 3).astype(dtype).reshape(3, 2)
    body, length = encode_infer_response("m", None, {"y": array}, request_id=None, binary_outputs={"y"})
    back = parse_response(body, length)["y"]
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


# ------------------------------------------------------------------------------------ tensors, both wires

SAMPLES = {"BOOL": [True, False, True], "UINT8": [0, 7, 255], "UINT16": [0, 7, 65535], "UINT32": [0, 7, 2**32 - 1],
           "UINT64": [0, 7, 2**64 - 1], "INT8": [-128, 0, 127], "INT16": [-1, 0, 2**15 - 1],
           "INT32": [-(2**31), 0, 7], "INT64": [-(2**63), 0, 2**63 - 1], "FP16": [0.5, -2.0, 65504.0],
           "FP32": [0.25, -1.5, 3.0], "FP64": [0.1, -1e300, 2.0], "BF16": [0.5, -2.0, 1.0],
           "BYTES": [b"", b"a\x00b", "é".encode()]}


def _array(dtype: dtypes.DType) -> np.ndarray:
    if dtype is dtypes.BYTES:
        array = np.empty(3, dtype=object)
        array[:] = SAMPLES["BYTES"]
        return array
    return np.array(SAMPLES[dtype.name], dtype=dtype.numpy)


@pytest.mark.parametrize("dtype", dtypes.DTYPES, ids=lambda d: d.name)
def test_raw_round_trip_per_dtype(dtype):
    array, found = output_array(_array(dtype))
    assert found is dtype
    raw = encode_raw(array, dtype)
    back = decode_raw(raw, dtype, [3], what="x")
    assert back.dtype == dtype.numpy and back.flags.writeable
    assert back.base is None or back.base.base is None  # a copy: it does not hold on to the request's bytes
    assert back.tolist() == array.tolist()
    assert raw_output(_array(dtype)) == (dtype.name, raw)


def test_raw_is_little_endian_and_bool_one_byte_each():
    assert encode_raw(np.array([1], np.int32), dtypes.INT32) == b"\x01\x00\x00\x00"
    assert encode_raw(np.array([True, False]), dtypes.BOOL) == b"\x01\x00"
    assert decode_raw(b"\x00\x00\x80\x3f", dtypes.FP32, [1], what="x").tolist() == [1.0]
    assert decode_raw(np.array([2], ">i4").tobytes(), dtypes.INT32, [1], what="x").tolist() == [2 << 24]


@pytest.mark.parametrize("raw", [b"\x02\x07", b"\x01\xff", b"\x00\x02"])
def test_raw_bool_is_strictly_0_or_1(raw):
    with pytest.raises(InvalidInput, match="^x: BOOL raw data must be bytes 0 or 1"):
        decode_raw(raw, dtypes.BOOL, [2], what="x")


@pytest.mark.parametrize("dtype, raw, message", [
    (dtypes.FP32, b"\x00" * 7, "7 bytes of raw data, but shape \\[2\\] of FP32 needs 8"),
    (dtypes.BOOL, b"\x00", "1 bytes of raw data, but shape \\[2\\] of BOOL needs 2"),
    (dtypes.BYTES, encode_bytes_elements([b"a"]), "holds 1 elements; the shape needs 2"),
])
def test_raw_that_does_not_fill_the_shape(dtype, raw, message):
    with pytest.raises(InvalidInput, match=message):
        decode_raw(raw, dtype, [2], what="x")


def test_raw_reshapes_and_takes_a_memoryview():
    raw = memoryview(np.arange(6, dtype="<i8").tobytes())
    assert decode_raw(raw, dtypes.INT64, [2, 3], what="x").tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("dtype", [d for d in dtypes.DTYPES if d.v2_contents], ids=lambda d: d.name)
def test_typed_contents_per_dtype_from_the_proto_or_any_object(dtype):
    values = SAMPLES[dtype.name]
    contents = pb.InferTensorContents()
    getattr(contents, dtype.v2_contents).extend(values)
    for message in (contents, SimpleNamespace(**{dtype.v2_contents: values})):
        array = decode_contents(message, dtype, [3], what="x")
        assert array.dtype == dtype.numpy and array.tolist() == values


@pytest.mark.parametrize("dtype", [d for d in dtypes.DTYPES if d.v2_contents], ids=lambda d: d.name)
def test_typed_contents_round_trip_per_dtype(dtype):
    array, found = output_array(_array(dtype))
    contents = pb.InferTensorContents()
    encode_contents(array, found, contents)
    assert [f.name for f, _ in contents.ListFields()] == [dtype.v2_contents]
    assert decode_contents(contents, dtype, [3], what="x").tolist() == array.tolist()


def test_infer_outputs_are_typed_unless_the_request_was_raw():
    outputs = {"y": np.array([[3.0], [4.0]], np.float32), "classes": np.array([b"a", b"b"], dtype=object)}
    typed = pb.ModelInferResponse()
    fill_infer_outputs(typed, outputs, raw=False)
    assert not typed.raw_output_contents
    assert [(t.name, t.datatype, list(t.shape)) for t in typed.outputs] == [("y", "FP32", [2, 1]),
                                                                             ("classes", "BYTES", [2])]
    assert list(typed.outputs[0].contents.fp32_contents) == [3.0, 4.0]
    assert list(typed.outputs[1].contents.bytes_contents) == [b"a", b"b"]
    raw = pb.ModelInferResponse()
    fill_infer_outputs(raw, outputs, raw=True)
    assert [t.HasField("contents") for t in raw.outputs] == [False, False]
    assert list(raw.raw_output_contents) == [encode_raw(outputs["y"], dtypes.FP32),
                                             encode_bytes_elements([b"a", b"b"])]


def test_infer_outputs_without_a_contents_field_make_every_output_raw():
    """FP16 and BF16 have no typed field, and the protocol forbids mixing raw and typed outputs in one response."""
    response = pb.ModelInferResponse()
    fill_infer_outputs(response, {"a": np.array([1.0], np.float16), "b": np.array([1.0], np.float32)}, raw=False)
    assert len(response.raw_output_contents) == 2 and not any(t.HasField("contents") for t in response.outputs)


def test_typed_contents_are_checked_against_dtype_and_shape():
    with pytest.raises(InvalidInput, match="^x: 1 values do not fill shape \\[2\\]"):
        decode_contents(SimpleNamespace(fp32_contents=[1.0]), dtypes.FP32, [2], what="x")
    with pytest.raises(InvalidInput, match="out of range for UINT8"):
        decode_contents(SimpleNamespace(uint_contents=[256]), dtypes.UINT8, [1], what="x")
    for dtype in (dtypes.FP16, dtypes.BF16):
        with pytest.raises(InvalidInput, match=f"^x: {dtype.name} must be sent in raw_input_contents"):
            decode_contents(pb.InferTensorContents(), dtype, [0], what="x")


def test_decode_input_from_a_grpc_tensor():
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 1])
    tensor.contents.fp32_contents.extend([2.0, 4.0])
    assert decode_input(tensor, None).tolist() == [[2.0], [4.0]]
    assert decode_input(tensor, np.array([1, 2], "<f4").tobytes()).tolist() == [[1.0], [2.0]]  # raw wins
    bf16 = request.inputs.add(name="h", datatype="BF16", shape=[1])
    assert decode_input(bf16, np.array([1.5], ml_dtypes.bfloat16).tobytes()).tolist() == [1.5]


@pytest.mark.parametrize("datatype, shape, message", [
    ("NOPE", [1], "^input 'x': unknown datatype 'NOPE'"),
    ("FP32", [-1, 2], "^input 'x': shape \\[-1, 2\\] has a negative dimension"),
    ("FP32", [2**31, 2**40, 0], "^input 'x': shape .* is too large"),
])
def test_decode_input_refuses_bad_headers(datatype, shape, message):
    tensor = pb.ModelInferRequest().inputs.add(name="x", datatype=datatype, shape=shape)
    with pytest.raises(InvalidInput, match=message):
        decode_input(tensor, b"")


def test_check_shape():
    assert check_shape((2, 0, 3), "x") == [2, 0, 3]


def test_output_array_makes_strings_bytes():
    array, dtype = output_array(np.array(["é", "b"]))
    assert dtype is dtypes.BYTES and array.dtype == object and array.tolist() == ["é".encode(), b"b"]
    assert raw_output(np.array([b"ab"]))[1] == encode_bytes_elements([b"ab"])


def test_raw_bool_bytes_other_than_0_and_1_are_refused_over_rest_and_grpc():
    # Issue 13: REST refused them, gRPC's own decoder took any byte as a bool.
    header = json.dumps({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [2],
                                     "parameters": {"binary_data_size": 2}}]}).encode()
    with pytest.raises(InvalidInput, match="0 or 1"):
        parse_infer(header + b"\x02\x07", len(header))
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="BOOL", shape=[2])
    request.raw_input_contents.append(b"\x02\x07")
    code, details = v2_failure("ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "0 or 1" in details, (code, details)
