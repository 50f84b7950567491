"""Property-based tests over the HTTP APIs against a real server: generated TF Serving REST bodies, V2 JSON and
binary requests, /classify JSON and multipart forms and model names in URLs never get a 500, and the server
answers a good request afterwards. Generated inputs per test: ``fuzzing.EXAMPLES`` (150 by default)."""

from __future__ import annotations

import base64
import json
import struct
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.security.fuzzing import SENT, assert_http_coped, fuzz_settings

MODELS = st.sampled_from(["shapes", "half_plus_two", "nope"])
SIGNATURES = st.sampled_from(["", "serving_default", "classify", "preprocess", "pixels", "regress_x_to_y",
                              "classify_x_to_y", "nope"])
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20))


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


B64 = st.binary(max_size=64).map(_b64) | st.sampled_from([{"b64": "!!"}, {"b64": 3}, {"b64": None}, {"b64": ""}])
JSON = st.recursive(SCALARS | B64, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["images", "x", "inputs", "image", "pixels", "b64", "image/encoded"]) | st.text(max_size=8),
    inner, max_size=4), max_leaves=12)
NUMBERS = st.recursive(st.floats(-1e6, 1e6) | st.integers(-300, 300), lambda inner: st.lists(inner, max_size=3),
                       max_leaves=10)


def _post_json(client, path, doc):
    return client.post(path, content=json.dumps(doc, allow_nan=True), headers={"content-type": "application/json"})


@pytest.fixture(autouse=True, scope="module")
def still_serving_afterwards(client, images):
    yield
    print(f"\nhypothesis: {SENT['http']} generated HTTP requests, none answered with a server error")
    assert client.get("/readyz").status_code == 200
    answer = client.post("/classify", json={"model": "shapes", "images": [base64.b64encode(images[0]).decode()]})
    assert answer.status_code == 200, answer.text


@fuzz_settings
@given(model=MODELS, verb=st.sampled_from([":predict", ":classify", ":regress"]), signature=SIGNATURES,
       body=st.fixed_dictionaries({}, optional={"instances": JSON | st.lists(NUMBERS | B64, max_size=3),
                                                "inputs": JSON, "examples": JSON, "context": JSON}))
def test_tfserving_rest_bodies(client, model, verb, signature, body):
    if signature:
        body["signature_name"] = signature
    assert_http_coped(_post_json(client, f"/v1/models/{model}{verb}", body))


@fuzz_settings
@given(path=st.sampled_from(["/v1/models/shapes:predict", "/v2/models/shapes/infer", "/classify",
                             "/v1/models/half_plus_two:classify"]),
       body=st.binary(max_size=200), content_type=st.sampled_from(
           ["application/json", "application/octet-stream", "multipart/form-data; boundary=xyz", "text/plain", ""]))
def test_raw_bodies(client, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert_http_coped(client.post(path, content=body, headers=headers))


V2_TYPES = st.sampled_from(["BOOL", "UINT8", "INT8", "INT32", "INT64", "UINT64", "FP16", "BF16", "FP32", "FP64",
                            "BYTES", "STRING", "fp32", ""])
V2_TENSOR = st.fixed_dictionaries(
    {"name": st.sampled_from(["images", "x", "pixels", "inputs", "image"]) | st.text(max_size=6),
     "datatype": V2_TYPES | SCALARS,
     "shape": st.lists(st.integers(-3, 5) | st.sampled_from([2**31, 2**62]), max_size=4) | SCALARS},
    optional={"data": JSON | NUMBERS | st.lists(st.text(max_size=5), max_size=4), "parameters": JSON})


@fuzz_settings
@given(model=MODELS, version=st.sampled_from(["", "/versions/1", "/versions/123", "/versions/0x1"]),
       doc=st.fixed_dictionaries({"inputs": st.lists(V2_TENSOR, max_size=3) | JSON},
                                 optional={"outputs": JSON, "parameters": JSON, "id": SCALARS}))
def test_v2_json(client, model, version, doc):
    assert_http_coped(_post_json(client, f"/v2/models/{model}{version}/infer", doc))


@fuzz_settings
@given(model=MODELS, tensor=V2_TENSOR, tail=st.binary(max_size=120), length_fix=st.integers(-5, 5),
       items=st.lists(st.binary(max_size=40), max_size=3), use_items=st.booleans())
def test_v2_binary(client, model, tensor, tail, length_fix, items, use_items):
    tensor = {k: v for k, v in tensor.items() if k != "data"}
    if use_items:  # well-framed BYTES elements (length-prefixed), possibly mislabelled
        tail = b"".join(struct.pack("<I", len(i)) + i for i in items)
    tensor.setdefault("parameters", {})
    if isinstance(tensor["parameters"], dict):
        tensor["parameters"]["binary_data_size"] = len(tail) + length_fix
    header = json.dumps({"inputs": [tensor]}).encode()
    response = client.post(f"/v2/models/{model}/infer", content=header + tail,
                           headers={"Inference-Header-Content-Length": str(len(header) + length_fix),
                                    "content-type": "application/octet-stream"})
    assert_http_coped(response)


@fuzz_settings
@given(doc=st.fixed_dictionaries({}, optional={
    "model": MODELS | SCALARS, "version": SCALARS | st.sampled_from(["1", "01", "-1", "1e3"]),
    "images": st.lists(st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()) | SCALARS, max_size=3)
    | SCALARS, "top_k": SCALARS | st.integers(-3, 2**65)}))
def test_classify_json(client, doc):
    assert_http_coped(_post_json(client, "/classify", doc))


@fuzz_settings
@given(fields=st.dictionaries(st.sampled_from(["model", "top_k", "version", "images", "other"]),
                              st.text(max_size=10), max_size=4),
       files=st.lists(st.tuples(st.sampled_from(["images", "model", "x"]), st.binary(max_size=64)), max_size=3))
def test_classify_multipart(client, fields, files):
    response = client.post("/classify", data=fields, files=[(k, ("f", v, "application/octet-stream"))
                                                            for k, v in files] or None)
    assert_http_coped(response)


NAMES = st.text(max_size=40) | st.sampled_from(["../shapes", "..", "/etc/passwd", "shapes\x00", "shapes/../shapes",
                                                "%2e%2e%2fshapes", "a" * 5000, "shapes%00", "~root", "\\..\\x"])


def _segment(text: str) -> str:
    """One URL path segment; dots too are escaped, or the client would resolve '..' before sending."""
    return quote(text, safe="").replace(".", "%2E")


@fuzz_settings
@given(name=NAMES, version=st.text(max_size=12) | st.sampled_from(["1", "00000123", "99999999999999999999999"]),
       route=st.sampled_from(["/v1/models/{m}", "/v1/models/{m}/versions/{v}", "/v1/models/{m}/labels/{v}",
                              "/v1/models/{m}/metadata", "/v2/models/{m}", "/v2/models/{m}/versions/{v}/ready",
                              "/v1/models/{m}/versions/{v}:predict", "/v2/repository/models/{m}/load",
                              "/v2/models/{m}/versions/{v}/config", "/v2/models/{m}/versions/{v}/stats"]))
def test_model_names_and_versions_in_urls(client, name, version, route):
    path = route.format(m=_segment(name), v=_segment(version))
    method = "POST" if route.endswith((":predict", "/load")) else "GET"
    response = client.request(method, path, json={"instances": [1.0]} if method == "POST" else None)
    assert_http_coped(response)
    if response.status_code == 200 and method == "GET":
        assert name in ("shapes", "half_plus_two"), (name, response.text[:200])
