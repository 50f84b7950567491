"""A backbone with its ImageNet head, for checking a backbone's weights on real photos."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.backbones.normalisation import Normalise
from training.backbones.registry import IMAGENET_SIZE, get
from training.preprocessing import preprocess


def imagenet_model(backbone_name: str, weights: str | None = None) -> keras.Model:
    """uint8 pixels ``[None, 224, 224, 3]`` -> 1000 ImageNet probabilities."""
    backbone = get(backbone_name)
    pixels = keras.Input((IMAGENET_SIZE, IMAGENET_SIZE, 3), dtype="uint8", name="pixels")
    x = Normalise.of(backbone.normalisation)(pixels)
    return keras.Model(pixels, backbone.imagenet_classifier(weights)(x))


def top_k(backbone_name: str, encoded: bytes, k: int = 5, weights: str | None = None) -> list[tuple[int, float]]:
    """The ``k`` most probable ImageNet class indices of one encoded image, best first."""
    pixels = preprocess(tf.constant(encoded), IMAGENET_SIZE, "crop")
    probabilities = imagenet_model(backbone_name, weights)(pixels[tf.newaxis], training=False).numpy()[0]
    best = np.argsort(-probabilities)[:k]
    return [(int(i), float(probabilities[i])) for i in best]
