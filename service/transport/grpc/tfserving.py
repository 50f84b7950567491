"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``tensorflow.serving.ModelService``.

Translates protobuf to named numpy tensors and back; clients built on the ``tensorflow-serving-api`` stubs
work unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2, model_service_pb2_grpc)
from tensorflow_serving.apis import status_pb2

from service.codec.tfserving_json import examples_input
from service.core.dataplane import DataPlane, Target
from service.core.errors import InvalidInput
from service.transport.grpc.calls import describe, rpc, timeout_of

PROTOCOL = "tfserving-grpc"
_STATES = get_model_status_pb2.ModelVersionStatus.State


def target_of(spec) -> Target:
    """ModelSpec -> Target: version (Int64Value), or version_label, or neither (newest)."""
    which = spec.WhichOneof("version_choice")
    version = spec.version.value if which == "version" else None
    label = spec.version_label if which == "version_label" else None
    return Target(spec.name, version, label)


# TF's fill rule (fewer values than the shape: the last one is repeated) lets a few bytes ask for a tensor of any
# size, materialised before anything else can check it. A filled tensor may have at most this many elements
# (64 MiB at 8 bytes each); a tensor sent in full is bounded by the gRPC message size instead.
MAX_FILLED_ELEMENTS = 2**23


def _to_array(name: str, proto) -> np.ndarray:
    if not proto.tensor_content:
        dims = [d.size for d in proto.tensor_shape.dim]
        count = math.prod(dims) if all(d >= 0 for d in dims) else 0  # negative sizes: make_ndarray refuses them
        field = "string_val" if proto.dtype == types_pb2.DT_STRING else _TYPED_FIELDS.get(proto.dtype)
        present = len(getattr(proto, field)) if field else 0
        if count > present and count > MAX_FILLED_ELEMENTS:
            raise InvalidInput(f"input '{name}': {present} values would expand to shape {dims} ({count} elements); "
                               f"send the values (a filled tensor may have at most {MAX_FILLED_ELEMENTS} elements)")
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # TypeError/ValueError for unknown dtypes or inconsistent contents
        raise InvalidInput(f"input '{name}' is not a valid TensorProto: {exc}") from exc


# The typed value field TF Serving fills for each dtype (Tensor::AsProtoField; its default for Predict responses).
_TYPED_FIELDS = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val", types_pb2.DT_COMPLEX64: "scomplex_val", types_pb2.DT_COMPLEX128: "dcomplex_val",
}


def typed_tensor_proto(value) -> tensor_pb2.TensorProto:
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
    field = _TYPED_FIELDS.get(dtype)
    if field is None:  # no typed field for this dtype: the encoding TensorFlow picks
        return tf.make_tensor_proto(array)
    proto.dtype = dtype
    flat = array.ravel()
    if field == "half_val":  # half and bfloat16 travel as their 16-bit patterns
        flat = flat.view(np.uint16)
    elif field in ("scomplex_val", "dcomplex_val"):  # real and imaginary parts, interleaved
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(proto, field).extend(flat.tolist())
    return proto


