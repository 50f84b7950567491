"""The one dtype table of the project: KServe V2 names, TensorFlow enums, numpy dtypes and JSON values.

Every codec converts through this module, so a type is named, checked and written to JSON in one place.
The canonical name of a type is its KServe V2 datatype name (``FP32``, ``BYTES``, ...).

JSON conventions shared by the codecs:
- ``BYTES`` tensors are numpy ``object`` arrays of python ``bytes``; in JSON they are strings (UTF-8) or, where a
  codec allows it, ``{"b64": "<base64>"}`` objects (TF Serving's convention for binary data).
- Floats are written as python floats; NaN and infinities stay python floats, which ``json.dumps`` writes as the
  ``NaN`` / ``Infinity`` / ``-Infinity`` tokens that TF Serving writes too (a transport must therefore encode with
  ``allow_nan=True``).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes  # a TensorFlow dependency; numpy itself has no bfloat16
import numpy as np

# tensorflow.core is a package of `tensorflow`, so this still runs tensorflow/__init__; it is what TF offers.
from tensorflow.core.framework import types_pb2

from service.codec.b64 import b64_object, decode_b64, is_b64_object
from service.codec.json_body import overflowed
from service.core.errors import InvalidInput


@dataclass(frozen=True)
class DType:
    """One tensor element type under all its names, one column per wire field that carries it."""

    name: str  # canonical: the KServe V2 datatype name
    tf_enum: int  # tensorflow.core.framework.types_pb2 value, e.g. types_pb2.DT_FLOAT
    tf_name: str  # "DT_FLOAT"
    numpy: np.dtype  # BYTES -> np.dtype(object), holding python bytes
    tf_field: str  # the TensorProto typed value field TF fills for it (Tensor::AsProtoField): "float_val", ...
    v2_contents: str | None  # the V2 gRPC InferTensorContents field; None: only raw contents carry it

    @property
    def model_config_type(self) -> str:
        """The type's name in a Triton model configuration (its DataType enum): ``TYPE_`` and the V2 name, but
        ``TYPE_STRING`` for BYTES."""
        return "TYPE_STRING" if self.name == "BYTES" else f"TYPE_{self.name}"

    @property
    def is_integer(self) -> bool:
        return self.name in _INTEGER_NAMES

    @property
    def is_float(self) -> bool:
        return self.name in _FLOAT_NAMES


def _dtype(name: str, tf_name: str, numpy_type: Any, tf_field: str, v2_contents: str | None) -> DType:
    return DType(name, types_pb2.DataType.Value(tf_name), tf_name, np.dtype(numpy_type), tf_field, v2_contents)


# half_val holds FP16 and BF16 as their 16-bit patterns; V2 carries them only as raw contents.
#               V2 name   TF name        numpy               TensorProto   V2 gRPC contents
BOOL   = _dtype("BOOL",   "DT_BOOL",     np.bool_,           "bool_val",   "bool_contents")
UINT8  = _dtype("UINT8",  "DT_UINT8",    np.uint8,           "int_val",    "uint_contents")
UINT16 = _dtype("UINT16", "DT_UINT16",   np.uint16,          "int_val",    "uint_contents")
UINT32 = _dtype("UINT32", "DT_UINT32",   np.uint32,          "uint32_val", "uint_contents")
UINT64 = _dtype("UINT64", "DT_UINT64",   np.uint64,          "uint64_val", "uint64_contents")
INT8   = _dtype("INT8",   "DT_INT8",     np.int8,            "int_val",    "int_contents")
INT16  = _dtype("INT16",  "DT_INT16",    np.int16,           "int_val",    "int_contents")
INT32  = _dtype("INT32",  "DT_INT32",    np.int32,           "int_val",    "int_contents")
INT64  = _dtype("INT64",  "DT_INT64",    np.int64,           "int64_val",  "int64_contents")
FP16   = _dtype("FP16",   "DT_HALF",     np.float16,         "half_val",   None)
FP32   = _dtype("FP32",   "DT_FLOAT",    np.float32,         "float_val",  "fp32_contents")
FP64   = _dtype("FP64",   "DT_DOUBLE",   np.float64,         "double_val", "fp64_contents")
BF16   = _dtype("BF16",   "DT_BFLOAT16", ml_dtypes.bfloat16, "half_val",   None)
BYTES  = _dtype("BYTES",  "DT_STRING",   object,             "string_val", "bytes_contents")

DTYPES: tuple[DType, ...] = (BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64,
                             BF16, BYTES)

_INTEGER_NAMES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_FLOAT_NAMES = frozenset({"FP16", "FP32", "FP64", "BF16"})
_BY_V2 = {d.name: d for d in DTYPES}
_BY_TF_ENUM = {d.tf_enum: d for d in DTYPES}
_BY_NUMPY = {d.numpy: d for d in DTYPES if d is not BYTES}


def by_v2(name: str) -> DType:
    """The dtype with this KServe V2 datatype name (exact, upper case); ``InvalidInput`` if there is none."""
    found = _BY_V2.get(name)  # a non-string name (from JSON) finds nothing too
    if found is None:
        raise InvalidInput(f"unknown datatype {name!r}; expected one of {', '.join(_BY_V2)}")
    return found


def by_tf_enum(value: int) -> DType:
    """The dtype of a ``types_pb2.DataType`` value; ``InvalidInput`` if it is unknown or not supported."""
    found = _BY_TF_ENUM.get(value)
    if found is None:
        try:
            label = types_pb2.DataType.Name(value)
        except ValueError:
            label = str(value)
        raise InvalidInput(f"unsupported TensorFlow dtype {label}")
    return found


def by_numpy(dtype: Any) -> DType:
    """The dtype of a numpy dtype (or array, or anything ``np.dtype`` accepts); object/bytes/str arrays are BYTES."""
    if isinstance(dtype, np.ndarray):
        dtype = dtype.dtype
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InvalidInput(f"not a numpy dtype: {dtype!r}") from None
    if dtype.kind in "OSU":
        return BYTES
    found = _BY_NUMPY.get(dtype)
    if found is None:
        raise InvalidInput(f"unsupported numpy dtype {dtype}")
    return found


# ------------------------------------------------------------------------------------------- JSON -> numpy


def to_numpy(values: Any, dtype: DType, shape: Any = None, *, where: str = "value",
             b64_objects: bool = False, from_json: bool = False) -> np.ndarray:
    """Converts a JSON value (a scalar or nested lists) to an array of ``dtype``, checking every element.

    Nested lists must be regular (not ragged); booleans are only for BOOL, integers for integer and float dtypes
    (within the dtype's range), other numbers only for float dtypes, and strings only for BYTES (UTF-8 encoded;
    python ``bytes`` are taken as they are, and ``{"b64": ...}`` objects are decoded when ``b64_objects``).
    With ``shape``, the values (flat or nested) are reshaped to it. ``from_json``: the values come from
    ``json_body.load_json``, so an infinity that is not an ``Infinity`` token is a number literal too large for a
    double, refused as TF Serving refuses it. Every failure is ``InvalidInput`` whose message starts with
    ``where`` and the index of the offending element, e.g. ``instances[3][1]: ...``.
    """
    if isinstance(values, np.ndarray):
        values = values.tolist()
    try:
        # Let numpy find the shape in C; a ragged list comes back as an object array that holds lists.
        grid = np.array(values, dtype=object)
    except ValueError as exc:  # e.g. deeper than numpy's 64 dimensions
        raise InvalidInput(f"{where}: {exc}") from None
    flat = grid.ravel()
    kinds = set(map(type, flat))
    if list in kinds or tuple in kinds:
        _raise_ragged(values, where)

    allowed, expected = _accepted(dtype, b64_objects)
    if not kinds <= allowed:
        i = next(i for i, v in enumerate(flat) if type(v) not in allowed)
        hint = " (base64 objects are only for BYTES)" if is_b64_object(flat[i]) else ""
        raise InvalidInput(f"{where}{_index(grid.shape, i)}: expected {expected} for {dtype.name}, "
                           f"got {_describe(flat[i])}{hint}")

    if dtype is BYTES:
        array = _to_bytes(flat, grid.shape, where)
    elif dtype.is_integer:
        array = _to_integers(grid, flat, dtype, where)
    elif dtype.is_float:
        array = _to_floats(grid, flat, dtype, where, from_json)
    else:
        array = grid.astype(dtype.numpy)
    return array if shape is None else _reshape(array, shape, where)


def _accepted(dtype: DType, b64_objects: bool) -> tuple[set[type], str]:
    """The python types a JSON value of ``dtype`` may have, and how to say so in an error."""
    # type(True) is bool, not int: checking exact types keeps booleans out of numeric tensors.
    if dtype is BOOL:
        return {bool}, "true or false"
    if dtype.is_integer:
        return {int}, "an integer"
    if dtype.is_float:
        return {int, float}, "a number"
    if b64_objects:
        return {str, bytes, dict}, 'a string or {"b64": ...}'
    return {str, bytes}, "a string"


def _to_bytes(flat: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    out = np.empty(flat.size, dtype=object)
    for i, value in enumerate(flat):
        if isinstance(value, bytes):
            out[i] = value
        elif isinstance(value, str):
            try:
                out[i] = value.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates, which JSON "\ud800" escapes can produce
                raise InvalidInput(f"{where}{_index(shape, i)}: string is not valid Unicode") from None
        elif is_b64_object(value):
            out[i] = decode_b64(value["b64"], f"{where}{_index(shape, i)}")
        else:
            raise InvalidInput(f'{where}{_index(shape, i)}: expected a string or {{"b64": ...}} for BYTES, '
                               f"got {_describe(value)}")
    return out.reshape(shape)


def _to_integers(grid: np.ndarray, flat: np.ndarray, dtype: DType, where: str) -> np.ndarray:
    info = np.iinfo(dtype.numpy)
    # min/max over python ints never overflow, so the range check comes before numpy's cast.
    if flat.size and (min(flat) < info.min or max(flat) > info.max):
        i = next(i for i, v in enumerate(flat) if not info.min <= v <= info.max)
        raise InvalidInput(f"{where}{_index(grid.shape, i)}: {flat[i]} is out of range for {dtype.name} "
                           f"[{info.min}, {info.max}]")
    return grid.astype(dtype.numpy)


def _to_floats(grid: np.ndarray, flat: np.ndarray, dtype: DType, where: str, from_json: bool) -> np.ndarray:
    try:
        wide = grid.astype(np.float64)
    except OverflowError:  # a python int beyond float64
        wide = None
    if wide is not None:
        with np.errstate(over="ignore"):
            array = wide.astype(dtype.numpy)
        infinite = np.isinf(wide).ravel() if from_json else None
        if infinite is not None and infinite.any():  # Infinity tokens, or a literal too large (1e999): refused
            for j in np.flatnonzero(infinite).tolist():
                if overflowed(flat[j]):
                    raise InvalidInput(f"{where}{_index(grid.shape, j)}: a number too large for a double "
                                       "(write Infinity for infinity)")
        # A finite number that became infinite did not fit the dtype: refuse it rather than send inf to the model.
        overflow = np.isinf(array.astype(np.float64)) & np.isfinite(wide)
        if not overflow.any():
            return array
        i = int(np.flatnonzero(overflow.ravel())[0])
    else:
        i = next(i for i, v in enumerate(flat) if isinstance(v, int) and abs(v) > sys.float_info.max)
    raise InvalidInput(f"{where}{_index(grid.shape, i)}: {flat[i]} is out of range for {dtype.name}")


# No tensor in a request has 2**40 elements; past it numpy cannot even describe a shape whose other dimension is 0
# ([2**31, 2**40, 0] has no elements, and reshaping to it raises "array is too big").
MAX_SHAPE_ELEMENTS = 2**40


def check_shape_size(dims, where: str) -> None:
    """Refuse a shape whose non-zero dimensions multiply past ``MAX_SHAPE_ELEMENTS`` (it holds no data we can take)."""
    if math.prod(d for d in dims if d) > MAX_SHAPE_ELEMENTS:
        raise InvalidInput(f"{where}: shape {list(dims)} is too large (more than {MAX_SHAPE_ELEMENTS} elements)")


def _reshape(array: np.ndarray, shape: Any, where: str) -> np.ndarray:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: shape must be a list of integers, got {shape!r}") from None
    check_shape_size(dims, where)
    # math.prod, not np.prod: an int64 product of huge dimensions wraps (2**31 * 2**33 == 0) and would "match".
    if any(d < 0 for d in dims) or math.prod(dims) != array.size:
        raise InvalidInput(f"{where}: {array.size} values do not fill shape {list(dims)}")
    return array.reshape(dims)


def _raise_ragged(values: Any, where: str) -> None:
    """Raises ``InvalidInput`` at the first list whose length or depth differs from the first element's."""
    shape = []
    node = values
    while isinstance(node, (list, tuple)):
        shape.append(len(node))
        if not node:
            break
        node = node[0]

    def visit(node: Any, depth: int, path: str) -> None:
        if depth == len(shape):
            if isinstance(node, (list, tuple)):
                raise InvalidInput(f"{where}{path}: expected a value, got a list (nested deeper than the first "
                                   f"element)")
            return
        if not isinstance(node, (list, tuple)):
            raise InvalidInput(f"{where}{path}: expected a list of {shape[depth]} like the first element, "
                               f"got {_describe(node)}")
        if len(node) != shape[depth]:
            raise InvalidInput(f"{where}{path}: expected {shape[depth]} elements like the first, got {len(node)}")
        for i, child in enumerate(node):
            visit(child, depth + 1, f"{path}[{i}]")

    visit(values, 0, "")
    raise InvalidInput(f"{where}: nested lists are ragged")  # not reached: numpy and visit agree


