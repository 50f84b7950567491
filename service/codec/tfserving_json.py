"""TF Serving's REST JSON bodies <-> named numpy tensors (wire-neutral: no HTTP here).

Follows TF Serving's ``json_tensor.cc``: ``:predict`` in row (``"instances"``) and columnar (``"inputs"``) format with
``{"b64": ...}`` binary values, ``:classify`` / ``:regress`` with ``"examples"`` (and ``"context"``) turned into
serialized ``tf.Example`` protos, and the matching responses. Stricter than TF Serving where it silently accepts
nonsense: integers are range-checked, and unknown input names are refused. As lenient as TF Serving about shapes:
they are not checked against the signature here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from service.codec import dtypes
from service.codec.b64 import decode_b64, is_b64_object
from service.codec.dtypes import to_json_value
from service.codec.json_body import load_object, overflowed
from service.core.errors import InternalError, InvalidInput, NotFound
from service.core.tensors import SignatureInfo, TensorSpec
from tlserve.contract import DEFAULT_SIGNATURE

BYTES_SUFFIX = "_bytes"  # outputs named so are written as {"b64": ...} (TF Serving's convention, from CMLE)


@dataclass
class PredictRequest:
    signature_name: str  # "serving_default" when absent
    inputs: dict[str, np.ndarray]  # named tensors, batch-major
    row_format: bool  # True for "instances", False for "inputs"; the response uses the same format


class ExamplesRequest(NamedTuple):
    signature_name: str
    examples: list[dict[str, Any]]  # one JSON object per example: feature name -> value or list of values
    context: dict[str, Any] | None  # features shared by every example


# ------------------------------------------------------------------------------------------------ predict


def parse_predict(body: bytes | str, input_specs: Callable[[str], dict[str, TensorSpec]]) -> PredictRequest:
    """Parses a ``:predict`` body into named input tensors checked against the signature's inputs.

    ``input_specs(signature_name)`` gives the signature's inputs (its ``NotFound`` for an unknown signature
    propagates). Every problem with the body is ``InvalidInput``.
    """
    doc = load_object(body)
    signature_name = _signature_name(doc)
    if ("instances" in doc) == ("inputs" in doc):
        raise InvalidInput('request body must have exactly one of "instances" (row format) or "inputs" '
                           '(columnar format)')
    specs = input_specs(signature_name)
    if not specs:
        raise InvalidInput(f"signature '{signature_name}' has no inputs")
    row_format = "instances" in doc
    if row_format:
        values = _columns_from_instances(doc["instances"], specs)
        where = "instances"
    else:
        values = _columns_from_inputs(doc["inputs"], specs)
        where = "inputs"
    inputs = {name: _to_tensor(value, specs[name], where) for name, value in values.items()}
    return PredictRequest(signature_name, inputs, row_format)


def _columns_from_instances(instances: Any, specs: dict[str, TensorSpec]) -> dict[str, list]:
    """Row format: one list of per-instance values for each input name."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('"instances" must be a non-empty list')
    single = next(iter(specs)) if len(specs) == 1 else None
    columns: dict[str, list] = {name: [] for name in specs}
    for i, instance in enumerate(instances):
        # A {"b64": ...} object is a value, not a named-input object (TF Serving decides so too).
        named = isinstance(instance, dict) and not is_b64_object(instance)
        if single is not None and not named:
            columns[single].append(instance)
            continue
        if not named:
            raise InvalidInput(f"instances[{i}]: expected an object with the inputs {_names(specs)}, "
                               f"as the signature has {len(specs)} inputs")
        _check_names(instance, specs, f"instances[{i}]: ")
        for name in specs:
            columns[name].append(instance[name])
    return columns


def _columns_from_inputs(inputs: Any, specs: dict[str, TensorSpec]) -> dict[str, Any]:
    """Columnar format: the whole batch-major value of each input name."""
    if isinstance(inputs, dict) and not is_b64_object(inputs):
        _check_names(inputs, specs, '"inputs": ')
        return {name: inputs[name] for name in specs}
    if len(specs) != 1:
        raise InvalidInput(f'"inputs" must be an object with the inputs {_names(specs)}, as the signature has '
                           f"{len(specs)} inputs")
    return {next(iter(specs)): inputs}


def _check_names(given: dict, specs: dict[str, TensorSpec], prefix: str) -> None:
    missing = [name for name in specs if name not in given]
    unknown = [key for key in given if key not in specs]
    problems = [f"missing input {', '.join(repr(n) for n in missing)}"] if missing else []
    if unknown:  # often a misspelt name: say which names exist
        problems.append(f"unknown input {', '.join(repr(k) for k in unknown)}; expected {_names(specs)}")
    if problems:
        raise InvalidInput(prefix + ", ".join(problems))


