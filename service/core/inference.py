"""InferenceService: what every transport calls. Speaks model names, versions and named numpy tensors."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from service.core.errors import InvalidInput, NotFound
from service.core.served import ServedVersion, ensure_model_name
from service.core.tensors import SignatureInfo
from service.repository.manager import ModelRepository, VersionStatus
from tlserve.contract import DEFAULT_SIGNATURE, SCORES_OUTPUT


@dataclass(frozen=True)
class Target:
    """Which model a request names: a version number or a version label, or neither (the newest)."""

    model: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float


class InferenceService:
    def __init__(self, repository: ModelRepository, request_timeout_s: float = 30.0):
        self.repository = repository
        self.request_timeout_s = request_timeout_s

    def deadline(self, timeout_s: float | None = None) -> float | None:
        """A ``time.monotonic()`` deadline: the server's request timeout, or the client's when it is shorter
        (or when the server sets none); None when neither applies."""
        timeout = self.request_timeout_s if timeout_s is None else min(timeout_s, self.request_timeout_s or timeout_s)
        return time.monotonic() + timeout if timeout else None

    def default_model(self) -> str:
        names = self.repository.model_names()
        if len(names) != 1:
            raise InvalidInput(f"name the model: this server has {len(names)} ({', '.join(names)})")
        return names[0]

    def resolve(self, target: Target) -> ServedVersion:
        return self.repository.resolve(ensure_model_name(target.model), target.version, target.label)

    @contextmanager
    def using(self, target: Target):
        """The resolved version, held so that it is not unloaded while the request runs."""
        version = self.resolve(target)
        version.acquire()
        try:
            yield version
        finally:
            version.release()

    async def predict(self, target: Target, signature: str, inputs: dict[str, np.ndarray], *,
                      deadline: float | None = None, output_filter: list[str] | None = None
                      ) -> tuple[ServedVersion, dict[str, np.ndarray]]:
        with self.using(target) as version:
            outputs = await version.predict(signature or DEFAULT_SIGNATURE, inputs, deadline=deadline,
                                            output_filter=output_filter)
            return version, outputs

    async def classify(self, target: Target, top_k: int, *, images: list[bytes] | None = None,
                       pixels: np.ndarray | None = None, deadline: float | None = None
                       ) -> tuple[ServedVersion, list[list[Prediction]]]:
        """The ``top_k`` classes of each encoded image (or each pixels row), best first, for a tlserve export."""
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        with self.using(target) as version:
            if not version.is_image_model or not version.class_names:
                raise NotFound(f"model '{target.model}' is not an image classifier exported by tlserve")
            if pixels is not None:
                outputs = await version.classify_pixels(pixels, deadline=deadline)
            else:
                outputs = await version.classify_images(images or [], deadline=deadline)
        scores = outputs[SCORES_OUTPUT]
        k = min(top_k, scores.shape[1])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return version, [[Prediction(version.class_names[i], int(i), float(row[i])) for i in order]
                         for row, order in zip(scores, best)]

    def signatures(self, target: Target) -> tuple[ServedVersion, dict[str, SignatureInfo]]:
        version = self.resolve(target)
        return version, version.model.signatures

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Version states for ``model`` (one version when asked for by number or label)."""
        statuses = self.repository.statuses(ensure_model_name(model))
        if label is not None:
            spec = self.repository.spec(model)
            if label not in spec.labels:
                raise NotFound(f"model '{model}' has no version label '{label}'")
            version = spec.labels[label]
        if version is not None:
            statuses = [s for s in statuses if s.number == version]
            if not statuses:
                raise NotFound(f"model '{model}' version {version} not found")
        return statuses
