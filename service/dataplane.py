"""The data plane over the model repository: the one door every transport goes through (``core.dataplane``).

Each request resolves its version once (``resolve``), holds it while it runs, and reaches a batcher only
through that version. Readiness is decided here, once, for every view of it. Every request that yields a tlserve
export's scores, whichever transport and API it came through, is shown to the ``PredictionMonitor`` here, in
``_observe`` (issue 17: prediction metrics and drift).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np

from service.codec import triton
from service.core.dataplane import (
    AVAILABLE,
    DEFAULT_TOP_K,
    Classification,
    Explanation,
    ModelConfiguration,
    ModelInfo,
    RepositoryEntry,
    ResolvedVersion,
    ServedInfo,
    SharedMemoryRef,
    SharedMemoryRegion,
    Target,
    VersionMetadata,
    VersionStatistics,
    VersionStatus,
)
from service.core.errors import InvalidInput, NotFound, NotImplementedYet, ServiceError
from service.observability.inference_stats import InferenceStats
from service.observability.predictions import PredictionMonitor
from service.records.predictions import confidences, top_predictions
from service.records.recorder import Recorder
from service.repository.config import ConfigError, specs_from_proto
from service.repository.manager import ModelRepository
from service.serving.images import IMAGE_SIGNATURES
from service.serving.version import ServedVersion
from service.shared_memory import SystemSharedMemory
from tlserve.contract import (
    CLASS_INDEX_INPUT,
    DEFAULT_SIGNATURE,
    EXPLAIN_SIGNATURE,
    EXPLAIN_TOP_CLASS,
    EXPLAINED_CLASS_OUTPUT,
    EXPLAINED_SCORE_OUTPUT,
    HEATMAP_OUTPUT,
    IMAGES_INPUT,
    PIXELS_SIGNATURE,
    SCORES_OUTPUT,
    UNKNOWN_SCORE_OUTPUT,
    valid_model_name,
)

log = logging.getLogger(__name__)


def ensure_model_name(name: str) -> str:
    """Model names are plain identifiers (``valid_model_name``): '../x', NUL bytes or a 100 KB name are NotFound,
    never a path, and the message does not echo more than a short prefix."""
    if not valid_model_name(name):
        raise NotFound.servable(name)
    return name


# The signatures of a tlserve export whose ``scores`` are its classifier's answer for each image.
SCORED_SIGNATURES = (*IMAGE_SIGNATURES, PIXELS_SIGNATURE)


class RepositoryDataPlane:
    def __init__(self, repository: ModelRepository, *, max_explain_images: int, request_timeout_s: float = 30.0,
                 ready_when: str = "all", stats: InferenceStats | None = None,
                 shared_memory: SystemSharedMemory | None = None, recorder: Recorder | None = None,
                 predictions: PredictionMonitor | None = None):
        """``recorder`` receives a record of every answered predict, classify and explain (request log, capture);
        ``predictions`` sees the scores of each (prediction metrics, drift). Either is None when not configured,
        so that it costs nothing then."""
        self.repository = repository
        self.max_explain_images = max_explain_images  # no default here: Settings holds the one
        self.stats = stats if stats is not None else InferenceStats()
        self.shared_memory = shared_memory or SystemSharedMemory()
        self.recorder = recorder
        self.predictions = predictions
        self.request_timeout_s = request_timeout_s
        self.require_all = ready_when == "all"
        self.draining = False

    # -- server ------------------------------------------------------------------------------------------
    def ready(self) -> bool:
        return not self.draining and self.repository.ready(require_all=self.require_all)

    def begin_drain(self) -> None:
        self.draining = True

    def deadline(self, timeout_s: float | None = None) -> float | None:
        """The server's request timeout, or the client's when it is shorter (or when the server sets none)."""
        timeout = self.request_timeout_s if timeout_s is None else min(timeout_s, self.request_timeout_s or timeout_s)
        return time.monotonic() + timeout if timeout else None

    # -- models ------------------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return self.repository.model_names()

    def default_model(self) -> str:
        names = self.repository.model_names()
        if len(names) != 1:
            raise InvalidInput(f"name the model: this server has {len(names)} ({', '.join(names)})")
        return names[0]

    def _version(self, target: Target) -> ServedVersion:
        return self.repository.resolve(ensure_model_name(target.model), target.version, target.label)

    def model_ready(self, target: Target) -> bool:
        self.repository.spec(ensure_model_name(target.model))  # an unknown model is NotFound, not "not ready"
        try:
            self._version(target)
        except NotFound:
            raise
        except ServiceError:  # loading, or no version available yet
            return False
        return True

    def status(self, model: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """Version states for ``model`` (one version when asked for by number or label)."""
        statuses = self.repository.statuses(ensure_model_name(model))
        if label is not None:
            spec = self.repository.spec(model)
            if label not in spec.labels:
                raise NotFound.label(label)
            version = spec.labels[label]
        if version is not None:
            statuses = [s for s in statuses if s.number == version]
            if not statuses:
                raise NotFound.servable(model, version)
        return statuses

    def model_info(self, name: str) -> ModelInfo:
        statuses = self.repository.statuses(ensure_model_name(name))
        served = {}
        for status in statuses:
            if status.state != AVAILABLE:
                continue
            try:
                version = self.repository.resolve(name, status.number)
            except ServiceError:  # it left between the two lookups: shown as a plain status
                continue
            served[status.number] = ServedInfo(status.number, version.class_names, version.image_size,
                                               version.batching.as_dict(), EXPLAIN_SIGNATURE in version.signatures)
        return ModelInfo(name, dict(self.repository.spec(name).labels), self.repository.ready_model(name),
                         statuses, served)

    def metadata(self, target: Target) -> VersionMetadata:
        version = self._version(target)
        return VersionMetadata(version.number, version.signatures, version.model.signature_defs)

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        entries: list[RepositoryEntry] = []
        for name in self.repository.model_names():
            try:
                statuses = self.repository.statuses(name)
                missing = self.repository.no_versions_reason(name)
            except NotFound:  # removed since the names were listed
                continue
            if missing and not ready_only:  # still a model of the repository: listed, as Triton lists one
                entries.append(RepositoryEntry(name, "", "UNAVAILABLE", missing))
            entries.extend(RepositoryEntry(name, str(s.number), "READY" if s.state == AVAILABLE else s.state, s.error)
                           for s in statuses if s.state == AVAILABLE or not ready_only)
        return entries

    def model_config(self, target: Target) -> ModelConfiguration:
        version = self._version(target)
        signatures = version.signatures
        signature = signatures.get(DEFAULT_SIGNATURE) or next(iter(signatures.values()))
        batched = signature.batchable
        available = [s.number for s in self.repository.statuses(target.model) if s.state == AVAILABLE]
        policy = self.repository.spec(target.model).policy
        return ModelConfiguration(
            name=target.model, version=version.number, versions=available, signature=signature,
            max_batch_size=version.batching.max_batch_size if batched else 0,
            batching=version.batching.as_dict() if batched else None, has_labels=version.class_names is not None,
            policy=policy.kind, policy_count=policy.count, policy_versions=tuple(policy.versions))

    def statistics(self, model: str | None = None, version: int | None = None) -> list[VersionStatistics]:
        if model is None:
            if version is not None:
                raise InvalidInput("a version of statistics needs a model name")
            names = self.repository.model_names()
        else:
            names = [ensure_model_name(model)]
        stats: list[VersionStatistics] = []
        for name in names:
            statuses = self.status(name, version)
            available = [s for s in statuses if s.state == AVAILABLE]
            if version is not None and not available:
                raise NotFound.servable(name, version)
            stats.extend(self.stats.snapshot(name, s.number) for s in sorted(available, key=lambda s: s.number))
        return stats

    async def load_model(self, name: str) -> bool:
        await self.repository.load(ensure_model_name(name))
        return self.repository.ready_model(name)

    async def unload_model(self, name: str) -> None:
        await self.repository.unload(ensure_model_name(name))

    async def reload_config(self, config: Any) -> None:
        try:
            specs = specs_from_proto(config)
        except ConfigError as exc:
            raise InvalidInput(str(exc)) from exc
        if not specs and config.WhichOneof("config") != "model_config_list":
            raise NotImplementedYet("only model_config_list configurations are supported")
        await self.repository.replace_specs(specs)

    # -- system shared memory ------------------------------------------------------------------------------
    def shared_memory_status(self, name: str = "") -> list[SharedMemoryRegion]:
        return self.shared_memory.status(name)

    def shared_memory_register(self, region: SharedMemoryRegion) -> None:
        self.shared_memory.register(region)

    def shared_memory_unregister(self, name: str = "") -> None:
        self.shared_memory.unregister(name)

    def shared_memory_read(self, ref: SharedMemoryRef) -> bytes:
        return self.shared_memory.read(ref)

    def shared_memory_write(self, ref: SharedMemoryRef, data: bytes) -> None:
        self.shared_memory.write(ref, data)

    # -- inference ---------------------------------------------------------------------------------------
    @contextmanager
    def resolve(self, target: Target) -> Iterator[ServedVersion]:
        version = self._version(target)
        version.acquire()
        try:
            yield version
        finally:
            version.release()

    @contextmanager
    def _held(self, target: Target, resolved: ResolvedVersion | None) -> Iterator[ServedVersion]:
        """The version ``resolved`` already holds, or the target's, resolved and held now."""
        if resolved is None:
            with self.resolve(target) as version:
                yield version
        elif isinstance(resolved, ServedVersion):
            yield resolved
        else:
            raise TypeError(f"not a version this data plane resolved: {resolved!r}")


    def _observe(self, version: ServedVersion, outputs: dict[str, np.ndarray], signature: str | None = None) -> None:
        """The one hook of the prediction metrics: a tlserve export's scores, from ``classify`` or from one of its
        SCORED_SIGNATURES (absent when a request filtered them out: then nothing is observed). Never fails a
        request: it runs after the answer is computed and only reads it."""
        if signature is not None and signature not in SCORED_SIGNATURES:
            return
        scores = outputs.get(SCORES_OUTPUT)
        if self.predictions is None or scores is None or not version.class_names or version.images is None:
            return
        try:
            self.predictions.observe(version.name, version.number, version.class_names, version.reference,
                                     np.asarray(scores), outputs.get(UNKNOWN_SCORE_OUTPUT),
                                     version.unknown_threshold)
        except Exception:  # a bug in the metrics must not cost the client its answer
            log.exception("prediction metrics of %s version %s failed", version.name, version.number)

    @asynccontextmanager
    async def _counted(self, model: str, version: ServedVersion, rows: int) -> AsyncIterator[None]:
        """Times the request the ``async with`` block serves and counts it in the version's statistics."""
        started = time.perf_counter_ns()
        try:
            yield
        except BaseException:
            self.stats.record_request(model, version.number, ok=False, ns=time.perf_counter_ns() - started, rows=rows)
            raise
        self.stats.record_request(model, version.number, ok=True, ns=time.perf_counter_ns() - started, rows=rows)

    async def predict(self, target: Target, signature: str, inputs: dict[str, np.ndarray], *,
                      deadline: float | None = None, output_filter: list[str] | None = None,
                      class_counts: dict[str, int] | None = None, resolved: ResolvedVersion | None = None
                      ) -> tuple[int, dict[str, np.ndarray]]:
        signature = signature or DEFAULT_SIGNATURE
        first = next(iter(inputs.values()), None)
        rows = int(np.shape(first)[0]) if first is not None and np.ndim(first) else 1
        with self._held(target, resolved) as version:
            async with self._counted(target.model, version, rows):
                if class_counts and output_filter:
                    unknown = sorted(set(class_counts) - set(output_filter))
                    if unknown:
                        raise InvalidInput(f"classification asked for outputs not requested: {unknown}")
                outputs = await version.predict(signature, inputs, deadline=deadline, output_filter=output_filter)
                self._observe(version, outputs, signature)  # the scores, before a classification rewrites them
                for name, count in (class_counts or {}).items():
                    if name not in outputs:
                        raise InvalidInput(f"unknown output '{name}'; signature '{signature}' has {sorted(outputs)}")
                    outputs[name] = triton.classify_output(name, outputs[name], count, version.class_names,
                                                           version.signature(signature).batchable)
        if self.recorder:
            self.recorder.observe(target.model, version, signature=signature, inputs=inputs, outputs=outputs)
        return version.number, outputs

    async def classify(self, target: Target, top_k: int = DEFAULT_TOP_K, *, images: list[bytes] | None = None,
                       pixels: np.ndarray | None = None, deadline: float | None = None,
                       unknown_threshold: float | None = None) -> Classification:
        if top_k < 1:
            raise InvalidInput(f"top_k must be >= 1, got {top_k}")
        if unknown_threshold is not None and not math.isfinite(unknown_threshold):
            raise InvalidInput(f"unknown_threshold must be a finite number, got {unknown_threshold}")
        if images and pixels is not None:
            raise InvalidInput("send either images or pixels, not both")
        with self.resolve(target) as version:
            if not version.images or not version.class_names:
                raise NotFound(f"model '{target.model}' is not an image classifier exported by tlserve")
            async with self._counted(target.model, version, len(pixels) if pixels is not None else len(images or [])):
                if pixels is not None:
                    outputs = await version.classify_pixels(pixels, deadline=deadline)
                else:
                    outputs = await version.classify_images(images or [], deadline=deadline)
            self._observe(version, outputs)
            names = version.class_names
            threshold = version.unknown_threshold if unknown_threshold is None else unknown_threshold
        predictions = top_predictions(outputs[SCORES_OUTPUT], names, top_k)
        # No unknown score (an export before issue 16) or no threshold: every image confident.
        confident = confidences(outputs.get(UNKNOWN_SCORE_OUTPUT), threshold, len(predictions)) or \
            [True] * len(predictions)
        answer = Classification(version.number, predictions, confident)
        if self.recorder:
            self.recorder.observe(target.model, version, images=images, classification=answer)
        return answer

    async def explain(self, target: Target, images: list[bytes], class_indices: list[int] | None = None, *,
                      deadline: float | None = None) -> tuple[int, list[Explanation]]:
        if not images:
            raise InvalidInput("no images in the request")
        if len(images) > self.max_explain_images:
            raise InvalidInput(f"at most {self.max_explain_images} images per explain request (--max-explain-images), "
                               f"got {len(images)}")
        indices = [EXPLAIN_TOP_CLASS] * len(images) if class_indices is None else list(class_indices)
        if len(indices) != len(images):
            raise InvalidInput(f"one class_index per image: {len(indices)} for {len(images)} images")
        with self.resolve(target) as version:
            if EXPLAIN_SIGNATURE not in version.signatures or not version.class_names:
                raise NotFound(f"model '{target.model}' version {version.number} has no '{EXPLAIN_SIGNATURE}' "
                               "signature (an export from before issue 16, or not a tlserve export)")
            names = version.class_names
            for i, c in enumerate(indices):
                if not EXPLAIN_TOP_CLASS <= c < len(names):
                    raise InvalidInput(f"class_index of image {i} must be -1 (its top class) or 0..{len(names) - 1}, "
                                       f"got {c!r}")
            async with self._counted(target.model, version, len(images)):
                outputs = await version.predict(EXPLAIN_SIGNATURE, {
                    IMAGES_INPUT: np.array(images, dtype=object),
                    CLASS_INDEX_INPUT: np.array(indices, dtype=np.int32)}, deadline=deadline)
        if self.recorder:  # the explained class and score, not the heatmaps
            self.recorder.observe(target.model, version, signature=EXPLAIN_SIGNATURE, images=images, outputs={
                k: outputs[k] for k in (EXPLAINED_CLASS_OUTPUT, EXPLAINED_SCORE_OUTPUT)})
        return version.number, [
            Explanation(int(c), names[int(c)], float(score), heatmap) for c, score, heatmap in zip(
                outputs[EXPLAINED_CLASS_OUTPUT], outputs[EXPLAINED_SCORE_OUTPUT], outputs[HEATMAP_OUTPUT], strict=True)]
