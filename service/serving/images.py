"""The image pipeline of a tlserve export (it has ``preprocess`` and ``pixels`` signatures).

Every image's header is checked on its own first (bombs and non-images are refused before any decoder
allocates). Then encoded images and pixels of all requests share one batcher. A batch of encoded images
only (the usual case) is one ``serving_default`` call: the graph maps the decoder over the batch and runs
the model, so pixels never travel through numpy in between (one TF call per image cost more than the
model at small sizes, and the trip through numpy cost a quarter of the model's CPU at 32 px). A batch that
mixes pixels and encoded images decodes the encoded ones in one ``preprocess`` call mapped over them, then
runs every row through ``pixels`` at once. If a call with encoded images fails, the images are decoded one
by one so that a bad image fails only its own request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.codec.images import ImageLimits, inspect_image
from service.codec.tf_example import image_from_example
from service.core.dataplane import MAX_IMAGES_PER_REQUEST
from service.core.errors import InvalidInput, ServiceError, TooLarge, UnsupportedMediaType
from service.core.tensors import SignatureInfo
from service.runtime.savedmodel import LoadedModel
from service.serving.rows import run_rows, run_stacked
from tlserve.contract import (
    CLASSIFY_SIGNATURE,
    DEFAULT_SIGNATURE,
    EXPLAIN_SIGNATURE,
    IMAGE_INPUT,
    IMAGE_MODEL_SIGNATURES,
    IMAGES_INPUT,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    PREPROCESS_OUTPUT,
    PREPROCESS_SIGNATURE,
)

IMAGE_SIGNATURES = (DEFAULT_SIGNATURE, CLASSIFY_SIGNATURE)  # encoded images in, scores out: through the queue


def is_image_model(model: LoadedModel) -> bool:
    return set(IMAGE_MODEL_SIGNATURES) <= set(model.signatures)


@dataclass(frozen=True)
class EncodedImage:
    """An item of the images queue still to decode; ``index`` is its place in its request, for errors."""

    data: bytes
    index: int


def check_count(count: int) -> None:
    if count == 0:
        raise InvalidInput("no images in the request")
    if count > MAX_IMAGES_PER_REQUEST:
        raise InvalidInput(f"at most {MAX_IMAGES_PER_REQUEST} images per request, got {count}")


class ImagePipeline:
    def __init__(self, model: LoadedModel, limits: ImageLimits, allowed_batch_sizes: tuple[int, ...] = ()):
        self.model = model
        self.limits = limits
        self.allowed_batch_sizes = allowed_batch_sizes
        shape = model.signatures[PIXELS_SIGNATURE].inputs[PIXELS_INPUT].shape
        if shape is None or len(shape) != 4:  # a version this can't serve is refused at load, never at a request
            raise InvalidInput(f"signature '{PIXELS_SIGNATURE}' must take [N, H, W, C] pixels, got {shape}")
        self.pixels_shape = tuple(shape[1:])

    # -- per request, before the queue ---------------------------------------------------------------
    def check_headers(self, images: list[bytes]) -> None:
        """Header checks only (blocking: run off the event loop)."""
        check_count(len(images))
        for index, image in enumerate(images):
            try:
                inspect_image(image, self.limits)
            except (InvalidInput, UnsupportedMediaType, TooLarge) as exc:
                raise type(exc)(f"image {index}: {exc.message}") from exc

    def check_pixels(self, pixels: np.ndarray) -> None:
        """uint8 ``[N, H, W, 3]`` at the model's size."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.pixels_shape:
            raise InvalidInput(f"pixels must be uint8 [N, {', '.join(map(str, self.pixels_shape))}], "
                               f"got {pixels.dtype} {list(pixels.shape)}")
        check_count(len(pixels))

    def images_from(self, signature: str, info: SignatureInfo, inputs: dict[str, np.ndarray]) -> list[bytes]:
        """The encoded images of a request to ``serving_default`` (images) or ``classify`` (tf.Examples)."""
        (key,) = info.inputs  # tlserve's image signatures have exactly one input
        if set(inputs) != {key}:
            raise InvalidInput(f"signature '{signature}' takes one input '{key}', got {sorted(inputs)}")
        values = np.asarray(inputs[key])
        if values.dtype != object or values.ndim != 1:
            raise InvalidInput(f"input '{key}' must be a 1-D tensor of encoded images (bytes)")
        if signature == CLASSIFY_SIGNATURE:
            return [image_from_example(v) for v in values]
        return [bytes(v) for v in values]

    def check_request(self, signature: str, inputs: dict[str, np.ndarray]) -> None:
        """Header checks on the encoded images of a request to a decoding signature, for the paths that hand
        them to the graph as they are: ``preprocess`` and ``explain`` called directly, and warm-up records."""
        info = self.model.signature(signature)
        if signature in IMAGE_SIGNATURES:
            self.check_headers(self.images_from(signature, info, inputs))
        elif signature == PREPROCESS_SIGNATURE and set(inputs) == set(info.inputs):
            (value,) = inputs.values()
            images = np.asarray(value, dtype=object).ravel()
            if not all(isinstance(image, bytes) for image in images):
                raise InvalidInput(f"signature '{signature}' takes an encoded image (bytes)")
            self.check_headers(list(images))
        elif signature == EXPLAIN_SIGNATURE and IMAGES_INPUT in inputs:
            images = np.asarray(inputs[IMAGES_INPUT], dtype=object).ravel()
            if not all(isinstance(image, bytes) for image in images):
                raise InvalidInput(f"input '{IMAGES_INPUT}' of signature '{signature}' takes encoded images (bytes)")
            self.check_headers(list(images))

    # -- one batch of the queue (blocking: a worker thread) -------------------------------------------
    def run_batch(self, items: list[dict[str, np.ndarray] | EncodedImage]) -> list[dict[str, np.ndarray] | Exception]:
        """Pixel rows and encoded images through the model; a bad image's error takes its place in the results."""
        encoded = {k: item for k, item in enumerate(items) if isinstance(item, EncodedImage)}
        if len(encoded) == len(items):
            try:
                return run_stacked(self.model, DEFAULT_SIGNATURE,  # type: ignore[return-value]
                                   {IMAGES_INPUT: np.array([i.data for i in encoded.values()], dtype=object)},
                                   len(items), self.allowed_batch_sizes)
            except InvalidInput:  # an image the decoder refuses: decoded alone below, so only it fails
                decoded = self._decode_each(list(encoded.values()))
        else:
            decoded = self._decode_all(list(encoded.values())) if encoded else []
        results: list[dict[str, np.ndarray] | Exception | None] = [None] * len(items)
        rows = {k: item for k, item in enumerate(items) if not isinstance(item, EncodedImage)}
        for k, pixels in zip(encoded, decoded, strict=True):
            if isinstance(pixels, Exception):
                results[k] = pixels
            else:
                rows[k] = {PIXELS_INPUT: pixels}
        if rows:
            outputs = run_rows(self.model, PIXELS_SIGNATURE, list(rows.values()), self.allowed_batch_sizes)
            for k, row in zip(rows, outputs, strict=True):
                results[k] = row
        return results  # type: ignore[return-value]  # every slot is filled above

    def _decode_all(self, images: list[EncodedImage]) -> list[np.ndarray | ServiceError]:
        """Pixels of every image, in one ``preprocess`` call; if that fails, image by image, errors in place."""
        try:
            batch = self.model.run_each(PREPROCESS_SIGNATURE,
                                        {IMAGE_INPUT: np.array([i.data for i in images], dtype=object)})
            return list(batch[PREPROCESS_OUTPUT])
        except InvalidInput:
            return self._decode_each(images)

    def _decode_each(self, images: list[EncodedImage]) -> list[np.ndarray | ServiceError]:
        """Pixels of each image decoded alone, a refused image's error in its place."""
        decoded: list[np.ndarray | ServiceError] = []
        for image in images:
            try:
                outputs = self.model.run(PREPROCESS_SIGNATURE, {IMAGE_INPUT: np.array(image.data, dtype=object)})
                decoded.append(outputs[PREPROCESS_OUTPUT])
            except InvalidInput as exc:
                decoded.append(InvalidInput(f"image {image.index}: {exc.message}"))
        return decoded
