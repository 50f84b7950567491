"""Image preprocessing that lives in the TensorFlow graph.

Training feeds its images through these functions and the export bakes the very same functions into the
SavedModel's ``preprocess`` signature, so what the network sees in training and in serving cannot drift.
Normalisation is not here: it is the first layer of the classifier (each backbone has its own).
"""

from __future__ import annotations

import tensorflow as tf

RESIZE_POLICIES = ("stretch", "crop")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decode one JPEG/PNG/GIF/BMP image to uint8 RGB ``[h, w, 3]``; animated GIFs give their first frame."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, size: int, policy: str) -> tf.Tensor:
    """Resize a uint8 ``[h, w, 3]`` image to ``[size, size, 3]``.

    ``stretch`` ignores the aspect ratio; ``crop`` scales the shorter side to ``size`` and keeps the centre.
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, not {policy!r}")
    if policy == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
        scaled = tf.maximum(tf.cast(tf.math.ceil(shape * scale), tf.int32), size)
        image = tf.image.resize(image, scaled, antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, size, size)
    else:
        image = tf.image.resize(image, [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def preprocess(encoded: tf.Tensor, size: int, policy: str) -> tf.Tensor:
    """Encoded image bytes -> uint8 pixels ``[size, size, 3]``, exactly as the exported model does it."""
    return resize(decode(encoded), size, policy)
