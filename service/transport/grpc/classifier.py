"""tlserve's own gRPC service, ``tlserve.classifier.v1.Classifier``: typed top-k classification."""

from __future__ import annotations

import math

import numpy as np

from service.core.dataplane import DEFAULT_TOP_K, DataPlane, Target
from service.core.errors import InvalidInput
from service.transport.grpc.calls import describe, rpc, timeout_of
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc

PROTOCOL = "classifier-grpc"


def _pixels(message) -> np.ndarray:
    shape = (message.count, message.height, message.width, message.channels)
    if len(message.data) != math.prod(shape):
        raise InvalidInput(f"pixels: {len(message.data)} bytes do not make uint8 {list(shape)}")
    return np.frombuffer(message.data, np.uint8).reshape(shape)


class ClassifierServicer(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, dataplane: DataPlane, metrics):
        self.dataplane, self.metrics = dataplane, metrics

    def _target(self, request) -> Target:
        """The model and version a ClassifyRequest or ExplainRequest names (the newest when neither is set)."""
        selector = request.WhichOneof("selector")
        return Target(request.model or self.dataplane.default_model(),
                      request.version if selector == "version" and request.version else None,
                      request.version_label if selector == "version_label" and request.version_label else None)

    @rpc(PROTOCOL, "classify")
    async def Classify(self, request, context):
        target = self._target(request)
        describe(model=target.model)
        pixels = _pixels(request.pixels) if request.HasField("pixels") else None
        answer = await self.dataplane.classify(
            target, request.top_k or DEFAULT_TOP_K, images=list(request.images), pixels=pixels,
            deadline=self.dataplane.deadline(timeout_of(context)),
            unknown_threshold=request.unknown_threshold if request.HasField("unknown_threshold") else None)
        describe(version=answer.version)
        response = classifier_pb2.ClassifyResponse(model=target.model, version=answer.version)
        for row, confident in zip(answer.predictions, answer.confident, strict=True):
            result = response.results.add(confident=confident)
            for p in row:
                result.labels.add(label=p.label, index=p.index, score=p.score)
        return response

    @rpc(PROTOCOL, "explain")
    async def Explain(self, request, context):
        target = self._target(request)
        describe(model=target.model)
        number, explanations = await self.dataplane.explain(
            target, list(request.images), list(request.class_index) or None,
            deadline=self.dataplane.deadline(timeout_of(context)))
        describe(version=number)
        response = classifier_pb2.ExplainResponse(model=target.model, version=number)
        for e in explanations:
            height, width = e.heatmap.shape
            response.results.add(label=e.label, index=e.index, score=e.score, height=height, width=width,
                                 heatmap=e.heatmap.ravel().tolist())
        return response

    def _model_info(self, name: str) -> classifier_pb2.ModelInfo:
        model = self.dataplane.model_info(name)
        info = classifier_pb2.ModelInfo(name=name)
        for status in model.versions:
            info.versions.add(version=status.number, state=status.state, error=status.error)
        info.version_labels.update(model.version_labels)
        if model.served:
            newest = model.served[max(model.served)]  # the version a request without one is served by
            info.class_names.extend(newest.class_names or [])
            if newest.image_size:
                info.image_size = newest.image_size
        return info

    @rpc(PROTOCOL, "list_models")
    async def ListModels(self, request, context):
        names = self.dataplane.model_names()
        return classifier_pb2.ListModelsResponse(models=[self._model_info(n) for n in names])

    @rpc(PROTOCOL, "get_model")
    async def GetModel(self, request, context):
        describe(model=request.name)
        return self._model_info(request.name)
