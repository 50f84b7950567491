"""Loading one version: the SavedModel on the device, its labels, its warm-up, a ServedVersion ready to serve."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.batching.batcher import BatchStats
from service.codec.images import ImageLimits
from service.core.errors import InvalidInput
from service.observability.drift import parse_reference
from service.runtime.savedmodel import LoadedModel
from service.serving.version import BatchingSettings, ServedVersion
from tlserve.contract import (
    LABELS_FILE,
    METADATA_FILE,
    METADATA_UNKNOWN,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    UNKNOWN_THRESHOLD,
)


@dataclass(frozen=True)
class VersionLoader:
    """``loader(name, number, path)`` for the repository: blocking, so it runs in a worker thread."""

    batching: Callable[[str], BatchingSettings]
    image_limits: ImageLimits
    device: Callable[[], str | None]  # decided when serving starts, not when the loader is built
    on_batch: Callable[[str, int, BatchStats, int], None] | None = None

    def __call__(self, name: str, number: int, path: Path) -> ServedVersion:
        model = LoadedModel(path, self.device())
        labels = path / LABELS_FILE
        class_names = labels.read_text().splitlines() if labels.is_file() else None
        reference = parse_reference(read_metadata(path), len(class_names)) if class_names else None
        served = ServedVersion(name, number, model, self.batching(name), self.image_limits,
                               class_names=class_names, on_batch=self.on_batch,
                               unknown_threshold=unknown_threshold(path), reference=reference)
        _warm(model, served)
        return served


def read_metadata(path: Path) -> dict:
    """The version's METADATA_FILE as a dict ({} without one); one that is not a JSON object refuses the version
    at load, never at a request."""
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{METADATA_FILE} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise InvalidInput(f"{METADATA_FILE} must be a JSON object")
    return meta


def unknown_threshold(path: Path) -> float | None:
    """The threshold of the metadata's "unknown" object (``tlserve.contract``), or None for an export without one
    (no metadata file, or none of the key: an export from before issue 16). A threshold that is there but is not a
    finite number refuses the version at load, never at a request."""
    unknown = read_metadata(path).get(METADATA_UNKNOWN)
    if not isinstance(unknown, dict) or unknown.get(UNKNOWN_THRESHOLD) is None:
        return None
    value = unknown[UNKNOWN_THRESHOLD]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{METADATA_FILE}: '{METADATA_UNKNOWN}.{UNKNOWN_THRESHOLD}' must be a finite number, "
                           f"got {value!r}")
    return float(value)


def _warm(model: LoadedModel, served: ServedVersion) -> None:
    """The export's warm-up records and, for an image model, ``pixels`` at the batch sizes it needs, at once.

    They are two functions of the SavedModel, and neither waits for the other: one after the other they took 1.9 s
    of a 224 px model's cold start (records 1.2 s, pixels 0.7 s) with a core idle. ``pixels`` runs at 1 (its first
    call is slow at any size: 634 ms against 20 at 224 px) and at the sizes batches are padded to. The first full
    batch of a process is slow for every function (the allocator grows: 430 ms against 290), so ``pixels`` runs
    one only when no record did: after the records' 32, its own first 32 took 226 ms, its steady time 212-246.
    An error in either refuses the version, the records' first."""
    b = served.batching
    sizes = tuple(sorted({1, *b.allowed_batch_sizes}))
    with ThreadPoolExecutor(2, thread_name_prefix="tlserve-warm-up") as pool:
        records = pool.submit(model.warm_up, check=served.check_warmup_record)
        pixels = pool.submit(_warm_pixels, model, sizes) if served.images else None
        record_sizes = records.result()
        if pixels:
            pixels.result()
    if served.images and max([*record_sizes, *sizes]) < b.max_batch_size:
        _warm_pixels(model, (b.max_batch_size,))


def _warm_pixels(model: LoadedModel, batch_sizes: tuple[int, ...]) -> None:
    """tlserve exports are served through ``pixels``, which TF Serving's warm-up records do not call."""
    _, height, width, channels = model.signatures[PIXELS_SIGNATURE].inputs[PIXELS_INPUT].shape or (None,) * 4
    if height is None or width is None or channels is None:
        raise InvalidInput(f"signature '{PIXELS_SIGNATURE}' must take a fixed [N, H, W, C] input")
    for size in batch_sizes:
        model.run(PIXELS_SIGNATURE, {PIXELS_INPUT: np.zeros((size, height, width, channels), np.uint8)})
