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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.codec import dtypes
from service.codec.json_body import load_object
from service.core.dataplane import SharedMemoryRef, SharedMemoryRegion
from service.core.errors import InvalidInput, NotImplementedYet, shown

_LENGTH = struct.Struct("<I")  # the 4-byte little-endian length before each BYTES element
# Triton's shared-memory parameters of an input or a requested output (extension_shared_memory.md)
SHM_REGION, SHM_BYTE_SIZE, SHM_OFFSET = "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"
ReadShared = Callable[[SharedMemoryRef], bytes]  # the data plane's shared_memory_read
WriteShared = Callable[[SharedMemoryRef, bytes], None]  # and its shared_memory_write


@dataclass
class V2Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # read from its shared-memory region when the tensor names one
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
    dtype, shape = _grpc_header(tensor, what)
    if raw is not None:
        return decode_raw(raw, dtype, shape, what=what)
    return decode_contents(tensor.contents, dtype, shape, what=what)


def _grpc_header(tensor: Any, what: str) -> tuple[dtypes.DType, list[int]]:
    try:
        dtype = dtypes.by_v2(tensor.datatype)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc.message}") from None
    return dtype, check_shape(tensor.shape, what)


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


def fill_infer_outputs(response: Any, outputs: dict[str, Any], *, raw: bool,
                       shared: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Adds ``outputs`` to a gRPC ``ModelInferResponse``: in ``raw_output_contents`` when the request used
    ``raw_input_contents`` (``raw``), else in each output's typed ``contents``, as KServe's and Triton's servers
    answer. The protocol forbids mixing the two in one response, so an output with no typed field (FP16, BF16)
    makes every output raw. An output in ``shared`` (``write_shared_outputs``) carries its parameters and no data
    (an empty raw entry keeps the raw entries aligned with the outputs, as Triton's clients index them)."""
    shared = shared or {}
    arrays = [(name, *output_array(value)) for name, value in outputs.items()]
    raw = raw or any(dtype.v2_contents is None for name, _, dtype in arrays if name not in shared)
    for name, array, dtype in arrays:
        tensor = response.outputs.add(name=name, datatype=dtype.name, shape=list(array.shape))
        if name in shared:
            for key, value in shared[name].items():
                setattr(tensor.parameters[key], "string_param" if isinstance(value, str) else "int64_param", value)
            if raw:
                response.raw_output_contents.append(b"")
        elif raw:
            response.raw_output_contents.append(encode_raw(array, dtype))
        else:
            encode_contents(array, dtype, tensor.contents)


# ------------------------------------------------------------------------------------------- shared memory

def parameter_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A gRPC ``map<string, InferParameter>`` as plain values (what REST's JSON ``parameters`` already are)."""
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = None if choice is None else getattr(parameter, choice)
    return values


def shared_memory_ref(parameters: Mapping[str, Any], what: str) -> SharedMemoryRef | None:
    """The shared-memory region a tensor's parameters name, or None when they name none. The region and its byte
    size go together; the offset (into the region) defaults to 0."""
    region, size = parameters.get(SHM_REGION), parameters.get(SHM_BYTE_SIZE)
    offset = parameters.get(SHM_OFFSET, 0)
    if region is None and size is None:
        if SHM_OFFSET in parameters:
            raise InvalidInput(f"{what}: {SHM_OFFSET} without {SHM_REGION}")
        return None
    if region is None or size is None:
        raise InvalidInput(f"{what}: {SHM_REGION} and {SHM_BYTE_SIZE} must be given together")
    if not isinstance(region, str) or not region:
        raise InvalidInput(f"{what}: {SHM_REGION} must be a non-empty string")
    for key, value in ((SHM_BYTE_SIZE, size), (SHM_OFFSET, offset)):
        if not _is_int(value) or value < 0:
            raise InvalidInput(f"{what}: {key} must be a non-negative integer, got {value!r}")
    return SharedMemoryRef(region, size, offset)


def shared_memory_region(name: str, key: Any, offset: Any, byte_size: Any) -> SharedMemoryRegion:
    """A register request's fields (REST's JSON body or gRPC's message) checked: key a string, sizes integers."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"shared memory region '{shown(name)}': 'key' must be a non-empty string")
    for field_name, value in (("offset", offset), ("byte_size", byte_size)):
        if not _is_int(value) or value < 0:
            raise InvalidInput(f"shared memory region '{shown(name)}': '{field_name}' must be a non-negative "
                               f"integer, got {value!r}")
    return SharedMemoryRegion(name, key, offset, byte_size)


def parse_shared_memory_register(body: bytes, name: str) -> SharedMemoryRegion:
    """REST's ``{"key": ..., "offset": ..., "byte_size": ...}`` (offset optional, 0) for the region ``name``."""
    doc = load_object(body)
    return shared_memory_region(name, doc.get("key"), doc.get("offset", 0), doc.get("byte_size"))


def shared_memory_status_json(regions: Iterable[SharedMemoryRegion]) -> list[dict[str, Any]]:
    return [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in regions]


def read_shared_input(ref: SharedMemoryRef, dtype: dtypes.DType, shape: Sequence[int], read: ReadShared | None, *,
                      what: str) -> np.ndarray:
    """A tensor from its shared-memory region through ``read``; a numeric tensor's byte size must match its shape
    exactly (checked before anything is read)."""
    if read is None:
        raise InvalidInput(f"{what}: shared memory is not available on this endpoint")
    if dtype is not dtypes.BYTES:
        need = math.prod(shape) * (1 if dtype is dtypes.BOOL else dtype.numpy.itemsize)
        if ref.byte_size != need:
            raise InvalidInput(f"{what}: {SHM_BYTE_SIZE} is {ref.byte_size}, but shape {list(shape)} of "
                               f"{dtype.name} needs {need}")
    return decode_raw(read(ref), dtype, shape, what=what)


def write_shared_outputs(outputs: Mapping[str, Any], refs: Mapping[str, SharedMemoryRef],
                         write: WriteShared) -> dict[str, dict[str, Any]]:
    """Writes each output named in ``refs`` into its region (raw layout, ``encode_raw``) and returns, per output,
    the parameters its response entry carries instead of data (region, bytes written, offset)."""
    answered = {}
    for name, ref in refs.items():
        if name not in outputs:
            raise InvalidInput(f"output '{name}' is not an output of this signature")
        raw = encode_raw(*output_array(outputs[name]))
        write(ref, raw)
        answered[name] = {SHM_REGION: ref.region, SHM_BYTE_SIZE: len(raw),
                          **({SHM_OFFSET: ref.offset} if ref.offset else {})}
    return answered


def requested_shared_outputs(requested: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, SharedMemoryRef]:
    """The requested outputs (name, plain parameters) to be written into shared memory, with their regions."""
    refs = {}
    for name, parameters in requested:
        ref = shared_memory_ref(parameters, f"output '{name}'")
        if ref is not None:
            refs[name] = ref
    return refs


def decode_grpc_inputs(request: Any, read: ReadShared | None) -> dict[str, np.ndarray]:
    """A gRPC ``ModelInferRequest``'s inputs as arrays: each from its shared-memory region, its typed contents or
    the next ``raw_input_contents`` entry (raw entries belong, in order, to the inputs not in shared memory)."""
    raw = list(request.raw_input_contents)
    refs = [shared_memory_ref(parameter_values(t.parameters), f"input '{t.name}'") for t in request.inputs]
    in_request = sum(ref is None for ref in refs)
    if raw and len(raw) != in_request:
        raise InvalidInput(f"{len(raw)} raw_input_contents for {in_request} inputs not in shared memory")
    inputs: dict[str, np.ndarray] = {}
    entries = iter(raw)
    for tensor, ref in zip(request.inputs, refs, strict=True):
        if tensor.name in inputs:
            raise InvalidInput(f"input '{tensor.name}' appears twice")
        if ref is None:
            inputs[tensor.name] = decode_input(tensor, next(entries) if raw else None)
            continue
        what = f"input '{tensor.name}'"
        if tensor.HasField("contents"):
            raise InvalidInput(f"{what}: names a shared memory region and has contents too")
        dtype, shape = _grpc_header(tensor, what)
        inputs[tensor.name] = read_shared_input(ref, dtype, shape, read, what=what)
    return inputs


# ---------------------------------------------------------------------------------------------------------- requests

def parse_infer(body: bytes, header_length: int | str | None, read_shared: ReadShared | None = None) -> V2Request:
    """Parse a V2 ``/infer`` request body into named numpy tensors.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (an int, or the header's text); ``None``
    means the whole body is JSON. An input whose parameters name a shared-memory region is read through
    ``read_shared``. Every client mistake raises ``InvalidInput`` naming the field or tensor.
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
        ref = shared_memory_ref(params, f"input '{name}'")
        if ref is not None:
            if has_data or size is not None:
                raise InvalidInput(f"input '{name}' names a shared memory region and has data too")
            data = read_shared_input(ref, dtype, shape, read_shared, what=f"input '{name}'")
            inputs.append(V2Tensor(name=name, datatype=dtype.name, shape=shape, data=data, parameters=params))
            continue
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


def parse_index_request(body: bytes) -> bool:
    """A repository index request's ``{"ready": true}`` (only the ready versions); an empty body asks for all."""
    if not body.strip():
        return False
    ready = load_object(body).get("ready", False)
    if not isinstance(ready, bool):
        raise InvalidInput(f"'ready' must be true or false, got {ready!r}")
    return ready


def check_load_parameters(names: Iterable[str]) -> None:
    """A repository load's parameters (REST's ``{"parameters": {...}}``, gRPC's map): Triton's ``config`` override and
    ``file:`` contents are not supported (versions load from the repository as they are), and silently ignoring them
    would serve something else than the client asked for."""
    unsupported = sorted(names)
    if unsupported:
        raise NotImplementedYet(f"repository load parameters are not supported ({', '.join(map(shown, unsupported))}): "
                                "tlserve loads a model's versions from the repository as they are")


def load_parameter_names(body: bytes) -> list[str]:
    """The parameter names of REST's load body (an empty body has none)."""
    if not body.strip():
        return []
    parameters = _parameters(load_object(body), "load request")
    return list(parameters)


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
                          request_id: str | None, binary_outputs: set[str],
                          shared: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[bytes, int | None]:
    """Encode a V2 ``/infer`` response; returns ``(body, header_length)``.

    Outputs named in ``binary_outputs`` (and BYTES outputs that are not valid utf-8, which JSON cannot carry) go after
    the JSON as binary data with ``parameters.binary_data_size``; then ``header_length`` is the JSON's length, to send
    as ``Inference-Header-Content-Length``. Without binary outputs it is ``None``. Outputs in ``shared``
    (``write_shared_outputs``) carry their shared-memory parameters and no data.
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
        if shared and name in shared:
            entry["parameters"] = dict(shared[name])
            entries.append(entry)
            continue
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