def _index(shape: tuple, flat_index: int) -> str:
    """``[i][j]...`` of the element at ``flat_index`` of an array of ``shape``."""
    if not shape:
        return ""
    return "".join(f"[{int(k)}]" for k in np.unravel_index(flat_index, shape))


def _describe(value: Any) -> str:
    """A short JSON-flavoured description of a value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        text = json.dumps(value)
        return f"string {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, bytes):
        return "bytes"
    if is_b64_object(value):
        return 'a {"b64": ...} object'
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


# ------------------------------------------------------------------------------------------- numpy -> JSON


def to_json_value(array: Any, *, bytes_as_b64: bool) -> Any:
    """An array as a JSON value: nested lists of python scalars (a bare scalar for a 0-d array).

    BYTES elements become ``{"b64": ...}`` objects when ``bytes_as_b64``, else UTF-8 text (an element that is not
    valid UTF-8 still becomes a ``{"b64": ...}`` object, so the JSON stays valid). 16 and 32 bit floats are written
    with the shortest decimal that reads back to the same float (``0.1``, not ``0.10000000149011612``), as TF Serving
    does; NaN and infinities are python floats (see the module docstring).
    """
    array = np.asarray(array)
    dtype = by_numpy(array.dtype)
    if dtype is BYTES:
        return _map_nested(array.tolist(), _bytes_to_json_b64 if bytes_as_b64 else _bytes_to_json_text)
    if dtype in (FP16, FP32, BF16):
        # numpy's float32 -> str conversion gives the shortest round-trip repr; float() of it is that decimal.
        return array.astype(np.float32).astype(str).astype(np.float64).tolist()
    return array.tolist()


def _bytes_to_json_b64(value: bytes | str) -> dict:
    return b64_object(value.encode("utf-8") if isinstance(value, str) else value)


def _bytes_to_json_text(value: bytes | str) -> str | dict:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return b64_object(value)


def _map_nested(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)