def _names(specs: dict[str, TensorSpec]) -> str:
    return ", ".join(repr(name) for name in specs)


def _to_tensor(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """Converts one input's JSON value to its dtype. The shape is the JSON's own: like TF Serving, the codec does
    not hold it against the signature (TF Serving answers ``{"instances": [2.0, 3.0, 4.0]}`` for an input of shape
    [-1, 1]); the model refuses what it cannot compute, and that refusal is the client's 400."""
    try:
        return dtypes.to_numpy(value, spec.dtype, where=where, b64_objects=True, from_json=True)
    except InvalidInput as exc:
        raise InvalidInput(f"input '{spec.name}': {exc.message}") from None


def format_predict(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """The ``:predict`` response body: ``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar).

    With one output its value stands alone; with several, row format gives one object per instance and columnar
    one object of whole tensors. BYTES outputs whose name ends in ``_bytes`` are written as ``{"b64": ...}``.
    Outputs that cannot be split into instances are a model problem: ``InternalError``.
    """
    if not outputs:
        raise InternalError("the signature returned no outputs")
    values = {name: to_json_value(array, bytes_as_b64=name.endswith(BYTES_SUFFIX)) for name, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    sizes = {}
    for name, array in outputs.items():
        if np.ndim(array) == 0:
            raise InternalError(f"output '{name}' has no batch dimension, so it cannot be split into predictions")
        sizes[name] = np.shape(array)[0]
    if len(set(sizes.values())) > 1:
        raise InternalError(f"outputs have different batch sizes {sizes}, so they cannot be split into predictions")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    names = list(values)
    return {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*values.values(), strict=True)]}


# ---------------------------------------------------------------------------------------- classify/regress


def parse_examples(body: bytes | str) -> ExamplesRequest:
    """Parses a ``:classify`` / ``:regress`` body: ``{"signature_name"?, "context"?, "examples": [{...}, ...]}``.

    Checks the structure only; feature values are checked by ``examples_to_serialized``.
    """
    doc = load_object(body)
    signature_name = _signature_name(doc)
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise InvalidInput('"examples" must be a non-empty list of objects')
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InvalidInput(f"examples[{i}]: an example must be an object of features")
    context = doc.get("context")
    if "context" in doc and not isinstance(context, dict):
        raise InvalidInput('"context" must be an object of features')
    return ExamplesRequest(signature_name, examples, context)


def examples_to_serialized(examples: list[dict[str, Any]], context: dict[str, Any] | None = None) -> np.ndarray:
    """Serialized ``tf.Example`` protos, one per example, as a BYTES array of shape ``[len(examples)]``.

    Context features are added to every example; an example's own feature wins over a context feature of the same
    name (as TF Serving's concatenation of context and example protos does). A feature value is one value or a list
    of values of one kind: integers (and booleans, as 0/1) -> ``int64_list``, other numbers -> ``float_list``,
    strings (UTF-8) and ``{"b64": ...}`` -> ``bytes_list``.
    """
    shared = {name: _feature(value, f"context['{name}']") for name, value in (context or {}).items()}
    out = np.empty(len(examples), dtype=object)
    for i, features in enumerate(examples):
        example = example_pb2.Example()
        feature_map = example.features.feature
        for name, feature in shared.items():
            feature_map[name].CopyFrom(feature)
        for name, value in features.items():
            feature_map[name].CopyFrom(_feature(value, f"examples[{i}]['{name}']"))
        out[i] = example.SerializeToString()
    return out


_INT64 = np.iinfo(np.int64)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _feature(value: Any, where: str) -> feature_pb2.Feature:
    items = value if isinstance(value, list) else [value]
    kinds = [_feature_kind(item, f"{where}[{j}]" if isinstance(value, list) else where)
             for j, item in enumerate(items)]
    feature = feature_pb2.Feature()
    if not items:
        return feature  # an empty feature, as TF Serving makes for []
    if len(set(kinds)) > 1:
        raise InvalidInput(f"{where}: values mix {' and '.join(sorted(set(kinds)))}; a feature holds one kind "
                           "(write floats with a decimal point, e.g. 1.0)")
    kind = kinds[0]
    if kind == "int64":
        feature.int64_list.value.extend(int(v) for v in items)
    elif kind == "float":
        feature.float_list.value.extend(items)
    else:
        feature.bytes_list.value.extend(
            decode_b64(v["b64"], where) if isinstance(v, dict) else v.encode("utf-8") for v in items)
    return feature


def _feature_kind(item: Any, where: str) -> str:
    """The tf.train.Feature list an item belongs in, after checking it fits there."""
    if isinstance(item, bool):
        return "int64"
    if isinstance(item, int):
        if not _INT64.min <= item <= _INT64.max:
            raise InvalidInput(f"{where}: {item} is out of range for an int64 feature")
        return "int64"
    if isinstance(item, float):
        if overflowed(item):
            raise InvalidInput(f"{where}: a number too large for a double (write Infinity for infinity)")
        if math.isfinite(item) and abs(item) > _FLOAT32_MAX:  # would silently become inf in a float_list
            raise InvalidInput(f"{where}: {item!r} is out of range for a float feature")
        return "float"
    if isinstance(item, str):
        return "bytes"
    if is_b64_object(item):
        return "bytes"
    kind = "a list" if isinstance(item, list) else "an object" if isinstance(item, dict) else json.dumps(item)
    raise InvalidInput(f'{where}: a feature value must be a number, a string or {{"b64": ...}}, got {kind}')


def examples_input(signatures: dict[str, SignatureInfo], signature: str) -> str:
    """The input of ``signature`` that takes serialized tf.Examples (:classify, :regress, Classify, Regress and
    MultiInference), recognised by structure: exactly one input, whatever the method name says."""
    if signature not in signatures:
        raise NotFound.signature(signature)
    inputs = signatures[signature].inputs
    if len(inputs) != 1:
        raise InvalidInput(f"signature '{signature}' does not take serialized tf.Examples (it has {len(inputs)} "
                           "inputs, not one)")
    return next(iter(inputs))


def format_classify(classes: np.ndarray | None, scores: np.ndarray | None) -> dict:
    """``{"results": [[[label, score], ...], ...]}`` from ``[batch, k]`` classes and/or scores.

    Missing classes give empty labels and missing scores give 0.0, as TF Serving's proto defaults do.
    """
    if classes is None and scores is None:
        raise InternalError("the classify signature returned neither classes nor scores")
    shapes = {name: np.shape(a) for name, a in (("classes", classes), ("scores", scores)) if a is not None}
    if any(len(s) != 2 for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise InternalError(f"classify outputs must be [batch, classes] of one shape, got {shapes}")
    shape = next(iter(shapes.values()))
    if classes is None:
        labels = [[""] * shape[1] for _ in range(shape[0])]
    else:
        # A label must be a JSON string; undecodable bytes are replaced rather than failing the response.
        labels = [[c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in row]
                  for row in np.asarray(classes).tolist()]
    values = to_json_value(np.asarray(scores), bytes_as_b64=False) if scores is not None else \
        [[0.0] * shape[1] for _ in range(shape[0])]
    return {"results": [[[label, score] for label, score in zip(label_row, score_row, strict=True)]
                        for label_row, score_row in zip(labels, values, strict=True)]}


def regression_values(outputs: Mapping[str, np.ndarray], signature: str) -> np.ndarray:
    """The ``[batch]`` values a regress call answers (REST and gRPC alike): the signature's ``outputs`` output, as
    TF Serving's regression signatures name it, or its only output; anything else is not a regression signature
    (a classifier's ``scores``/``classes``/``unknown_score`` must not be read as regressions)."""
    values = outputs.get("outputs")
    if values is None:
        if len(outputs) != 1:
            raise InvalidInput(f"signature '{signature}' has no 'outputs' output (it has {sorted(outputs)}): it is "
                               "not a regression signature")
        values = next(iter(outputs.values()))
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        raise InvalidInput(f"signature '{signature}' answers {array.dtype} {list(np.shape(values))}, not one number "
                           "per example: it is not a regression signature")
    return array


def format_regress(values: np.ndarray) -> dict:
    """``{"results": [value, ...]}`` from a ``[batch]`` or ``[batch, 1]`` float array."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        raise InternalError(f"regress output must be numbers of shape [batch] or [batch, 1], "
                            f"got {array.dtype} {list(np.shape(values))}")
    return {"results": to_json_value(array.astype(np.float32), bytes_as_b64=False)}


# ---------------------------------------------------------------------------------------------------- JSON


def _signature_name(doc: dict) -> str:
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise InvalidInput('"signature_name" must be a string')
    return name or DEFAULT_SIGNATURE  # TF Serving treats an empty name as the default signature
