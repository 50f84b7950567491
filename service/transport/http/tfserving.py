"""TF Serving's REST API: model status, metadata, :predict, :classify and :regress.

Translates JSON to named tensors and back; everything else is the data plane's business.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from service.codec import tfserving_json
from service.codec.explain import format_explain, parse_explain
from service.codec.version import parse_version
from service.core.dataplane import DataPlane, Target
from service.core.errors import InvalidInput
from service.transport.http.common import (
    describe,
    json_response,
    parse_off_loop,
    read_body,
    request_timeout,
)

PROTOCOL = "tfserving-rest"
MODEL_PREFIXES = ("/v1/models/{model}", "/v1/models/{model}/versions/{version}", "/v1/models/{model}/labels/{label}")
INFERENCE_PATHS = tuple(prefix + verb for prefix in MODEL_PREFIXES for verb in (":predict", ":classify", ":regress"))
_JSON_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}, "required": True}}


def _status_json(statuses) -> dict:
    return {"model_version_status": [
        {"version": str(s.number), "state": s.state,
         "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error}}
        for s in statuses]}


def _serialized_examples(body: bytes):
    signature, examples, context = tfserving_json.parse_examples(body)
    return signature, tfserving_json.examples_to_serialized(examples, context)


def build_router(dataplane: DataPlane, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["TF Serving REST"])

    async def status(request: Request, model: str, version: str | None = None, label: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="status")
        return json_response(_status_json(dataplane.status(model, parse_version(version), label)))

    async def metadata(request: Request, model: str, version: str | None = None, label: str | None = None):
        describe(request, model=model, protocol=PROTOCOL, api="metadata")
        meta = dataplane.metadata(Target(model, parse_version(version), label))
        sigs = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in meta.signature_defs.items():
            sigs.signature_def[name].CopyFrom(sig)
        body = {
            "model_spec": {"name": model, "signature_name": "", "version": str(meta.number)},
            "metadata": {"signature_def": json_format.MessageToDict(
                sigs, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)},
        }
        return json_response(body)

    async def predict(request: Request, model: str, version: str | None = None, label: str | None = None):
        target = Target(model, parse_version(version), label)
        describe(request, model=model, protocol=PROTOCOL, api="predict")
        body = await read_body(request, max_body_bytes)
        deadline = dataplane.deadline(request_timeout(request))
        # One resolution for parsing against the signature and for the run, so that both see the same version.
        with dataplane.resolve(target) as served:
            parsed = await parse_off_loop(body, tfserving_json.parse_predict,
                                          lambda signature: served.signature(signature).inputs)
            _, outputs = await dataplane.predict(target, parsed.signature_name, parsed.inputs, deadline=deadline,
                                                 resolved=served)
        describe(request, version=served.number)
        return json_response(tfserving_json.format_predict(outputs, parsed.row_format))

    async def classify_or_regress(request: Request, model: str, verb: str, version: str | None, label: str | None):
        target = Target(model, parse_version(version), label)
        describe(request, model=model, protocol=PROTOCOL, api=verb)
        body = await read_body(request, max_body_bytes)
        signature, serialized = await parse_off_loop(body, _serialized_examples)
        deadline = dataplane.deadline(request_timeout(request))
        # One resolution for the signature check and the run, so that both see the same version.
        with dataplane.resolve(target) as served:
            key = tfserving_json.examples_input(served.signatures, signature)
            _, outputs = await dataplane.predict(target, signature, {key: serialized}, deadline=deadline,
                                                 resolved=served)
        describe(request, version=served.number)
        if verb == "classify":
            if "classes" not in outputs and "scores" not in outputs:
                raise InvalidInput(f"signature '{signature}' has neither 'classes' nor 'scores' outputs: it is not a "
                                   "classification signature")
            return json_response(tfserving_json.format_classify(outputs.get("classes"), outputs.get("scores")))
        return json_response(tfserving_json.format_regress(tfserving_json.regression_values(outputs, signature)))

    async def classify(request: Request, model: str, version: str | None = None, label: str | None = None):
        return await classify_or_regress(request, model, "classify", version, label)

    async def regress(request: Request, model: str, version: str | None = None, label: str | None = None):
        return await classify_or_regress(request, model, "regress", version, label)

    async def explain(request: Request, model: str, version: str | None = None, label: str | None = None):
        target = Target(model, parse_version(version), label)
        describe(request, model=model, protocol=PROTOCOL, api="explain")
        body = await read_body(request, max_body_bytes)
        images, class_indices = await parse_off_loop(body, parse_explain)
        number, explanations = await dataplane.explain(target, images, class_indices,
                                                       deadline=dataplane.deadline(request_timeout(request)))
        describe(request, version=number)
        return json_response(await asyncio.to_thread(format_explain, explanations))  # heatmaps: up to MBs of JSON

    for prefix in MODEL_PREFIXES:
        router.add_api_route(prefix, status, methods=["GET"], summary="Model version status")
        router.add_api_route(prefix + "/metadata", metadata, methods=["GET"], summary="Signature definitions")
        router.add_api_route(prefix + ":predict", predict, methods=["POST"], openapi_extra=_JSON_BODY,
                             summary="Predict (row 'instances' or columnar 'inputs')")
        router.add_api_route(prefix + ":classify", classify, methods=["POST"], openapi_extra=_JSON_BODY,
                             summary="Classify tf.Examples")
        router.add_api_route(prefix + ":regress", regress, methods=["POST"], openapi_extra=_JSON_BODY,
                             summary="Regress tf.Examples")
        router.add_api_route(prefix + ":explain", explain, methods=["POST"], openapi_extra=_JSON_BODY,
                             summary="Grad-CAM heatmaps of images (KServe V1 explain)")
    return router
