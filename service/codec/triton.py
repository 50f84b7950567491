"""Triton's protocol extensions as tlserve answers them, over HTTP JSON and (through the same dicts) gRPC.

- *classification*: a requested output with ``parameters.classification = k`` is answered as its top ``k``
  classes per row, BYTES strings ``"score:index:label"`` (``"score:index"`` when the version has no labels), best
  first; the score is written as C's ``%f`` (6 decimals), as Triton writes it, so clients that split on ``:`` and
  print the parts show what they show against Triton.
- *model configuration* and *statistics*: the wire-free ``ModelConfiguration`` and ``VersionStatistics`` of the
  data plane, as the JSON documents of Triton's HTTP API. Those documents use the field names of Triton's
  ``ModelConfig`` and ``ModelStatistics`` messages, so the gRPC servicer fills its messages from the same dicts
  (protobuf's ``json_format.ParseDict``): one description of each, two wires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from service.codec import dtypes
from service.core.dataplane import Duration, ModelConfiguration, VersionStatistics
from service.core.errors import InvalidInput

CLASSIFICATION = "classification"  # the requested output's parameter (HTTP JSON and gRPC alike)
PLATFORM = "tensorflow_savedmodel"
BACKEND = "tensorflow"
LABEL_FILENAME = "labels.txt"  # what the configuration names: the version's assets/labels.txt


# ---------------------------------------------------------------------------------------------- classification

def class_count(value: Any, output: str) -> int:
    """The class count asked for ``output``: a non-negative integer (0 asks for no classification, as
    tritonclient's ``class_count=0`` default means); anything else (a bool, a float, a string, < 0) is InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"output '{output}': parameters.{CLASSIFICATION} must be a non-negative integer, "
                           f"got {value!r}")
    return value


def class_counts(requested: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """``{output: k}`` for the requested outputs (name, parameters) that ask for classification (k > 0)."""
    counts = {}
    for name, parameters in requested:
        if CLASSIFICATION in parameters and (k := class_count(parameters[CLASSIFICATION], name)):
            counts[name] = k
    return counts


def classify_output(name: str, value: Any, count: int, labels: list[str] | None, batched: bool) -> np.ndarray:
    """The top ``count`` entries of an output as Triton's classification strings: per row (the leading dimension)
    of a batched output, ``[rows, k]``, else over the whole tensor, ``[k]``; ``k`` is ``count`` or the number of
    entries, if fewer."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise InvalidInput(f"output '{name}' is {dtypes.by_numpy(array.dtype).name}: only numeric outputs can be "
                           "classified")
    rows = array.reshape(array.shape[0], -1) if batched and array.ndim >= 1 else array.reshape(1, -1)
    k = min(count, rows.shape[1])
    best = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    is_float = array.dtype.kind == "f"
    strings = np.empty(best.shape, dtype=object)
    for r, order in enumerate(best):
        for j, index in enumerate(order):
            score = f"{float(rows[r, index]):f}" if is_float else str(int(rows[r, index]))
            label = f":{labels[index]}" if labels is not None and index < len(labels) else ""
            strings[r, j] = f"{score}:{index}{label}".encode()
    return strings if batched and array.ndim >= 1 else strings[0]


# ---------------------------------------------------------------------------------------- model configuration

def _image_format(dims: list[int], dtype: dtypes.DType) -> str:
    """TensorFlow lays images out NHWC: a numeric input of three dims (batch dropped) ending in 1 or 3 channels is
    an image to Triton's clients (image_client.py refuses an input without a format)."""
    if len(dims) == 3 and dims[-1] in (1, 3) and dtype is not dtypes.BYTES:
        return "FORMAT_NHWC"
    return "FORMAT_NONE"


def _dims(shape: tuple[int | None, ...] | None, batched: bool) -> list[int]:
    if shape is None:  # unknown rank: one dimension of unknown size is the most a configuration can say
        return [-1]
    dims = [-1 if d is None else d for d in shape]
    return dims[1:] if batched else dims


def _version_policy(config: ModelConfiguration) -> dict[str, Any]:
    if config.policy == "all":
        return {"all": {}}
    if config.policy == "specific":
        return {"specific": {"versions": list(config.policy_versions)}}
    return {"latest": {"num_versions": config.policy_count}}


def model_config_json(config: ModelConfiguration) -> dict[str, Any]:
    """The configuration as Triton's ``GET /v2/models/{m}/config`` answers it (and the ModelConfig message's
    fields): data types as ``TYPE_*``, dims without the batch dimension when ``max_batch_size > 0``."""
    batched = config.max_batch_size > 0
    inputs = []
    for spec in config.signature.inputs.values():
        dims = _dims(spec.shape, batched)
        inputs.append({"name": spec.name, "data_type": spec.dtype.model_config_type,
                       "format": _image_format(dims, spec.dtype), "dims": dims})
    outputs = []
    for spec in config.signature.outputs.values():
        entry: dict[str, Any] = {"name": spec.name, "data_type": spec.dtype.model_config_type,
                                 "dims": _dims(spec.shape, batched)}
        if config.has_labels and spec.dtype is not dtypes.BYTES:
            entry["label_filename"] = LABEL_FILENAME
        outputs.append(entry)
    doc: dict[str, Any] = {"name": config.name, "platform": PLATFORM, "backend": BACKEND,
                           "version_policy": _version_policy(config), "max_batch_size": config.max_batch_size,
                           "input": inputs, "output": outputs}
    if batched and config.batching is not None:
        doc["dynamic_batching"] = {
            "preferred_batch_size": list(config.batching["allowed_batch_sizes"]),
            "max_queue_delay_microseconds": round(config.batching["batch_timeout_ms"] * 1000)}
    return doc


# ------------------------------------------------------------------------------------------------ statistics

def _duration(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


def statistics_json(stats: list[VersionStatistics]) -> dict[str, Any]:
    """Statistics as Triton's ``GET /v2/models[/{m}[/versions/{v}]]/stats`` answers them (and the
    ModelStatisticsResponse message's fields)."""
    zero = _duration(Duration())
    return {"model_stats": [{
        "name": s.name, "version": str(s.version), "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count, "execution_count": s.execution_count,
        "inference_stats": {"success": _duration(s.success), "fail": _duration(s.fail), "queue": _duration(s.queue),
                            "compute_input": _duration(s.compute_input),
                            "compute_infer": _duration(s.compute_infer),
                            "compute_output": _duration(s.compute_output),
                            "cache_hit": zero, "cache_miss": zero},
        "batch_stats": [{"batch_size": b.batch_size,
                         "compute_input": _duration(Duration(b.compute_infer.count, 0)),
                         "compute_infer": _duration(b.compute_infer),
                         "compute_output": _duration(Duration(b.compute_infer.count, 0))} for b in s.batches],
        "memory_usage": [],
    } for s in stats]}


# ------------------------------------------------------------------------------------------------ extensions

# The protocol extensions ServerMetadata lists (HTTP ``GET /v2`` and gRPC ``ServerMetadata``): exactly those each
# transport serves, Triton's names. One home for both lists, so adding an extension to a transport is one line here.
SHARED_EXTENSIONS = ("classification", "model_configuration", "statistics")
HTTP_EXTENSIONS = ("binary_tensor_data", *SHARED_EXTENSIONS, "model_repository")
# gRPC's model repository and system shared memory RPCs are declared in the proto but not yet served (triton-b
# adds "model_repository" and "system_shared_memory" here with their servicer methods).
GRPC_EXTENSIONS = SHARED_EXTENSIONS
