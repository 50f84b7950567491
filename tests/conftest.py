"""Shared fixtures: one tiny model trained on the procedural shapes and exported, reused by many tests."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    """uint8 [h, w, 3] -> encoded image bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_training():
    """A 32 px MobileNetV2 classifier trained for one epoch per phase on builtin:shapes (a few seconds)."""
    from training.train import TrainConfig, train

    cfg = TrainConfig(data="builtin:shapes", name="shapes", image_size=32, head_epochs=1, fine_tune_epochs=1,
                      fine_tune_layers=10, batch_size=16, verbose=0)
    return train(cfg)


@pytest.fixture(scope="session")
def tiny_export(tiny_training, tmp_path_factory):
    """``(version_dir, report)`` of ``tiny_training`` exported into a fresh model repository."""
    from training.evaluate import export_trained

    root = tmp_path_factory.mktemp("models")
    return export_trained(tiny_training, root)
