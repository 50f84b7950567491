"""The one base64 codec (service/codec/b64.py): what TF Serving's absl::Base64Unescape accepts, nothing else."""

from __future__ import annotations

import base64
import json
import os

import pytest

from service.codec import dtypes, tfserving_json
from service.codec.b64 import b64_object, decode_b64, encode_b64, is_b64_object
from service.core.errors import InvalidInput
from service.core.tensors import TensorSpec
from service.transport.http import classify

ACCEPTED = {
    "aGVsbG8=": b"hello", "aGVsbG8": b"hello",  # padding complete or left out
    "aGk=": b"hi", "aGk": b"hi", "aA==": b"h", "aA": b"h", "": b"",
    "aGVs\nbG8=": b"hello", " aGVsbG8 ": b"hello", "aGVs\r\n\tbG8\v\f": b"hello", "aGVsbG8 =": b"hello",
    "+/+/": b"\xfb\xff\xbf", "aGl=": b"hi",  # absl ignores the unused low bits of the last character, as Python does
}
REFUSED = {
    "aGVsbG8==": "2 '=' where 1 belong", "aGVs=": "1 '=' where 0 belong", "aA=": "1 '=' where 2 belong",
    "aGVsb": "encodes no bytes", "a": "encodes no bytes",
    "aGVs*bG8=": "invalid base64", "aGVs=bG8": "invalid base64", "aGVsbG8=x": "invalid base64",
    "a-_x": "invalid base64",  # the URL-safe alphabet is another decoder in absl (WebSafeBase64Unescape)
    "aGVsbG8\u00a0": "non-ASCII", "é": "non-ASCII", "aGVsbG8.": "invalid base64", "==": "2 '=' where 0 belong",
}


@pytest.mark.parametrize("text, data", ACCEPTED.items())
def test_accepted_as_tf_serving_does(text, data):
    assert decode_b64(text) == data
    assert decode_b64(text.encode()) == data


@pytest.mark.parametrize("text, message", REFUSED.items())
def test_refused_as_tf_serving_does(text, message):
    with pytest.raises(InvalidInput, match=f"^images\\[3\\]: .*{message}"):
        decode_b64(text, "images[3]")


def test_round_trip_of_every_length_and_the_command_line_wrapping():
    for n in range(40):
        data = os.urandom(n)
        assert decode_b64(encode_b64(data)) == data
        assert decode_b64(encode_b64(data).rstrip("=")) == data
    data = os.urandom(1000)
    wrapped = base64.encodebytes(data).decode()  # 76 columns, as base64(1) writes
    assert "\n" in wrapped and decode_b64(wrapped) == data


def test_b64_objects():
    assert b64_object(b"\xff") == {"b64": "/w=="}
    assert is_b64_object({"b64": "AA=="}) and not is_b64_object({"b64": 1}) and not is_b64_object({"b64": "", "x": 1})


# --------------------------------------------------- both paths decode alike (issue 13: /classify had its own)

def _tfserving(text: str) -> bytes:
    request = tfserving_json.parse_predict(json.dumps({"instances": [{"b64": text}]}),
                                           lambda _: {"x": TensorSpec("x", dtypes.BYTES, (None,))})
    return request.inputs["x"][0]


def _classify(text: str) -> bytes:
    return classify._from_json(json.dumps({"images": [text]}).encode())[2][0]


@pytest.mark.parametrize("decode", [_tfserving, _classify], ids=["tfserving b64 object", "/classify"])
@pytest.mark.parametrize("text, data", ACCEPTED.items())
def test_accepted_alike_on_every_path(decode, text, data):
    assert decode(text) == data


@pytest.mark.parametrize("decode", [_tfserving, _classify], ids=["tfserving b64 object", "/classify"])
@pytest.mark.parametrize("text", REFUSED)
def test_refused_alike_on_every_path(decode, text):
    with pytest.raises(InvalidInput, match="invalid base64"):
        decode(text)


def test_an_unpadded_image_reads_the_same_on_both_paths():
    data = bytes(range(256)) * 3 + b"x"  # 769 bytes: base64 needs one '=' of padding
    text = base64.b64encode(data).decode().rstrip("=")
    assert _tfserving(text) == _classify(text) == data
