"""Per-backbone input normalisation, as the first layer of every model built on a backbone."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops


@dataclass(frozen=True)
class Normalisation:
    """``x * scale + offset`` per channel on 0..255 RGB, optionally after flipping RGB to BGR."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bgr: bool = False

    @classmethod
    def mean_std(cls, mean, std) -> Normalisation:
        """torchvision style: ``(x / 255 - mean) / std``."""
        return cls(tuple(1.0 / (255.0 * s) for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True)))


class Normalise(keras.layers.Layer):
    """uint8 (or float) pixels -> the float input a backbone expects."""

    def __init__(self, scale=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0), bgr=False, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset, self.bgr = tuple(scale), tuple(offset), bool(bgr)

    def call(self, pixels):
        x = ops.cast(pixels, "float32")
        if self.bgr:
            x = ops.flip(x, axis=-1)
        return x * ops.convert_to_tensor(self.scale) + ops.convert_to_tensor(self.offset)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset, "bgr": self.bgr}

    @classmethod
    def of(cls, normalisation: Normalisation, **kwargs) -> Normalise:
        return cls(normalisation.scale, normalisation.offset, normalisation.bgr, **kwargs)
