"""TF Serving's gRPC tensors: ``TensorProto`` <-> numpy, ``Input`` examples, Classify and Regress results.

The typed value field of each dtype (``float_val``, ``int64_val``, ``string_val``...) is the dtype table's
``tf_field`` column; complex numbers, which the table (the V2 types) does not hold, keep theirs here.
Results are filled into the response messages the servicer hands over (``ClassificationResult``,
``RegressionResult``), so this module needs no TF Serving protos of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2

from service.codec import dtypes
from service.codec.tfserving_json import regression_values
from service.core.errors import InvalidInput

# TF's fill rule (fewer values than the shape: the last one is repeated) lets a few bytes ask for a tensor of any
# size, materialised before anything else can check it. A filled tensor may have at most this many elements
# (64 MiB at 8 bytes each); a tensor sent in full is bounded by the gRPC message size instead.
MAX_FILLED_ELEMENTS = 2**23

# Typed fields of the TensorProto dtypes outside the table (real and imaginary parts interleaved).
_COMPLEX_FIELDS = {types_pb2.DT_COMPLEX64: "scomplex_val", types_pb2.DT_COMPLEX128: "dcomplex_val"}


def typed_field(tf_enum: int) -> str | None:
    """The TensorProto field that holds values of ``tf_enum`` one by one, or None if there is none."""
    try:
        return dtypes.by_tf_enum(tf_enum).tf_field
    except InvalidInput:
        return _COMPLEX_FIELDS.get(tf_enum)


def to_array(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A request's TensorProto as an array (``tf.make_ndarray``); ``InvalidInput`` naming input ``name`` if it is
    not a valid one, or if it would fill more than ``MAX_FILLED_ELEMENTS`` from fewer values."""
    if not proto.tensor_content:
        dims = [d.size for d in proto.tensor_shape.dim]
        count = math.prod(dims) if all(d >= 0 for d in dims) else 0  # negative sizes: make_ndarray refuses them
        field = typed_field(proto.dtype)
        present = len(getattr(proto, field)) if field else 0
        if count > present and count > MAX_FILLED_ELEMENTS:
            raise InvalidInput(f"input '{name}': {present} values would expand to shape {dims} ({count} elements); "
                               f"send the values (a filled tensor may have at most {MAX_FILLED_ELEMENTS} elements)")
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # TypeError/ValueError for unknown dtypes or inconsistent contents
        raise InvalidInput(f"input '{name}' is not a valid TensorProto: {exc}") from exc


def typed_tensor_proto(value: Any) -> tensor_pb2.TensorProto:
    """A TensorProto with every element in its typed field (``float_val``, ``int64_val``, ``string_val``...), as
    TF Serving answers Predict, rather than ``tensor_content``: clients that read ``float_val`` get the values."""
    array = np.asarray(value)
    proto = tensor_pb2.TensorProto()
    proto.tensor_shape.CopyFrom(tf.TensorShape(array.shape).as_proto())
    if array.dtype == object or array.dtype.kind in "SU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel())
        return proto
    dtype = tf.as_dtype(array.dtype).as_datatype_enum
    field = typed_field(dtype)
    if field is None:  # no typed field for this dtype: the encoding TensorFlow picks
        return tf.make_tensor_proto(array)
    proto.dtype = dtype
    flat = array.ravel()
    if field == "half_val":  # half and bfloat16 travel as their 16-bit patterns
        flat = flat.view(np.uint16)
    elif field in _COMPLEX_FIELDS.values():  # real and imaginary parts, interleaved
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(proto, field).extend(flat.tolist())
    return proto


def serialized_examples(request_input: Any) -> np.ndarray:
    """A TF Serving ``Input`` (example list, optionally with a shared context) as serialized tf.Examples."""
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        examples = list(request_input.example_list.examples)
    elif which == "example_list_with_context":
        context = request_input.example_list_with_context.context
        examples = []
        for example in request_input.example_list_with_context.examples:
            merged = example_pb2.Example()
            merged.CopyFrom(context)
            merged.MergeFrom(example)  # an example's own features win over the context's
            examples.append(merged)
    else:
        raise InvalidInput("the request has no input examples")
    if not examples:
        raise InvalidInput("the request has no input examples")
    return np.array([e.SerializeToString() for e in examples], dtype=object)


def fill_classification(outputs: Mapping[str, np.ndarray], result: Any) -> None:
    """Fills a ``ClassificationResult`` from a signature's ``scores`` and/or ``classes`` outputs."""
    scores, classes = outputs.get("scores"), outputs.get("classes")
    if scores is None and classes is None:
        raise InvalidInput("the signature has neither 'scores' nor 'classes' outputs to classify with")
    table = scores if scores is not None else classes
    assert table is not None  # one of the two, checked above
    rows = len(table)
    width = table.reshape(rows, -1).shape[1]
    for i in range(rows):
        entry = result.classifications.add()
        for j in range(width):
            item = entry.classes.add()
            if classes is not None:
                label = classes.reshape(rows, -1)[i, j]
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                item.score = float(scores.reshape(rows, -1)[i, j])


def fill_regression(outputs: Mapping[str, np.ndarray], result: Any, signature: str = "") -> None:
    """Fills a ``RegressionResult`` from a regression signature's values (``tfserving_json.regression_values``)."""
    for value in regression_values(outputs, signature).astype(np.float64).tolist():
        result.regressions.add().value = value