def serialized_examples(request_input) -> np.ndarray:
    """An ``Input`` (example list, optionally with a shared context) as serialized tf.Examples."""
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


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics):
        self.dataplane, self.metrics = dataplane, metrics

    def _fill_spec(self, spec, name: str, version: int, signature: str) -> None:
        spec.name = name
        spec.version.value = version
        spec.signature_name = signature

    @rpc(PROTOCOL, "predict")
    async def Predict(self, request, context):
        target = target_of(request.model_spec)
        describe(model=target.model)
        inputs = {name: _to_array(name, proto) for name, proto in request.inputs.items()}
        signature = request.model_spec.signature_name or "serving_default"
        number, outputs = await self.dataplane.predict(target, signature, inputs,
                                                       deadline=self.dataplane.deadline(timeout_of(context)),
                                                       output_filter=list(request.output_filter) or None)
        describe(version=number)
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, target.model, number, signature)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(typed_tensor_proto(value))
        return response

    async def _run_examples(self, spec, request_input, context):
        target = target_of(spec)
        describe(model=target.model)
        signature = spec.signature_name or "serving_default"
        examples = serialized_examples(request_input)
        deadline = self.dataplane.deadline(timeout_of(context))
        # One resolution for the signature check and the run, so that both see the same version.
        with self.dataplane.resolve(target) as served:
            key = examples_input(served.signatures, signature)
            outputs = await served.predict(signature, {key: examples}, deadline=deadline)
        describe(version=served.number)
        return target, served.number, signature, outputs

    @staticmethod
    def _classification(outputs, result) -> None:
        scores, classes = outputs.get("scores"), outputs.get("classes")
        if scores is None and classes is None:
            raise InvalidInput("the signature has neither 'scores' nor 'classes' outputs to classify with")
        rows = len(scores if scores is not None else classes)
        for i in range(rows):
            entry = result.classifications.add()
            width = (scores if scores is not None else classes).reshape(rows, -1).shape[1]
            for j in range(width):
                item = entry.classes.add()
                if classes is not None:
                    label = classes.reshape(rows, -1)[i, j]
                    item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
                if scores is not None:
                    item.score = float(scores.reshape(rows, -1)[i, j])

    @staticmethod
    def _regression(outputs, result) -> None:
        values = outputs.get("outputs")
        if values is None:
            if len(outputs) != 1:
                raise InvalidInput("the signature has no 'outputs' output to regress with")
            values = next(iter(outputs.values()))
        for value in np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, 0]:
            result.regressions.add().value = float(value)

    @rpc(PROTOCOL, "classify")
    async def Classify(self, request, context):
        target, number, signature, outputs = await self._run_examples(request.model_spec, request.input, context)
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, target.model, number, signature)
        self._classification(outputs, response.result)
        return response

    @rpc(PROTOCOL, "regress")
    async def Regress(self, request, context):
        target, number, signature, outputs = await self._run_examples(request.model_spec, request.input, context)
        response = regression_pb2.RegressionResponse()
        self._fill_spec(response.model_spec, target.model, number, signature)
        self._regression(outputs, response.result)
        return response

    @rpc(PROTOCOL, "multi_inference")
    async def MultiInference(self, request, context):
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            target, number, signature, outputs = await self._run_examples(task.model_spec, request.input, context)
            result = response.results.add()
            self._fill_spec(result.model_spec, target.model, number, signature)
            if task.method_name == "tensorflow/serving/classify":
                self._classification(outputs, result.classification_result)
            elif task.method_name == "tensorflow/serving/regress":
                self._regression(outputs, result.regression_result)
            else:
                raise InvalidInput(f"unsupported method_name '{task.method_name}' (classify or regress)")
        return response

    @rpc(PROTOCOL, "metadata")
    async def GetModelMetadata(self, request, context):
        target = target_of(request.model_spec)
        describe(model=target.model)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidInput(f"metadata_field must be ['signature_def'], got {fields}")
        meta = self.dataplane.metadata(target)
        describe(version=meta.number)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in meta.signature_defs.items():
            sigs.signature_def[name].CopyFrom(sig)
        packed = any_pb2.Any()
        packed.Pack(sigs)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        self._fill_spec(response.model_spec, target.model, meta.number, "")
        response.model_spec.ClearField("signature_name")
        response.metadata["signature_def"].CopyFrom(packed)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dataplane: DataPlane, metrics):
        self.dataplane, self.metrics = dataplane, metrics

    @rpc(PROTOCOL, "model_status")
    async def GetModelStatus(self, request, context):
        target = target_of(request.model_spec)
        describe(model=target.model)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.dataplane.status(target.model, target.version, target.label):
            entry = response.model_version_status.add()
            entry.version = status.number
            entry.state = _STATES.Value(status.state)
            entry.status.error_code = 2 if status.error else 0  # UNKNOWN or OK, as error_codes.proto numbers them
            entry.status.error_message = status.error
        return response

    @rpc(PROTOCOL, "reload_config")
    async def HandleReloadConfigRequest(self, request, context):
        await self.dataplane.reload_config(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.CopyFrom(status_pb2.StatusProto(error_code=0))
        return response
