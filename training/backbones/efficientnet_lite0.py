"""EfficientNet-Lite0 rebuilt in Keras with the EfficientNet-PyTorch state-dict names.

Lite variants drop squeeze-excitation and swish (ReLU6 instead), which is what makes them quantisation-
and CPU-friendly. These weights come from TensorFlow's own EfficientNet-Lite, so Keras' 'same' padding
and BatchNorm epsilon 1e-3 match them. Layer names are the PyTorch prefixes with '.' replaced by '_'.
"""

from __future__ import annotations

import keras
from keras import layers

# (expansion, kernel, first stride, output channels, repeats)
_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
           (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
_EPSILON = 1e-3
FEATURES = 1280


def _bn(x, name: str, relu: bool):
    x = layers.BatchNormalization(epsilon=_EPSILON, name=name)(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def _block(x, expansion: int, kernel: int, stride: int, out_channels: int, index: int):
    in_channels = x.shape[-1]
    p = f"_blocks_{index}"
    y = x
    if expansion != 1:
        y = layers.Conv2D(in_channels * expansion, 1, use_bias=False, name=f"{p}__expand_conv")(y)
        y = _bn(y, f"{p}__bn0", relu=True)
    y = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"{p}__depthwise_conv")(y)
    y = _bn(y, f"{p}__bn1", relu=True)
    y = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{p}__project_conv")(y)
    y = _bn(y, f"{p}__bn2", relu=False)
    if stride == 1 and in_channels == out_channels:
        y = layers.Add(name=f"{p}_add")([x, y])
    return y


def build(image_size: int, include_top: bool) -> keras.Model:
    """Normalised float input ``[None, size, size, 3]`` -> 1280-channel features, or 1000 ImageNet probabilities."""
    inputs = keras.Input((image_size, image_size, 3), name="normalised")
    x = layers.Conv2D(32, 3, 2, "same", use_bias=False, name="_conv_stem")(inputs)
    x = _bn(x, "_bn0", relu=True)
    index = 0
    for expansion, kernel, stride, channels, repeats in _STAGES:
        for i in range(repeats):
            x = _block(x, expansion, kernel, stride if i == 0 else 1, channels, index)
            index += 1
    x = layers.Conv2D(FEATURES, 1, use_bias=False, name="_conv_head")(x)
    x = _bn(x, "_bn1", relu=True)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, activation="softmax", name="_fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")
