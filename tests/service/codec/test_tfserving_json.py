"""TF Serving REST JSON bodies: :predict (row and columnar), :classify and :regress."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from tensorflow.core.example import example_pb2

from service.codec.dtypes import BYTES, FP32, INT64, UINT8
from service.core.tensors import TensorSpec
from service.codec.tfserving_json import (examples_to_serialized, format_classify, format_predict,
                                          format_regress, parse_examples, parse_predict)
from service.core.errors import InternalError, InvalidInput, NotFound


def signature(*specs: TensorSpec, name: str = "serving_default"):
    """An ``input_specs`` callable knowing one signature, recording the names it was asked for."""
    asked = []

    def input_specs(signature_name: str) -> dict[str, TensorSpec]:
        asked.append(signature_name)
        if signature_name != name:
            raise NotFound(f"no signature '{signature_name}'")
        return {spec.name: spec for spec in specs}

    input_specs.asked = asked
    return input_specs


X = TensorSpec("x", FP32, (None,))
VEC = TensorSpec("a", FP32, (None, 2))
IMG = TensorSpec("image_bytes", BYTES, (None,))
TAG = TensorSpec("tag", BYTES, (None,))
PIX = TensorSpec("pixels", UINT8, (None, 2, 2))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------- parse_predict: good


def test_documented_row_example():
    request = parse_predict(b'{"instances": [2.0, 3.0, 4.0]}', signature(X))
    assert request.signature_name == "serving_default" and request.row_format
    assert list(request.inputs) == ["x"]
    assert request.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(request.inputs["x"], [2.0, 3.0, 4.0])


def test_documented_b64_example():
    body = json.dumps({"instances": [{"b64": b64(b"\xff\xd8jpeg")}, {"b64": b64(b"\x89PNG")}]})
    request = parse_predict(body, signature(IMG))
    assert request.inputs["image_bytes"].tolist() == [b"\xff\xd8jpeg", b"\x89PNG"]


def test_single_input_instances_may_name_the_input():
    request = parse_predict('{"instances": [{"a": [1, 2]}, {"a": [3, 4]}]}', signature(VEC))
    np.testing.assert_array_equal(request.inputs["a"], [[1, 2], [3, 4]])


def test_multi_input_row_format_and_signature_name():
    specs = signature(VEC, TAG, name="two")
    rows = [{"a": [1, 2], "tag": "x"}, {"a": [3, 4], "tag": {"b64": b64(b"\0")}}]
    body = {"signature_name": "two", "instances": rows}
    request = parse_predict(json.dumps(body), specs)
    assert specs.asked == ["two"] and request.signature_name == "two"
    np.testing.assert_array_equal(request.inputs["a"], [[1, 2], [3, 4]])
    assert request.inputs["tag"].tolist() == [b"x", b"\0"]


def test_columnar_single_and_multi_input():
    single = parse_predict('{"inputs": [[1, 2], [3, 4]]}', signature(VEC))
    assert not single.row_format
    np.testing.assert_array_equal(single.inputs["a"], [[1, 2], [3, 4]])
    multi = parse_predict('{"inputs": {"a": [[1, 2]], "tag": ["x"]}}', signature(VEC, TAG))
    np.testing.assert_array_equal(multi.inputs["a"], [[1, 2]])
    assert multi.inputs["tag"].tolist() == [b"x"]


def test_columnar_single_b64_value():
    spec = TensorSpec("image", BYTES, ())  # like tlserve's `preprocess` signature: one encoded image
    request = parse_predict(json.dumps({"inputs": {"b64": b64(b"img")}}), signature(spec))
    assert request.inputs["image"].shape == () and request.inputs["image"].item() == b"img"


def test_unknown_rank_accepts_any_shape():
    request = parse_predict('{"inputs": [[[1]]]}', signature(TensorSpec("x", INT64, None)))
    assert request.inputs["x"].shape == (1, 1, 1)


@pytest.mark.parametrize("row_format", [True, False])
def test_round_trip_single_input(row_format):
    key = "instances" if row_format else "inputs"
    body = {key: [[1.5, 2.0], [3.0, 4.25]]}
    request = parse_predict(json.dumps(body), signature(VEC))
    response = format_predict({"a": request.inputs["a"]}, request.row_format)
    assert response == {("predictions" if row_format else "outputs"): body[key]}


@pytest.mark.parametrize("row_format", [True, False])
def test_round_trip_multi_input(row_format):
    rows = [{"a": [1.0, 2.0], "tag": "x"}, {"a": [3.0, 4.0], "tag": "y"}]
    body = {"instances": rows} if row_format else {"inputs": {"a": [[1.0, 2.0], [3.0, 4.0]], "tag": ["x", "y"]}}
    request = parse_predict(json.dumps(body), signature(VEC, TAG))
    response = format_predict(request.inputs, request.row_format)
    assert response == ({"predictions": rows} if row_format else {"outputs": body["inputs"]})


# ---------------------------------------------------------------------------------------- parse_predict: bad


def test_ragged_instances_name_the_index():
    with pytest.raises(InvalidInput, match=r"^input 'x': instances\[2\]: expected a value, got a list"):
        parse_predict('{"instances": [1.0, 2.0, [3.0]]}', signature(X))
    with pytest.raises(InvalidInput, match=r"^input 'a': instances\[1\]: expected 2 elements like the first, got 3"):
        parse_predict('{"instances": [[1, 2], [1, 2, 3]]}', signature(TensorSpec("a", FP32, None)))


def test_missing_and_unknown_names():
    with pytest.raises(InvalidInput, match=r"^instances\[1\]: missing input 'tag'$"):
        parse_predict('{"instances": [{"a": [1, 2], "tag": "x"}, {"a": [1, 2]}]}', signature(VEC, TAG))
    with pytest.raises(InvalidInput, match=r"^instances\[0\]: unknown input 'tog'; expected 'a', 'tag'$"):
        parse_predict('{"instances": [{"a": [1, 2], "tag": "x", "tog": 1}]}', signature(VEC, TAG))
    with pytest.raises(InvalidInput, match=r"missing input 'tag'"):
        parse_predict('{"inputs": {"a": [[1, 2]]}}', signature(VEC, TAG))
    with pytest.raises(InvalidInput, match=r"^instances\[0\]: missing input 'a', unknown input 'b'; expected 'a'$"):
        parse_predict('{"instances": [{"b": [1, 2]}]}', signature(VEC))


def test_multi_input_needs_objects():
    with pytest.raises(InvalidInput, match=r"^instances\[0\]: expected an object with the inputs 'a', 'tag'"):
        parse_predict('{"instances": [[1, 2]]}', signature(VEC, TAG))
    with pytest.raises(InvalidInput, match=r'"inputs" must be an object'):
        parse_predict('{"inputs": [[1, 2]]}', signature(VEC, TAG))


def test_bad_base64():
    with pytest.raises(InvalidInput, match=r"^input 'image_bytes': instances\[1\]: invalid base64"):
        parse_predict('{"instances": [{"b64": "AAAA"}, {"b64": "%%%%"}]}', signature(IMG))


def test_b64_for_a_float_input():
    with pytest.raises(InvalidInput, match=r"input 'x': instances\[0\]: expected a number for FP32.*only for BYTES"):
        parse_predict('{"instances": [{"b64": "AAAA"}]}', signature(X))


def test_float_for_a_bytes_input():
    with pytest.raises(InvalidInput, match=r"input 'image_bytes': inputs\[1\]: expected a string .* got number 2.5"):
        parse_predict('{"inputs": ["ok", 2.5]}', signature(IMG))


def test_uint8_out_of_range():
    pixels = [[[0, 1], [2, 3]], [[4, 5], [6, 300]]]
    with pytest.raises(InvalidInput, match=r"input 'pixels': instances\[1\]\[1\]\[1\]: 300 is out of range for UINT8"):
        parse_predict(json.dumps({"instances": pixels}), signature(PIX))


def test_shapes_are_not_held_against_the_spec_as_in_tf_serving():
    # TF Serving's own e2e test sends {"instances": [2.0, 3.0, 4.0]} to half_plus_two's [-1, 1] input and gets
    # three predictions: shapes are the JSON's own, and the model refuses what it cannot compute.
    assert parse_predict('{"instances": [2.0, 3.0, 4.0]}', signature(TensorSpec("x", FP32, (None, 1)))
                         ).inputs["x"].shape == (3,)
    assert parse_predict('{"instances": [[1, 2, 3]]}', signature(VEC)).inputs["a"].shape == (1, 3)
    assert parse_predict('{"inputs": [[1, 2, 3]]}', signature(VEC)).inputs["a"].shape == (1, 3)
    assert parse_predict('{"instances": [1, 2, 3]}', signature(TensorSpec("x", FP32, (2,)))).inputs["x"].shape == (3,)


@pytest.mark.parametrize("body, message", [
    ("[1, 2]", "request body must be a JSON object"),
    ('{"instances": [1', "invalid JSON"),
    (b"\xff\xfe\xfd", "invalid JSON"),
    ("", "request body is empty"),
    ('{"instances": [1], "inputs": [1]}', 'exactly one of "instances"'),
    ('{"signature_name": "serving_default"}', 'exactly one of "instances"'),
    ('{"instances": []}', '"instances" must be a non-empty list'),
    ('{"instances": {"x": 1}}', '"instances" must be a non-empty list'),
    ('{"signature_name": 3, "instances": [1]}', '"signature_name" must be a string'),
])
def test_malformed_bodies(body, message):
    with pytest.raises(InvalidInput, match=message):
        parse_predict(body, signature(X))


def test_unknown_signature_propagates_not_found():
    with pytest.raises(NotFound):
        parse_predict('{"signature_name": "nope", "instances": [1]}', signature(X))


# ------------------------------------------------------------------------------------------ format_predict


def test_format_predict_row_shapes():
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    assert format_predict({"scores": scores}, True) == {"predictions": [[0.1, 0.9], [0.8, 0.2]]}
    classes = np.array([[b"cat", b"dog"], [b"dog", b"cat"]], dtype=object)
    response = format_predict({"scores": scores, "classes": classes}, True)
    assert response == {"predictions": [{"scores": [0.1, 0.9], "classes": ["cat", "dog"]},
                                        {"scores": [0.8, 0.2], "classes": ["dog", "cat"]}]}
    json.dumps(response)  # plain python values only


def test_format_predict_columnar_shapes():
    y = np.array([[3.0], [4.0]], np.float32)
    assert format_predict({"y": y}, False) == {"outputs": [[3.0], [4.0]]}
    assert format_predict({"y": y, "n": np.array(2)}, False) == {"outputs": {"y": [[3.0], [4.0]], "n": 2}}


def test_format_predict_bytes_outputs():
    data = np.array([b"\x89PNG", b"text"], dtype=object)
    response = format_predict({"image_bytes": data, "label": data}, True)
    assert response["predictions"][0] == {"image_bytes": {"b64": b64(b"\x89PNG")}, "label": {"b64": b64(b"\x89PNG")}}
    assert response["predictions"][1] == {"image_bytes": {"b64": b64(b"text")}, "label": "text"}


def test_format_predict_refuses_outputs_it_cannot_split():
    with pytest.raises(InternalError, match="different batch sizes"):
        format_predict({"a": np.zeros(2), "b": np.zeros(3)}, True)
    with pytest.raises(InternalError, match="no batch dimension"):
        format_predict({"a": np.zeros(2), "b": np.float32(1)}, True)
    with pytest.raises(InternalError, match="no outputs"):
        format_predict({}, False)


# ---------------------------------------------------------------------------------------- classify/regress


def test_parse_examples():
    body = {"signature_name": "classify_x_to_y", "context": {"site": "a"}, "examples": [{"x": 1.0}, {"x": [2, 3]}]}
    request = parse_examples(json.dumps(body))
    assert request.signature_name == "classify_x_to_y"
    assert request.examples == [{"x": 1.0}, {"x": [2, 3]}] and request.context == {"site": "a"}
    assert parse_examples('{"examples": [{}]}') == ("serving_default", [{}], None)


@pytest.mark.parametrize("body, message", [
    ('{"examples": []}', '"examples" must be a non-empty list'),
    ('{"instances": [1]}', '"examples" must be a non-empty list'),
    ('{"examples": [{}, 3]}', r"examples\[1\]: an example must be an object"),
    ('{"examples": [{}], "context": [1]}', '"context" must be an object'),
    ('[]', "must be a JSON object"),
])
def test_parse_examples_refuses(body, message):
    with pytest.raises(InvalidInput, match=message):
        parse_examples(body)


def test_examples_serialize_to_tf_examples():
    examples = [{"age": 42, "height": [1.5, 2.5], "name": "zoë", "blob": {"b64": b64(b"\x00\xff")}, "ok": True},
                {"age": [1, 2], "site": "own"}]
    serialized = examples_to_serialized(examples, context={"site": "shared", "w": 0.5})
    assert serialized.dtype == object and serialized.shape == (2,)
    first, second = (example_pb2.Example.FromString(s).features.feature for s in serialized)
    assert list(first["age"].int64_list.value) == [42]
    assert list(first["height"].float_list.value) == [1.5, 2.5]
    assert list(first["name"].bytes_list.value) == ["zoë".encode()]
    assert list(first["blob"].bytes_list.value) == [b"\x00\xff"]
    assert list(first["ok"].int64_list.value) == [1]
    assert list(first["site"].bytes_list.value) == [b"shared"] and list(first["w"].float_list.value) == [0.5]
    assert list(second["age"].int64_list.value) == [1, 2]
    assert list(second["site"].bytes_list.value) == [b"own"]  # the example's own feature wins over the context


@pytest.mark.parametrize("value, message", [
    ([1, 2.5], r"examples\[0\]\['f'\]: values mix float and int64"),
    (["a", 1], "values mix bytes and int64"),
    ([[1]], r"examples\[0\]\['f'\]\[0\]: a feature value must be .* got a list"),
    (None, "got null"),
    ({"x": 1}, "got an object"),
    ({"b64": "%%"}, "invalid base64"),
    (2**63, "out of range for an int64 feature"),
    (1e39, "out of range for a float feature"),
])
def test_examples_refuse_bad_features(value, message):
    with pytest.raises(InvalidInput, match=message):
        examples_to_serialized([{"f": value}])


def test_format_classify_like_half_plus_two():
    # TF Serving's own test: classify_x_to_y on x=1.0 answers {"results": [[["", 3.0]]]}
    assert format_classify(None, np.array([[3.0]], np.float32)) == {"results": [[["", 3.0]]]}


def test_format_classify_with_labels():
    classes = np.array([[b"cat", b"dog"], [b"dog", b"cat"]], dtype=object)
    scores = np.array([[0.7, 0.3], [0.6, 0.4]], np.float32)
    assert format_classify(classes, scores) == {"results": [[["cat", 0.7], ["dog", 0.3]], [["dog", 0.6], ["cat", 0.4]]]}
    assert format_classify(classes, None)["results"][1] == [["dog", 0.0], ["cat", 0.0]]
    with pytest.raises(InternalError):
        format_classify(classes, scores[:, :1])
    with pytest.raises(InternalError):
        format_classify(None, None)


def test_format_regress():
    assert format_regress(np.array([[3.0], [4.5]], np.float32)) == {"results": [3.0, 4.5]}
    assert format_regress(np.array([0.1], np.float32)) == {"results": [0.1]}
    with pytest.raises(InternalError, match="regress output"):
        format_regress(np.zeros((2, 2)))
