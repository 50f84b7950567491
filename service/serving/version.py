"""A model version that serves: its loaded model, its batchers, and how requests reach them.

Two paths, as DESIGN.md says:
- a tlserve export (``images.py``): ``serving_default`` and ``classify`` requests, and pixels, all feed one
  queue per version, whichever transport and signature they came through;
- any other SavedModel (``rows.py``): requests are split into rows per named input and rows are batched per
  signature (a failing batch is retried row by row by the batcher); signatures without a batch dimension
  run alone.
It implements ``core.dataplane.ResolvedVersion`` for the transports; the repository drains and stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.batching.batcher import BatchStats, DynamicBatcher
from service.codec.images import ImageLimits
from service.core.errors import InvalidInput
from service.core.tensors import SignatureInfo
from service.observability.drift import Reference
from service.runtime.savedmodel import LoadedModel
from service.serving import rows as row_ops
from service.serving.images import IMAGE_SIGNATURES, EncodedImage, ImagePipeline, is_image_model
from tlserve.contract import EXPLAIN_SIGNATURE, PIXELS_INPUT, PIXELS_SIGNATURE, PREPROCESS_SIGNATURE

IMAGES_QUEUE = PIXELS_SIGNATURE  # an image model's ``pixels`` batcher also takes encoded images
# A request's image headers are checked on the event loop up to this many encoded bytes: a header costs ~20 us of
# CPU, a hop to a worker thread ~50 us more. Past it, in a thread: a GIF's frames are scanned, which takes longer.
INLINE_CHECK_BYTES = 64 * 1024


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 32
    batch_timeout_s: float = 0.002
    max_queue: int = 256
    max_concurrent_batches: int = 2
    allowed_batch_sizes: tuple[int, ...] = ()  # pad batches up to one of these; () = run any size

    def as_dict(self) -> dict[str, Any]:
        return {"max_batch_size": self.max_batch_size, "batch_timeout_ms": round(self.batch_timeout_s * 1000, 3),
                "max_queue": self.max_queue, "max_concurrent_batches": self.max_concurrent_batches,
                "allowed_batch_sizes": list(self.allowed_batch_sizes)}


class ServedVersion:
    """One loaded version of a model; created off the event loop, used on it."""

    def __init__(self, name: str, number: int, model: LoadedModel, batching: BatchingSettings,
                 image_limits: ImageLimits = ImageLimits(), class_names: list[str] | None = None,
                 on_batch: Callable[[str, int, BatchStats, int], None] | None = None,
                 unknown_threshold: float | None = None, reference: Reference | None = None):
        self.name, self.number, self.model = name, number, model
        # The export's drift reference (issue 17), read once at load; None: no drift for this version.
        self.reference = reference
        # The export's metadata "unknown" threshold (read once, at load); None for an export without one.
        self.unknown_threshold = unknown_threshold
        self.path: Path = model.path
        self.batching = batching
        self.class_names = class_names
        self.images = ImagePipeline(model, image_limits, batching.allowed_batch_sizes) \
            if is_image_model(model) else None
        self._on_batch = on_batch
        self._batchers: dict[str, DynamicBatcher] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def signatures(self) -> dict[str, SignatureInfo]:
        return self.model.signatures

    def signature(self, name: str) -> SignatureInfo:
        return self.model.signature(name)

    @property
    def image_size(self) -> int | None:
        return self.images.pixels_shape[0] if self.images else None

    # -- lifecycle -----------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Count a request in; the version is not unloaded while any is in flight."""
        self._in_flight += 1
        self._idle.clear()

    def release(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def drain_and_stop(self) -> None:
        """Wait for in-flight requests, then stop the batchers (queued work finishes first)."""
        await self._idle.wait()
        for batcher in self._batchers.values():
            await batcher.stop()

    @property
    def queue_depth(self) -> int:
        return sum(b.queue_depth for b in self._batchers.values())

    # -- requests ------------------------------------------------------------------------------------
    async def predict(self, signature: str, inputs: dict[str, np.ndarray], *, deadline: float | None = None,
                      output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        """Named inputs through ``signature``; named outputs (all, or those in ``output_filter``)."""
        info = self.model.signature(signature)
        if self.images and signature == EXPLAIN_SIGNATURE:  # decoded by the graph, batched as rows: check first
            await asyncio.to_thread(self.images.check_request, signature, inputs)
        if self.images and signature in IMAGE_SIGNATURES:
            outputs = await self.classify_images(self.images.images_from(signature, info, inputs), deadline=deadline)
        elif self.images and signature == PREPROCESS_SIGNATURE:
            await asyncio.to_thread(self.images.check_request, signature, inputs)  # the graph decodes: check first
            outputs = await asyncio.to_thread(self.model.run, signature, inputs)
        elif info.batchable:
            rows = row_ops.split_rows(signature, info.inputs, inputs)
            outputs = row_ops.stack_rows(await self._batcher(signature).submit(rows, deadline=deadline))
        else:
            outputs = await asyncio.to_thread(self.model.run, signature, inputs)
        return row_ops.filtered(outputs, output_filter, signature)

    async def classify_images(self, images: list[bytes], *, deadline: float | None = None) -> dict[str, np.ndarray]:
        """Encoded images -> ``scores`` and ``classes`` of a tlserve export, through the shared pixels queue."""
        pipeline = self._image_pipeline()
        if sum(len(image) for image in images) <= INLINE_CHECK_BYTES:
            pipeline.check_headers(images)
        else:
            await asyncio.to_thread(pipeline.check_headers, images)
        rows = await self._batcher(IMAGES_QUEUE).submit([EncodedImage(image, i) for i, image in enumerate(images)],
                                                        deadline=deadline)
        return row_ops.stack_rows(rows)

    async def classify_pixels(self, pixels: np.ndarray, *, deadline: float | None = None) -> dict[str, np.ndarray]:
        """uint8 pixels ``[N, H, W, 3]`` at the model's size -> ``scores`` and ``classes``, through the queue."""
        self._image_pipeline().check_pixels(pixels)
        rows = await self._batcher(IMAGES_QUEUE).submit([{PIXELS_INPUT: p} for p in pixels], deadline=deadline)
        return row_ops.stack_rows(rows)

    def check_warmup_record(self, signature: str, inputs: dict[str, np.ndarray]) -> None:
        """A warm-up record is input from outside like any request: an image model checks its images."""
        if self.images:
            self.images.check_request(signature, inputs)

    def _image_pipeline(self) -> ImagePipeline:
        if self.images is None:
            raise InvalidInput(f"model '{self.name}' is not an image model exported by tlserve")
        return self.images

    def _batcher(self, queue: str) -> DynamicBatcher:
        batcher = self._batchers.get(queue)
        if batcher is None:
            run_batch: Callable[[list], list]
            if self.images and queue == IMAGES_QUEUE:
                run_batch = self.images.run_batch
            else:
                def run_batch(rows: list) -> list:
                    return row_ops.run_rows(self.model, queue, rows, self.batching.allowed_batch_sizes)

            async def run(rows: list) -> list:
                return await asyncio.to_thread(run_batch, rows)

            def stats(s: BatchStats) -> None:
                if self._on_batch:
                    self._on_batch(self.name, self.number, s, self.queue_depth)

            b = self.batching
            batcher = DynamicBatcher(run, max_batch_size=b.max_batch_size, batch_timeout_s=b.batch_timeout_s,
                                     max_queue=b.max_queue, max_concurrent_batches=b.max_concurrent_batches,
                                     on_batch=stats)
            batcher.start()
            self._batchers[queue] = batcher
        return batcher
