"""KServe V2 / Open Inference Protocol tensors for both wires: REST bodies (with Triton's binary tensor data
extension) and the gRPC messages' tensors.

A request body is JSON, optionally followed by raw tensor bytes; the ``Inference-Header-Content-Length`` header says
where the JSON ends. Binary inputs carry ``parameters.binary_data_size`` and take their bytes from that tail in input
order. Numeric tensors are raw little-endian, BOOL one byte per element, BYTES a sequence of 4-byte little-endian
lengths each followed by that many bytes. Responses use the same layout for the outputs asked for as binary.

The raw tensor layout is the same on both wires (gRPC's ``raw_input_contents`` / ``raw_output_contents`` are
the binary extension's bytes), so one decoder (``decode_raw``) and one encoder (``encode_raw``) serve both; gRPC's
typed ``contents`` fields are read by ``decode_contents`` and written by ``encode_contents`` through the dtype table's
``v2_contents`` column (``fill_infer_outputs`` chooses raw or typed for a response).

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and
https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.codec import dtypes
from service.codec.json_body import load_object
from service.core.errors import InvalidInput

_LENGTH = struct.Struct("<I")  # the 4-byte little-endian length before each BYTES element


@dataclass
class V2Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict = field(default_factory=dict)


@dataclass
class V2Request:
    id: str | None
    inputs: list[V2Tensor]
    outputs: list[dict]  # requested outputs as sent, e.g. {"name": "scores", "parameters": {"binary_data": True}}
    parameters: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- BYTES elements

def encode_bytes_elements(values: Sequence[bytes | str]) -> bytes:
    """Length-prefixed encoding of BYTES elements: for each, a 4-byte little-endian length, then the bytes."""
    parts = []
    for value in values:
        if isinstance(value, str):
            value = value.encode("utf-8")
        value = bytes(value)
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def decode_bytes_elements(raw: bytes | memoryview, count: int, *, what: str = "BYTES data") -> list[bytes]:
    """Split length-prefixed BYTES data into exactly ``count`` elements that use up ``raw`` exactly.

    ``what`` names the tensor in error messages (``InvalidInput``).
    """
    view = memoryview(raw)
    out: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(out) == count:
            raise InvalidInput(f"{what}: {len(view) - offset} bytes left after the expected {count} elements")
        if offset + _LENGTH.size > len(view):
            raise InvalidInput(f"{what}: truncated length prefix of element {len(out)}")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise InvalidInput(f"{what}: element {len(out)} claims {length} bytes but only "
                               f"{len(view) - offset} remain")
        out.append(bytes(view[offset:offset + length]))
        offset += length
    if len(out) != count:
        raise InvalidInput(f"{what}: holds {len(out)} elements; the shape needs {count}")
    return out


# ------------------------------------------------------------------------------------------- tensors, both wires

def check_shape(shape: Sequence[int], what: str) -> list[int]:
    """``shape`` as a list, refused (``InvalidInput``) if a dimension is negative or it is too large to hold."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InvalidInput(f"{what}: shape {dims} has a negative dimension")
    dtypes.check_shape_size(dims, what)
    return dims


def decode_raw(raw: bytes | memoryview, dtype: dtypes.DType, shape: Sequence[int], *, what: str) -> np.ndarray:
    """A tensor from its raw bytes: numbers little-endian, BOOL one byte 0 or 1 per element, BYTES
    length-prefixed (``decode_bytes_elements``). The bytes must fill ``shape`` exactly. The array is a writable
    copy: it does not keep a request's buffer alive."""
    count = math.prod(shape)
    if dtype is dtypes.BYTES:
        array = np.empty(count, dtype=object)
        array[:] = decode_bytes_elements(raw, count, what=what)  # slice assignment keeps each element bytes
        return array.reshape(shape)
    itemsize = 1 if dtype is dtypes.BOOL else dtype.numpy.itemsize
    if len(raw) != count * itemsize:
        raise InvalidInput(f"{what}: {len(raw)} bytes of raw data, but shape {list(shape)} of {dtype.name} "
                           f"needs {count * itemsize}")
    if dtype is dtypes.BOOL:
        octets = np.frombuffer(raw, dtype=np.uint8)
        if np.any(octets > 1):
            raise InvalidInput(f"{what}: BOOL raw data must be bytes 0 or 1")
        return octets.astype(np.bool_).reshape(shape)
    # The wire is little-endian whatever the host; astype copies, so the array is writable and owns its memory.
    return np.frombuffer(raw, dtype=dtype.numpy.newbyteorder("<")).astype(dtype.numpy).reshape(shape)


def decode_contents(contents: Any, dtype: dtypes.DType, shape: Sequence[int], *, what: str) -> np.ndarray:
    """A tensor from a gRPC ``InferTensorContents`` (any object with its repeated fields): the field of
    ``dtype`` (the dtype table's ``v2_contents``), every value checked against the dtype and the shape."""
    if dtype.v2_contents is None:
        raise InvalidInput(f"{what}: {dtype.name} must be sent in raw_input_contents")
    return dtypes.to_numpy(list(getattr(contents, dtype.v2_contents)), dtype, shape, where=what)


