"""The one JSON loader of request bodies (service/codec/json_body.py)."""

from __future__ import annotations

import json
import math

import pytest

from service.codec import dtypes, tfserving_json, v2
from service.codec.json_body import MAX_DEPTH, load_json, load_object, nesting_depth, overflowed
from service.core.errors import InvalidInput
from service.core.tensors import TensorSpec
from service.transport.http import classify


def nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


@pytest.mark.parametrize("body, depth", [
    (b"1", 0), (b'"[[["', 0), (b"[]", 1), (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4),
    (b'[1, "]]]]", ["[\\"["]]', 2),  # brackets (and escaped quotes) inside strings do not count
    (b"[[], [], [[]]]", 3), (nested(500), 500),
])
def test_nesting_depth(body, depth):
    assert nesting_depth(body) == depth
    if depth < 200:  # what a recursive check can walk
        assert depth == _depth(json.loads(body))


def _depth(value) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_max_depth_is_allowed_one_more_is_refused():
    assert load_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(InvalidInput, match=rf"nested too deeply \({MAX_DEPTH + 1} levels; at most {MAX_DEPTH}\)"):
        load_json(nested(MAX_DEPTH + 1))


@pytest.mark.parametrize("body", [nested(5000), nested(200_000), b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b"[" * 100_000])  # the last is also unterminated: still "too deep", a 400
def test_deep_bodies_are_invalid_input_not_recursion_errors(body):
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load_json(body)


def test_deep_text_inside_a_string_is_only_text():
    text = "[" * 10_000
    assert load_json(json.dumps({"s": text}).encode()) == {"s": text}


@pytest.mark.parametrize("body, message", [
    (b"", "request body is empty"),
    (b"{nope", "invalid JSON: Expecting property name"),
    (b'{"a": "\xff"}', "invalid JSON: request body is not valid UTF-8"),
    ('{"a": 1'.encode("utf-16"), "invalid JSON"),  # JSON bodies are UTF-8 (RFC 8259), as TF Serving reads them
    (b"[1, 2] x", "invalid JSON: Extra data"),
    (b"[1, 2,]", "invalid JSON"),
    (b"inf", "invalid JSON"),
])
def test_malformed_bodies(body, message):
    with pytest.raises(InvalidInput, match=message):
        load_json(body)


def test_nan_and_infinities_are_read_as_tf_serving_writes_them():
    values = load_json(b"[NaN, Infinity, -Infinity, 1e400]")
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, math.inf]


def test_a_utf8_byte_order_mark_is_tolerated_and_str_bodies_are_taken_as_they_are():
    assert load_json(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}
    assert load_json('{"a": "\u00e9"}') == {"a": "\u00e9"}
    assert load_json(memoryview(b"[1]")) == [1]


def test_what_names_the_body():
    with pytest.raises(InvalidInput, match="^header is empty"):
        load_json(b"", what="header")


def test_load_object():
    assert load_object(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(InvalidInput, match="request body must be a JSON object"):
        load_object(b"[1]")


# ------------------------------------------------------------- every body goes through it (issue 13: they drifted)

DEEP = b"[" * 5000 + b"]" * 5000  # ~10 KB: deeper than the interpreter's recursion limit


def _predict(body: bytes):
    return tfserving_json.parse_predict(body, lambda _: {"x": TensorSpec("x", dtypes.FP32, (None,))})


def _v2_infer(body: bytes):
    return v2.parse_infer(body, None)


def _classify(body: bytes):
    return classify._from_json(body)


LOADERS = [_predict, tfserving_json.parse_examples, _v2_infer, _classify]


@pytest.mark.parametrize("load", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("body", [DEEP, b'{"inputs": ' + DEEP + b"}", b'{"a": ' * 3000 + b"1" + b"}" * 3000],
                         ids=["deep list", "deep in an object", "deep objects"])
def test_deep_json_is_invalid_input_on_every_path(load, body):
    # It was InvalidInput from :predict and :classify/:regress, a RecursionError (500) from V2 and /classify.
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load(body)


@pytest.mark.parametrize("load", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("body", [b"", b"{nope", b'{"a": "\xff"}', b"\xef\xbb\xbf\xff"],
                         ids=["empty", "malformed", "invalid utf-8", "bom then garbage"])
def test_malformed_json_is_invalid_input_on_every_path(load, body):
    with pytest.raises(InvalidInput):
        load(body)


# ----------------------------------------------- number literals too large for a double (rapidjson refuses them)

def test_overflowed_tells_a_huge_literal_from_the_infinity_tokens():
    values = load_json(b"[1e999, -1e999, Infinity, -Infinity, 1.5, NaN, 1" + b"0" * 400 + b".5]")
    assert [overflowed(v) for v in values] == [True, True, False, False, False, False, True]


@pytest.mark.parametrize("field", ["instances", "inputs"])
@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1" + "0" * 400 + ".0"])
def test_huge_literals_are_refused_by_the_codecs_that_take_numbers(field, literal):
    # TF Serving answers 400 ("Number too big to be stored in double"); the model never sees an infinity.
    with pytest.raises(InvalidInput, match="a number too large for a double"):
        _predict(f'{{"{field}": [1.0, {literal}]}}'.encode())
    with pytest.raises(InvalidInput, match="a number too large for a double"):
        tfserving_json.examples_to_serialized(*_examples(f'{{"examples": [{{"x": [{literal}]}}]}}'))
    body = f'{{"inputs": [{{"name": "x", "datatype": "FP64", "shape": [1], "data": [{literal}]}}]}}'.encode()
    with pytest.raises(InvalidInput, match=r"^input 'x'\[0\]: a number too large for a double"):
        _v2_infer(body)


def _examples(body: str):
    request = tfserving_json.parse_examples(body)
    return request.examples, request.context


def test_infinities_not_from_json_are_values():
    # gRPC's fp32_contents carry infinities as floats: only JSON documents mark their Infinity tokens.
    assert dtypes.to_numpy([math.inf, 1.0], dtypes.FP32).tolist() == [math.inf, 1.0]


def test_infinity_tokens_still_reach_the_model():
    assert _predict(b'{"instances": [Infinity, -Infinity, NaN]}').inputs["x"].tolist()[:2] == [math.inf, -math.inf]
    assert tfserving_json.examples_to_serialized(*_examples('{"examples": [{"x": [Infinity]}]}')).size == 1
