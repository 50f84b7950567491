"""A loaded SavedModel: runs one batch through a named signature on the chosen device.

Knows nothing of HTTP, gRPC or batching; takes and returns numpy arrays by input and output name.
Calls block (TensorFlow releases the GIL while it computes), so callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from service.core.errors import InvalidInput, NotFound, ServiceError
from service.core.tensors import SignatureInfo
from service.runtime.signatures import read_meta_graph, read_signatures
from tlserve.contract import DEFAULT_SIGNATURE, WARMUP_FILE

log = logging.getLogger(__name__)

MAX_WARMUP_RECORDS = 1000  # TF Serving's own cap: warm-up time counts at every load


class _Tf2Runner:
    """TF2 SavedModels (they carry an object graph): the restored signature functions."""

    def __init__(self, path: Path, signature_defs, device: str | None):
        with tf.device(device) if device else contextlib.nullcontext():
            self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        self.available = set(self._loaded.signatures)
        self._device = device
        self._mapped: dict[str, tf.types.experimental.ConcreteFunction] = {}

    def __call__(self, signature: str, inputs: dict[str, np.ndarray], dtypes: dict[str, tf.DType]):
        tensors = {name: tf.convert_to_tensor(value, dtype=dtypes[name]) for name, value in inputs.items()}
        with tf.device(self._device) if self._device else contextlib.nullcontext():
            outputs = self._loaded.signatures[signature](**tensors)
        return {name: value.numpy() for name, value in outputs.items()}

    def each(self, signature: str, inputs: dict[str, np.ndarray], dtypes: dict[str, tf.DType]):
        """``signature`` (one item in, one out) over every row of ``inputs`` in ONE call: a graph-side loop
        instead of one Python -> TF call per item (tf.map_fn runs up to 10 items at once)."""
        mapped = self._mapped.get(signature)
        if mapped is None:
            mapped = self._mapped.setdefault(signature, _mapped_function(self._loaded.signatures[signature]))
        tensors = {name: tf.convert_to_tensor(value, dtype=dtypes[name]) for name, value in inputs.items()}
        with tf.device(self._device) if self._device else contextlib.nullcontext():
            outputs = mapped(tensors)
        return {name: value.numpy() for name, value in outputs.items()}


def _mapped_function(fn) -> tf.types.experimental.ConcreteFunction:
    """A function that runs the per-item concrete function ``fn`` over a batch of items."""
    item_specs = fn.structured_input_signature[1]
    output_specs = {name: tf.TensorSpec(spec.shape, spec.dtype) for name, spec in fn.structured_outputs.items()}

    @tf.function(input_signature=[{name: tf.TensorSpec([None, *spec.shape], spec.dtype)
                                   for name, spec in item_specs.items()}])
    def each(batch):
        return tf.map_fn(lambda item: fn(**item), batch, fn_output_signature=output_specs)

    return each.get_concrete_function()  # traced now, not on the first request


class _SessionRunner:
    """TF1 SavedModels: a Session feeding and fetching the signature's tensors by name, as TF Serving does.

    Wrapping TF1 graphs as TF2 functions fails for some valid models (TF Serving's half_plus_three, whose
    tf.Example input has unknown rank, does not load that way), and a Session is what they were made for.
    """

    def __init__(self, path: Path, signature_defs, device: str | None):
        self._defs = signature_defs
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default(), tf.device(device) if device else contextlib.nullcontext():
            tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(path))
        self.available = set(signature_defs)

    def __call__(self, signature: str, inputs: dict[str, np.ndarray], dtypes: dict[str, tf.DType]):
        sig = self._defs[signature]
        element = self._graph.as_graph_element
        # Fed by the type of the tensor fed, not the one the SignatureDef declares (``dtypes``): TF Serving's C++
        # feeds by name, so half_plus_three's regress signature, declared DT_FLOAT over a DT_STRING placeholder
        # of serialized tf.Examples, works there.
        tensors = {name: element(sig.inputs[name].name) for name in inputs}
        feeds = {tensors[name]._as_tf_output(): np.asarray(value, dtype=tensors[name].dtype.as_numpy_dtype)
                 for name, value in inputs.items()}
        names = list(sig.outputs)
        fetches = [element(sig.outputs[name].name)._as_tf_output() for name in names]
        # Session.run checks every feed against the graph's static shape in Python; TF Serving's C++ Session::Run
        # does not (it feeds half_plus_two's [-1, 1] 'x' a [3] tensor and answers [3] values), so the session is
        # run as TF Serving runs it, through the C API. The graph still refuses what it cannot compute.
        values = self._session._call_tf_sessionrun(None, feeds, fetches, [], None)
        return dict(zip(names, values, strict=True))


class LoadedModel:
    """One version of one model, in memory, ready to run."""

    def __init__(self, path: Path, device: str | None = None):
        self.path = Path(path)
        self.device = device
        meta = read_meta_graph(self.path)
        self.signature_defs = meta.signature_def  # the stored protos, for GetModelMetadata and /metadata
        self.signatures: dict[str, SignatureInfo] = read_signatures(meta)
        runner = _Tf2Runner if meta.object_graph_def.nodes else _SessionRunner
        self._runner = runner(self.path, meta.signature_def, device)
        self.signatures = {k: v for k, v in self.signatures.items() if k in self._runner.available}

    def signature(self, name: str) -> SignatureInfo:
        """The signature called ``name``, or NotFound listing the ones there are."""
        if name not in self.signatures:
            raise NotFound.signature(name)
        return self.signatures[name]

    def run(self, signature: str, inputs: dict[str, np.ndarray],
            output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run ``signature`` on named ``inputs`` (already checked by the caller); return named outputs."""
        info = self.signature(signature)
        missing = set(info.inputs) - set(inputs)
        extra = set(inputs) - set(info.inputs)
        if missing or extra:
            raise InvalidInput(f"signature '{signature}' takes inputs {sorted(info.inputs)}; "
                               f"missing {sorted(missing)}, unknown {sorted(extra)}")
        dtypes = {name: tf.as_dtype(spec.dtype.tf_enum) for name, spec in info.inputs.items()}
        try:
            outputs = self._runner(signature, inputs, dtypes)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            # Shapes or values the graph refuses are the request's fault, not ours.
            raise InvalidInput(f"signature '{signature}' rejected the input: {_first_line(exc)}") from exc
        wanted = output_filter or list(outputs)
        unknown = [name for name in wanted if name not in outputs]
        if unknown:
            raise InvalidInput(f"unknown output {unknown}; signature '{signature}' has {sorted(outputs)}")
        return {name: outputs[name] for name in wanted}

    def run_each(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a one-item ``signature`` (e.g. ``preprocess``) on each row of ``inputs``; outputs stacked by row.

        One call for the whole batch where the runtime can (TF2); else one call per row. If any row fails, the
        whole call raises: callers that need per-row failures retry the rows alone with ``run``.
        """
        info = self.signature(signature)
        if set(inputs) != set(info.inputs):
            raise InvalidInput(f"signature '{signature}' takes inputs {sorted(info.inputs)}, got {sorted(inputs)}")
        each = getattr(self._runner, "each", None)
        if each is None:
            rows = [self.run(signature, {name: value[i] for name, value in inputs.items()})
                    for i in range(len(next(iter(inputs.values()))))]
            return {name: np.stack([row[name] for row in rows]) for name in rows[0]} if rows else {}
        dtypes = {name: tf.as_dtype(spec.dtype.tf_enum) for name, spec in info.inputs.items()}
        try:
            return each(signature, inputs, dtypes)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise InvalidInput(f"signature '{signature}' rejected the input: {_first_line(exc)}") from exc

    def warm_up(self, check: Callable[[str, dict[str, np.ndarray]], None] | None = None) -> list[int]:
        """Replay the version's warm-up records (PredictionLog, as TF Serving does); return the batch size of each
        record that ran (the length of its first input; 1 for a scalar).

        ``check(signature, inputs)`` sees each record first (the service's image checks: a record is input from
        outside like any request, and a bomb in it must fail this version's load, not the process)."""
        path = self.path / WARMUP_FILE
        if not path.is_file():
            return []
        sizes: list[int] = []
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS).as_numpy_iterator():
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            if entry.WhichOneof("log_type") != "predict_log":
                continue  # classify/regress logs would need their own request decoding; predict covers tlserve
            request = entry.predict_log.request
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                if check:
                    check(signature, inputs)
                self.run(signature, inputs)
            except ServiceError as exc:
                raise type(exc)(f"{WARMUP_FILE}, warm-up record {len(sizes) + 1}: {exc.message}") from exc
            first = next(iter(inputs.values()), None)
            sizes.append(len(first) if first is not None and first.ndim else 1)
        return sizes


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