def decode_input(tensor: Any, raw: bytes | None) -> np.ndarray:
    """A gRPC ``InferInputTensor`` (``name``, ``datatype``, ``shape``, ``contents``) as an array: from ``raw``
    (its ``raw_input_contents`` entry) when given, else from its typed contents."""
    what = f"input '{tensor.name}'"
    try:
        dtype = dtypes.by_v2(tensor.datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc.message}") from None
    shape = check_shape(tensor.shape, what)
    if raw is not None:
        return decode_raw(raw, dtype, shape, what=what)
    return decode_contents(tensor.contents, dtype, shape, what=what)


def output_array(value: Any) -> tuple[np.ndarray, dtypes.DType]:
    """An output as an array and its dtype; strings of any numpy kind become an object array of bytes."""
    array = np.asarray(value)
    if array.dtype.kind in "OSU":  # TF hands strings back as object arrays of bytes; numpy may use 'S' or 'U'
        flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel().tolist()]
        strings = np.empty(len(flat), dtype=object)
        strings[:] = flat
        return strings.reshape(array.shape), dtypes.BYTES
    return array, dtypes.by_numpy(array.dtype)


def encode_raw(array: np.ndarray, dtype: dtypes.DType) -> bytes:
    """The raw bytes of an ``output_array``: the layout ``decode_raw`` reads."""
    if dtype is dtypes.BYTES:
        return encode_bytes_elements(array.ravel().tolist())
    if dtype is dtypes.BOOL:
        return array.astype(np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=dtype.numpy.newbyteorder("<")).tobytes()


def raw_output(value: Any) -> tuple[str, bytes]:
    """An output as raw gRPC contents: its V2 datatype name and raw bytes."""
    array, dtype = output_array(value)
    return dtype.name, encode_raw(array, dtype)


def encode_contents(array: np.ndarray, dtype: dtypes.DType, contents: Any) -> None:
    """Fills a gRPC ``InferTensorContents`` (any object with its repeated fields) with an ``output_array``: the
    field of ``dtype`` (the dtype table's ``v2_contents``), the values in row-major order; ``decode_contents``
    reads it back."""
    if dtype.v2_contents is None:
        raise ValueError(f"{dtype.name} has no typed contents field: it is sent as raw contents")
    values = array.ravel().tolist()  # Python ints, floats, bools and bytes, as the repeated fields take them
    getattr(contents, dtype.v2_contents).extend(values)


def fill_infer_outputs(response: Any, outputs: dict[str, Any], *, raw: bool) -> None:
    """Adds ``outputs`` to a gRPC ``ModelInferResponse``: in ``raw_output_contents`` when the request used
    ``raw_input_contents`` (``raw``), else in each output's typed ``contents``, as KServe's and Triton's servers
    answer. The protocol forbids mixing the two in one response, so an output with no typed field (FP16, BF16)
    makes every output raw."""
    arrays = [(name, *output_array(value)) for name, value in outputs.items()]
    raw = raw or any(dtype.v2_contents is None for _, _, dtype in arrays)
    for name, array, dtype in arrays:
        tensor = response.outputs.add(name=name, datatype=dtype.name, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(encode_raw(array, dtype))
        else:
            encode_contents(array, dtype, tensor.contents)


# ---------------------------------------------------------------------------------------------------------- requests

def parse_infer(body: bytes, header_length: int | str | None) -> V2Request:
    """Parse a V2 ``/infer`` request body into named numpy tensors.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (an int, or the header's text); ``None``
    means the whole body is JSON. Every client mistake raises ``InvalidInput`` naming the field or tensor.
    """
    json_end = _json_end(body, header_length)
    doc = load_object(body[:json_end])
    binary = memoryview(body)[json_end:]

    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    parameters = _parameters(doc, "request")

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")

    inputs: list[V2Tensor] = []
    seen: set[str] = set()
    offset = 0  # into the binary tail, consumed in input order
    for index, raw in enumerate(raw_inputs):
        name, dtype, shape, params = _tensor_header(raw, index)
        if name in seen:
            raise InvalidInput(f"duplicate input name '{name}'")
        seen.add(name)

        size = params.get("binary_data_size")
        has_data = "data" in raw
        if size is not None and has_data:
            raise InvalidInput(f"input '{name}' has both 'data' and parameters.binary_data_size")
        if size is None and not has_data:
            raise InvalidInput(f"input '{name}' has neither 'data' nor parameters.binary_data_size")

        if has_data:
            data = _json_tensor(raw["data"], dtype, shape, name)
        else:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:  # JSON true is not a size
                raise InvalidInput(f"input '{name}': binary_data_size must be a non-negative integer")
            if header_length is None:
                raise InvalidInput(f"input '{name}' has binary_data_size but the request has no "
                                   "Inference-Header-Content-Length header")
            if offset + size > len(binary):
                raise InvalidInput(f"input '{name}': binary_data_size {size} runs past the end of the body "
                                   f"({len(binary) - offset} binary bytes left)")
            data = decode_raw(binary[offset:offset + size], dtype, shape, what=f"input '{name}'")
            offset += size
        inputs.append(V2Tensor(name=name, datatype=dtype.name, shape=shape, data=data, parameters=params))

    if offset != len(binary):
        raise InvalidInput(f"the body has {len(binary)} bytes of binary tensor data but the inputs' "
                           f"binary_data_size add up to {offset}")
    return V2Request(id=request_id, inputs=inputs, outputs=_requested_outputs(doc), parameters=parameters)


def binary_output_names(request: V2Request, output_names: Iterable[str]) -> set[str]:
    """Which of ``output_names`` the client wants as binary data.

    Per Triton's extension: an output's own ``parameters.binary_data`` decides; otherwise the request's
    ``parameters.binary_data_output`` (default false).
    """
    default = request.parameters.get("binary_data_output") is True
    asked = {o["name"]: (o.get("parameters") or {}).get("binary_data") for o in request.outputs}
    chosen = set()
    for name in output_names:
        choice = asked.get(name)
        if (choice is True) if choice is not None else default:
            chosen.add(name)
    return chosen


def _json_end(body: bytes, header_length: int | str | None) -> int:
    if header_length is None:
        return len(body)
    if isinstance(header_length, str):
        text = header_length.strip()
        if not text.isdigit():  # also refuses "-1", "+5" and "1.5"
            raise InvalidInput(f"Inference-Header-Content-Length must be a non-negative integer, "
                               f"got {header_length!r}")
        header_length = int(text)
    if not _is_int(header_length):
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer, got {header_length!r}")
    if header_length < 0:
        raise InvalidInput(f"Inference-Header-Content-Length must not be negative, got {header_length}")
    if header_length > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length {header_length} exceeds the body length {len(body)}")
    return header_length


def _parameters(obj: dict, where: str) -> dict:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}: 'parameters' must be a JSON object")
    return params


