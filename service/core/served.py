"""A model version that serves: its loaded model, its batchers, and how requests reach them.

Two paths, as DESIGN.md says:
- a tlserve export (it has ``preprocess`` and ``pixels``): every image's header is checked on its own, then
  encoded images and pixels of all requests share one batcher. A batch decodes all its encoded images in
  one ``preprocess`` call mapped over the batch (one TF call per image cost more than the model at small
  sizes); if that call fails, the images are decoded one by one so a bad image fails only its own request.
  Then all pixels run through ``pixels`` at once. ``serving_default`` and ``classify`` requests take this
  path too, so every transport and signature of one version feeds one queue;
- any other SavedModel: requests are split into rows per named input and rows are batched per signature
  (a failing batch is retried row by row by the batcher); signatures without a batch dimension run alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from service.batching.batcher import BatchStats, DynamicBatcher
from service.codec.images import ImageLimits, inspect_image
from service.core.errors import InternalError, InvalidInput, NotFound, ServiceError, TooLarge, UnsupportedMediaType
from service.core.tensors import SignatureInfo
from service.runtime.savedmodel import LoadedModel
from tlserve import contract
from tlserve.contract import EXAMPLE_IMAGE_KEY, PREPROCESS_SIGNATURE, valid_model_name

IMAGE_SIGNATURES = (contract.DEFAULT_SIGNATURE, contract.CLASSIFY_SIGNATURE)  # they take batches of encoded images
IMAGES_QUEUE = contract.PIXELS_SIGNATURE  # an image model's ``pixels`` batcher also takes encoded images


@dataclass(frozen=True)
class _EncodedImage:
    """An item of the images queue still to decode; ``index`` is its place in its request, for errors."""

    data: bytes
    index: int


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 32
    batch_timeout_s: float = 0.002
    max_queue: int = 256
    max_concurrent_batches: int = 1
    allowed_batch_sizes: tuple[int, ...] = ()  # pad batches up to one of these; () = run any size


class ServedVersion:
    """One loaded version of a model; created off the event loop, used on it."""

    def __init__(self, name: str, number: int, model: LoadedModel, batching: BatchingSettings,
                 image_limits: ImageLimits = ImageLimits(),
                 on_batch: Callable[[str, int, BatchStats, int], None] | None = None):
        self.name, self.number, self.model = name, number, model
        self.path: Path = model.path
        self.batching = batching
        self.image_limits = image_limits
        self._on_batch = on_batch
        labels_file = self.path / contract.LABELS_FILE
        self.class_names: list[str] | None = labels_file.read_text().splitlines() if labels_file.is_file() else None
        self.is_image_model = set(contract.IMAGE_MODEL_SIGNATURES) <= set(model.signatures)
        self._batchers: dict[str, DynamicBatcher] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

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
        if self.is_image_model and signature in IMAGE_SIGNATURES:
            images = self._images_from(signature, info, inputs)
            outputs = await self.classify_images(images, deadline=deadline)
        elif self.is_image_model and signature == PREPROCESS_SIGNATURE:
            await asyncio.to_thread(self.check_images, signature, inputs)  # the graph decodes: check headers first
            outputs = await asyncio.to_thread(self.model.run, signature, inputs)
        elif info.batchable:
            outputs = await self._batched(signature, info, inputs, deadline)
        else:
            outputs = await asyncio.to_thread(self.model.run, signature, inputs)
        return _filtered(outputs, output_filter, signature)

    async def classify_images(self, images: list[bytes], *, deadline: float | None = None) -> dict[str, np.ndarray]:
        """Encoded images -> ``scores`` and ``classes`` of a tlserve export, through the shared pixels queue."""
        if not images:
            raise InvalidInput("no images in the request")
        await asyncio.to_thread(self._check_headers, images)
        rows = await self._batcher(IMAGES_QUEUE).submit([_EncodedImage(image, i) for i, image in enumerate(images)],
                                                        deadline=deadline)
        return _stack_rows(rows)

    async def classify_pixels(self, pixels: np.ndarray, *, deadline: float | None = None) -> dict[str, np.ndarray]:
        """uint8 pixels ``[N, H, W, 3]`` at the model's size -> ``scores`` and ``classes``, through the pixels queue."""
        expected = self.model.signatures[contract.PIXELS_SIGNATURE].inputs[contract.PIXELS_INPUT].shape[1:]
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != tuple(expected):
            raise InvalidInput(f"pixels must be uint8 [N, {', '.join(map(str, expected))}], "
                               f"got {pixels.dtype} {list(pixels.shape)}")
        if len(pixels) == 0:
            raise InvalidInput("no images in the request")
        rows = await self._batcher(IMAGES_QUEUE).submit([{contract.PIXELS_INPUT: p} for p in pixels],
                                                        deadline=deadline)
        return _stack_rows(rows)

    def _check_headers(self, images: list[bytes]) -> None:
        """Header checks only: they refuse bombs and non-images before any decoder allocates."""
        for index, image in enumerate(images):
            try:
                inspect_image(image, self.image_limits)
            except (InvalidInput, UnsupportedMediaType, TooLarge) as exc:
                raise type(exc)(f"image {index}: {exc.message}") from exc

    def _run_images(self, items: list[dict[str, np.ndarray] | _EncodedImage]) -> list[dict[str, np.ndarray] | Exception]:
        """One batch of the images queue (pixel rows and encoded images): decode the encoded ones together,
        then run every row through ``pixels`` at once."""
        results: list[dict[str, np.ndarray] | Exception | None] = [None] * len(items)
        rows = {k: item for k, item in enumerate(items) if not isinstance(item, _EncodedImage)}
        encoded = {k: item for k, item in enumerate(items) if isinstance(item, _EncodedImage)}
        if encoded:
            for k, decoded in zip(encoded, self._decode_all(list(encoded.values()))):
                if isinstance(decoded, Exception):
                    results[k] = decoded
                else:
                    rows[k] = {contract.PIXELS_INPUT: decoded}
        if rows:
            for k, outputs in zip(rows, self._run_rows(contract.PIXELS_SIGNATURE, list(rows.values()))):
                results[k] = outputs
        return results

    def _decode_all(self, images: list[_EncodedImage]) -> list[np.ndarray | ServiceError]:
        """Pixels of every image, in one ``preprocess`` call; if that fails, image by image, errors in place."""
        try:
            batch = self.model.run_each(PREPROCESS_SIGNATURE,
                                        {contract.IMAGE_INPUT: np.array([i.data for i in images], dtype=object)})
            return list(batch[contract.PREPROCESS_OUTPUT])
        except InvalidInput:
            pass
        decoded: list[np.ndarray | ServiceError] = []
        for image in images:
            try:
                outputs = self.model.run(PREPROCESS_SIGNATURE,
                                         {contract.IMAGE_INPUT: np.array(image.data, dtype=object)})
                decoded.append(outputs[contract.PREPROCESS_OUTPUT])
            except InvalidInput as exc:
                decoded.append(InvalidInput(f"image {image.index}: {exc.message}"))
        return decoded

    def check_images(self, signature: str, inputs: dict[str, np.ndarray]) -> None:
        """Header checks on the encoded images of a request to an image model's decoding signature, for the paths
        that hand them to the graph as they are: ``preprocess`` called directly, and warm-up records."""
        if not self.is_image_model:
            return
        info = self.model.signature(signature)
        if signature in IMAGE_SIGNATURES:
            self._check_headers(self._images_from(signature, info, inputs))
        elif signature == PREPROCESS_SIGNATURE and set(inputs) == set(info.inputs):
            (value,) = inputs.values()
            images = np.asarray(value, dtype=object).ravel()
            if not all(isinstance(image, bytes) for image in images):
                raise InvalidInput(f"signature '{signature}' takes an encoded image (bytes)")
            self._check_headers(list(images))

    def _images_from(self, signature: str, info: SignatureInfo, inputs: dict[str, np.ndarray]) -> list[bytes]:
        (key,) = info.inputs  # tlserve's image signatures have exactly one input
        if set(inputs) != {key}:
            raise InvalidInput(f"signature '{signature}' takes one input '{key}', got {sorted(inputs)}")
        values = np.asarray(inputs[key])
        if values.dtype != object or values.ndim != 1:
            raise InvalidInput(f"input '{key}' must be a 1-D tensor of encoded images (bytes)")
        if signature == contract.CLASSIFY_SIGNATURE:
            return [_image_from_example(v) for v in values]
        return [bytes(v) for v in values]

    async def _batched(self, signature, info: SignatureInfo, inputs, deadline) -> dict[str, np.ndarray]:
        sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in inputs.items()}
        if set(inputs) != set(info.inputs):
            raise InvalidInput(f"signature '{signature}' takes inputs {sorted(info.inputs)}, got {sorted(inputs)}")
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise InvalidInput(f"inputs must share one batch dimension, got sizes {sizes}")
        (n,) = set(sizes.values())
        if n == 0:
            raise InvalidInput("inputs have an empty batch dimension")
        rows = [{name: value[i] for name, value in inputs.items()} for i in range(n)]
        return _stack_rows(await self._batcher(signature).submit(rows, deadline=deadline))

    def _batcher(self, signature: str) -> DynamicBatcher:
        batcher = self._batchers.get(signature)
        if batcher is None:
            if self.is_image_model and signature == IMAGES_QUEUE:
                run_batch = self._run_images
            else:
                def run_batch(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
                    return self._run_rows(signature, rows)

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
            self._batchers[signature] = batcher
        return batcher

    def _run_rows(self, signature: str, rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        n = len(rows)
        padded = next((size for size in self.batching.allowed_batch_sizes if size >= n), n)
        # Padding repeats the last row: valid input whose outputs are dropped below.
        rows = rows + [rows[-1]] * (padded - n)
        try:
            stacked = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
        except ValueError as exc:
            raise InvalidInput(f"rows of different shapes cannot be batched: {exc}") from exc
        outputs = self.model.run(signature, stacked)
        if any(np.ndim(v) == 0 or np.shape(v)[0] != padded for v in outputs.values()):
            raise InternalError(f"signature '{signature}' did not return one output row per input row")
        return [{name: value[i] for name, value in outputs.items()} for i in range(n)]


def _stack_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def _filtered(outputs: dict[str, np.ndarray], wanted: list[str] | None, signature: str) -> dict[str, np.ndarray]:
    if not wanted:
        return outputs
    unknown = [name for name in wanted if name not in outputs]
    if unknown:
        raise InvalidInput(f"unknown output {unknown}; signature '{signature}' has {sorted(outputs)}")
    return {name: outputs[name] for name in wanted}


def _image_from_example(serialized) -> bytes:
    from tensorflow.core.example import example_pb2

    try:
        example = example_pb2.Example.FromString(bytes(serialized))
    except Exception as exc:  # protobuf raises DecodeError, a plain Exception subclass
        raise InvalidInput(f"not a serialized tf.Example: {exc}") from exc
    values = example.features.feature[EXAMPLE_IMAGE_KEY].bytes_list.value
    if len(values) != 1:
        raise InvalidInput(f"each tf.Example needs exactly one '{EXAMPLE_IMAGE_KEY}' bytes value")
    return values[0]


def ensure_model_name(name: str) -> str:
    """Model names are plain identifiers (``valid_model_name``): '../x', NUL bytes or a 100 KB name are NotFound,
    never a path, and the message does not echo more than a short prefix."""
    if not valid_model_name(name):
        raise NotFound(f"model {name[:100]!r} not found")
    return name
