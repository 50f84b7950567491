"""torchvision's MobileNetV2 (IMAGENET1K_V1) rebuilt in Keras so that its outputs match torchvision.

Layer names are the torchvision state-dict prefixes with '.' replaced by '_', which is all the weight
import needs to find each tensor. Differences from ``keras.applications.MobileNetV2`` that matter for the
ported weights: BatchNorm epsilon 1e-5, and stride-2 3x3 convolutions padded one pixel on every side.
"""

from __future__ import annotations

import keras
from keras import layers

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper and torchvision.
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_EPSILON = 1e-5
FEATURES = 1280


def _conv_bn(x, filters: int, kernel: int, stride: int, prefix: str, *, depthwise=False, relu=True):
    name = prefix.replace(".", "_")
    if kernel == 3:
        # torchvision pads 1 on every side; Keras' 'same' pads (0, 1) at stride 2 and shifts the grid.
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, "valid", use_bias=False, name=f"{name}_0")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, "valid", use_bias=False, name=f"{name}_0")(x)
    x = layers.BatchNormalization(epsilon=_EPSILON, name=f"{name}_1")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def _inverted_residual(x, expansion: int, out_channels: int, stride: int, index: int):
    in_channels = x.shape[-1]
    prefix = f"features.{index}.conv"
    y, part = x, 0
    if expansion != 1:
        y = _conv_bn(y, in_channels * expansion, 1, 1, f"{prefix}.{part}")
        part += 1
    y = _conv_bn(y, y.shape[-1], 3, stride, f"{prefix}.{part}", depthwise=True)
    p = prefix.replace(".", "_")
    y = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{p}_{part + 1}")(y)
    y = layers.BatchNormalization(epsilon=_EPSILON, name=f"{p}_{part + 2}")(y)
    if stride == 1 and in_channels == out_channels:
        y = layers.Add(name=f"features_{index}_add")([x, y])
    return y


def build(image_size: int, include_top: bool) -> keras.Model:
    """Normalised float input ``[None, size, size, 3]`` -> 7x7x1280 features, or 1000 ImageNet probabilities."""
    inputs = keras.Input((image_size, image_size, 3), name="normalised")
    x = _conv_bn(inputs, 32, 3, 2, "features.0")
    index = 1
    for expansion, channels, repeats, stride in _BLOCKS:
        for i in range(repeats):
            x = _inverted_residual(x, expansion, channels, stride if i == 0 else 1, index)
            index += 1
    x = _conv_bn(x, FEATURES, 1, 1, f"features.{index}")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, activation="softmax", name="classifier_1")(x)
    return keras.Model(inputs, x, name="mobilenet_v2")