def _tensor_header(raw: Any, index: int) -> tuple[str, dtypes.DType, list[int], dict]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"inputs[{index}]: 'name' is missing or not a non-empty string")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input '{name}': 'datatype' is missing or not a string")
    try:
        dtype = dtypes.by_v2(datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"input '{name}': {exc.message}") from None
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers, got {shape!r}")
    check_shape(shape, f"input '{name}'")
    return name, dtype, shape, _parameters(raw, f"input '{name}'")


def _json_tensor(values: Any, dtype: dtypes.DType, shape: list[int], name: str) -> np.ndarray:
    # to_numpy checks every element against the dtype (BYTES: strings, utf-8 encoded) and the count against shape.
    return dtypes.to_numpy(values, dtype, shape, where=f"input '{name}'", from_json=True)


def _requested_outputs(doc: dict) -> list[dict]:
    outputs = doc.get("outputs", [])
    if outputs is None:
        return []
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be a list")
    seen: set[str] = set()
    for index, out in enumerate(outputs):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str) or not out["name"]:
            raise InvalidInput(f"outputs[{index}] must be an object with a non-empty 'name'")
        if out["name"] in seen:
            raise InvalidInput(f"duplicate requested output '{out['name']}'")
        seen.add(out["name"])
        _parameters(out, f"output '{out['name']}'")
    return outputs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size


# --------------------------------------------------------------------------------------------------------- responses

def encode_infer_response(model_name: str, model_version: str | None, outputs: dict[str, np.ndarray], *,
                          request_id: str | None, binary_outputs: set[str]) -> tuple[bytes, int | None]:
    """Encode a V2 ``/infer`` response; returns ``(body, header_length)``.

    Outputs named in ``binary_outputs`` (and BYTES outputs that are not valid utf-8, which JSON cannot carry) go after
    the JSON as binary data with ``parameters.binary_data_size``; then ``header_length`` is the JSON's length, to send
    as ``Inference-Header-Content-Length``. Without binary outputs it is ``None``.
    """
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    entries, tail = [], []
    for name, value in outputs.items():
        array, dtype = output_array(value)
        entry: dict[str, Any] = {"name": name, "datatype": dtype.name, "shape": list(array.shape)}
        data = None if name in binary_outputs else _json_data(array, dtype)
        if data is None:
            raw = encode_raw(array, dtype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = data
        entries.append(entry)
    doc["outputs"] = entries
    head = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if not tail:
        return head, None
    return head + b"".join(tail), len(head)


def _json_data(array: np.ndarray, dtype: dtypes.DType) -> list | None:
    """Flat row-major JSON values, or None when JSON cannot carry them (BYTES that are not utf-8)."""
    if dtype.name == "BYTES":
        try:
            return [v.decode("utf-8") for v in array.ravel().tolist()]
        except UnicodeDecodeError:
            return None
    return dtypes.to_json_value(array.ravel(), bytes_as_b64=False)
