"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``tensorflow.serving.ModelService``.

Translates protobuf to named numpy tensors and back; clients built on the ``tensorflow-serving-api`` stubs
work unchanged.
"""

from __future__ import annotations

from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    status_pb2,
)

from service.codec.tensorproto import (
    fill_classification,
    fill_regression,
    serialized_examples,
    to_array,
    typed_tensor_proto,
)
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
        inputs = {name: to_array(name, proto) for name, proto in request.inputs.items()}
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
            _, outputs = await self.dataplane.predict(target, signature, {key: examples}, deadline=deadline,
                                                      resolved=served)
        describe(version=served.number)
        return target, served.number, signature, outputs

    @rpc(PROTOCOL, "classify")
    async def Classify(self, request, context):
        target, number, signature, outputs = await self._run_examples(request.model_spec, request.input, context)
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, target.model, number, signature)
        fill_classification(outputs, response.result)
        return response

    @rpc(PROTOCOL, "regress")
    async def Regress(self, request, context):
        target, number, signature, outputs = await self._run_examples(request.model_spec, request.input, context)
        response = regression_pb2.RegressionResponse()
        self._fill_spec(response.model_spec, target.model, number, signature)
        fill_regression(outputs, response.result, signature)
        return response

    @rpc(PROTOCOL, "multi_inference")
    async def MultiInference(self, request, context):
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            target, number, signature, outputs = await self._run_examples(task.model_spec, request.input, context)
            result = response.results.add()
            self._fill_spec(result.model_spec, target.model, number, signature)
            if task.method_name == "tensorflow/serving/classify":
                fill_classification(outputs, result.classification_result)
            elif task.method_name == "tensorflow/serving/regress":
                fill_regression(outputs, result.regression_result, signature)
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
