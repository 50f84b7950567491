"""Loading one version: the SavedModel on the device, its labels, its warm-up, a ServedVersion ready to serve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.batching.batcher import BatchStats
from service.codec.images import ImageLimits
from service.core.errors import InvalidInput
from service.runtime.savedmodel import LoadedModel
from service.serving.version import BatchingSettings, ServedVersion
from tlserve.contract import LABELS_FILE, PIXELS_INPUT, PIXELS_SIGNATURE


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
        served = ServedVersion(name, number, model, self.batching(name), self.image_limits,
                               class_names=labels.read_text().splitlines() if labels.is_file() else None,
                               on_batch=self.on_batch)
        model.warm_up(check=served.check_warmup_record)
        if served.images:
            b = served.batching
            _warm_pixels(model, tuple(sorted({1, b.max_batch_size, *b.allowed_batch_sizes})))
        return served


def _warm_pixels(model: LoadedModel, batch_sizes: tuple[int, ...]) -> None:
    """tlserve exports are served through ``pixels``, which TF Serving's warm-up records do not call."""
    _, height, width, channels = model.signatures[PIXELS_SIGNATURE].inputs[PIXELS_INPUT].shape or (None,) * 4
    if height is None or width is None or channels is None:
        raise InvalidInput(f"signature '{PIXELS_SIGNATURE}' must take a fixed [N, H, W, C] input")
    for size in batch_sizes:
        model.run(PIXELS_SIGNATURE, {PIXELS_INPUT: np.zeros((size, height, width, channels), np.uint8)})
