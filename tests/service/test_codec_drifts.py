"""Issue 13 item 3: the same wire concern parsed by copies that drifted apart. Each test sends one input through
every path that parses it today and asks for one answer. (Moved into the per-module codec tests once the copies
are merged.)"""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest

from service.codec import dtypes, tfserving_json, v2
from service.core.errors import InvalidInput, NotFound
from service.core.tensors import TensorSpec
from service.transport.grpc import v2 as grpc_v2
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.http import classify, common

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
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load(body)


@pytest.mark.parametrize("load", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("body", [b"", b"{nope", b'{"a": "\xff"}', b"\xef\xbb\xbf\xff"],
                         ids=["empty", "malformed", "invalid utf-8", "bom then garbage"])
def test_malformed_json_is_invalid_input_on_every_path(load, body):
    with pytest.raises(InvalidInput):
        load(body)


# Standard base64 as TF Serving's decoder (absl::Base64Unescape) takes it: padding optional, ASCII whitespace skipped.
B64_ACCEPTED = {"aGVsbG8=": b"hello", "aGVsbG8": b"hello", "aGVs\nbG8=": b"hello", " aGVsbG8 ": b"hello",
                "aGk": b"hi", "": b""}
B64_REFUSED = ["aGVsbG8==", "aGVs*bG8=", "aGVsb", "aGVs=bG8", "aGVsbG8\u00a0", "é", "aGVsbG8=x", "a-_x"]


def _b64_tfserving(text: str) -> bytes:
    request = tfserving_json.parse_predict(json.dumps({"instances": [{"b64": text}]}),
                                           lambda _: {"x": TensorSpec("x", dtypes.BYTES, (None,))})
    return request.inputs["x"][0]


def _b64_classify(text: str) -> bytes:
    return classify._from_json(json.dumps({"images": [text]}).encode())[2][0]


@pytest.mark.parametrize("decode", [_b64_tfserving, _b64_classify], ids=["tfserving b64 object", "/classify"])
@pytest.mark.parametrize("text, data", B64_ACCEPTED.items())
def test_base64_accepted_alike(decode, text, data):
    assert decode(text) == data


@pytest.mark.parametrize("decode", [_b64_tfserving, _b64_classify], ids=["tfserving b64 object", "/classify"])
@pytest.mark.parametrize("text", B64_REFUSED)
def test_base64_refused_alike(decode, text):
    with pytest.raises(InvalidInput, match="base64"):
        decode(text)


class _Context:
    """Just enough of grpc.aio.ServicerContext for a servicer method that fails before it runs anything."""

    code = details = None

    async def abort(self, code, details):
        self.code, self.details = code, details
        raise grpc.aio.AbortError()

    def time_remaining(self):
        return None


class _Unreached:
    """An inference façade that must not be called: the request fails while it is decoded."""

    def __getattr__(self, name):
        def unreached(*args, **kwargs):
            raise AssertionError(f"inference.{name} called")
        return unreached


class _Metrics:
    def observe_request(self, *args):
        pass


def _grpc_v2_code(method: str, request) -> tuple[grpc.StatusCode, str]:
    servicer = grpc_v2.InferenceServicer(inference=_Unreached(), metrics=_Metrics(), ready=lambda: True, server_version="0")
    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(getattr(servicer, method)(request, context))
    return context.code, context.details


GRPC_VERSION_REQUESTS = {"ModelReady": lambda raw: pb.ModelReadyRequest(name="m", version=raw),
                         "ModelMetadata": lambda raw: pb.ModelMetadataRequest(name="m", version=raw),
                         "ModelInfer": lambda raw: pb.ModelInferRequest(model_name="m", model_version=raw)}


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "\u00b2", " 1"])
def test_a_version_that_cannot_exist_is_not_found_over_http(raw):
    with pytest.raises(NotFound, match=f"version '{raw}' not found"):
        common.parse_version(raw)


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "\u00b2", " 1"])
@pytest.mark.parametrize("method", GRPC_VERSION_REQUESTS)
def test_a_version_that_cannot_exist_is_not_found_over_grpc_v2(method, raw):
    code, details = _grpc_v2_code(method, GRPC_VERSION_REQUESTS[method](raw))
    assert code == grpc.StatusCode.NOT_FOUND, (code, details)
    assert f"version '{raw}' not found" in details


def test_version_digits_with_leading_zeros():
    assert common.parse_version("00000123") == 123
    assert common.parse_version(None) is None


def test_raw_bool_bytes_other_than_0_and_1_are_refused_over_rest_and_grpc():
    header = json.dumps({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [2],
                                     "parameters": {"binary_data_size": 2}}]}).encode()
    with pytest.raises(InvalidInput, match="0 or 1"):
        v2.parse_infer(header + b"\x02\x07", len(header))
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="BOOL", shape=[2])
    request.raw_input_contents.append(b"\x02\x07")
    code, details = _grpc_v2_code("ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "0 or 1" in details, (code, details)


def test_tfserving_b64_and_classify_agree_on_a_real_image_without_padding():
    data = bytes(range(256)) * 3 + b"x"  # 769 bytes: base64 needs one '=' of padding
    text = base64.b64encode(data).decode().rstrip("=")
    assert _b64_tfserving(text) == _b64_classify(text) == data
