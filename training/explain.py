"""The classifier taken apart for the export: the feature maps, the logits, and Grad-CAM.

:func:`training.model.build_classifier` builds pixels -> normalise -> backbone (its output is the last
convolutional feature map) -> ``pool`` -> dropout -> ``logits`` -> softmax ``scores``. :class:`Parts` splits that
into a trunk (pixels -> feature map) and a head (feature map -> pooled features, logits), sharing the weights, so
that the export can divide the logits by the temperature, score the pooled features, and take the gradient of a
class's logit with respect to a feature map (Grad-CAM, Selvaraju et al., 2017).

Grad-CAM is taken on the backbone's feature maps at 1/16 and 1/8 of the input size (:data:`EXPLAIN_STRIDES`), and
the two heatmaps averaged, not on the last map (1/32): at 80 px that is 3 x 3, and on the digits its heatmap
peaked inside the digit's ink box for 0.06-0.08 of the test digits against 0.90-0.96 for the mean; at 112 px (4 x 4)
the last map did anywhere from 0.67 to 0.94 (bench/gradcam_layers.py; docs/training.md has the figures).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

NORMALISE_LAYER = "normalise"
POOL_LAYER = "pool"
LOGITS_LAYER = "logits"
# The explained maps' sides are the input's / 16 and / 8 (rounded up, as stride-2 layers round). On the digits the
# 1/8 map follows each digit's own ink best but alone peaks outside the ink box more often; the 1/16 map peaks
# inside it but looks much like a centred blob; their mean keeps most of both.
EXPLAIN_STRIDES = (16, 8)


def _side(layer) -> int | None:
    shape = getattr(layer, "output", None)
    shape = getattr(shape, "shape", None)
    if shape is None or len(shape) != 4 or isinstance(layer, keras.layers.ZeroPadding2D):
        return None  # padding layers are skipped: their zero border would pass for "no heat at the edges"
    return shape[1]


def explained_layer(base: keras.Model, image_size: int, stride: int) -> str:
    """The name of the last layer of ``base`` whose output is ``image_size / stride`` wide (each stride-2 layer
    rounding up), or of its last layer when none is that wide."""
    side = image_size
    for _ in range(round(math.log2(stride))):
        side = math.ceil(side / 2)
    names = [layer.name for layer in base.layers if _side(layer) == side]
    return names[-1] if names else base.layers[-1].name


class Parts:
    """The trunk and head of a classifier built by :func:`training.model.build_classifier`.

    ``strides``: the feature maps Grad-CAM explains (:func:`explained_layer`), their heatmaps averaged; empty for
    the backbone's last map alone.
    """

    def __init__(self, model: keras.Model, strides: tuple[int, ...] = EXPLAIN_STRIDES):
        self.pool = model.get_layer(POOL_LAYER)
        self.logits_layer = model.get_layer(LOGITS_LAYER)
        self.trunk = keras.Model(model.inputs, self.pool.input, name="trunk")
        self.normalise = model.get_layer(NORMALISE_LAYER)
        base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        size = model.inputs[0].shape[1]
        self.explained_names = [explained_layer(base, size, s) for s in strides] or [base.layers[-1].name]
        # backbone input -> (the explained maps..., the last map), one pass that shares the weights
        self.explained = keras.Model(base.input, [*(base.get_layer(n).output for n in self.explained_names),
                                                  base.output], name="explained")

    @staticmethod
    def available(model: keras.Model) -> bool:
        """Whether ``model`` has the layers this needs (any tlserve classifier does)."""
        names = {layer.name for layer in model.layers}
        return {NORMALISE_LAYER, POOL_LAYER, LOGITS_LAYER} <= names

    def head(self, feature_map: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Feature map -> (pooled features, logits), float32. Dropout is left out: it is the identity in inference."""
        pooled = self.pool(feature_map)
        return tf.cast(pooled, tf.float32), tf.cast(self.logits_layer(pooled), tf.float32)

    def __call__(self, pixels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(feature map, pooled features, logits) of uint8 pixels."""
        feature_map = self.trunk(pixels, training=False)
        return (feature_map, *self.head(feature_map))

    def gradcam(self, pixels: tf.Tensor, class_index: tf.Tensor, temperature: float, size: int):
        """Grad-CAM of ``class_index`` (int32 [N]; -1 = the top class) for uint8 ``pixels`` [N, H, W, 3].

        Returns (heatmap float32 [N, size, size] in [0, 1], the class explained int32 [N], its calibrated score
        float32 [N]). The class's logit (before the softmax, as Grad-CAM prescribes) is differentiated with
        respect to each explained feature map; the channel weights are the spatial means of those gradients; a
        map is the ReLU of the weighted sum of channels, resized bilinearly to the input size and divided by its
        maximum (an all-zero map stays zero: no region speaks for the class); the heatmap is the mean of the maps,
        divided by its maximum again.
        """
        normalised = self.normalise(pixels)
        with tf.GradientTape() as tape:
            tape.watch(normalised)  # the backbone may be frozen: watch its input so the pass is recorded
            *explained, last = self.explained(normalised, training=False)
            _, logits = self.head(last)
            top = tf.argmax(logits, axis=1, output_type=tf.int32)
            chosen = tf.where(class_index < 0, top, class_index)
            picked = tf.gather(logits, chosen, axis=1, batch_dims=1)
        grads = tape.gradient(picked, explained)
        heatmap = tf.add_n([_normalised_cam(m, g, size) for m, g in zip(explained, grads, strict=True)])
        heatmap = _scaled_to_peak(heatmap)
        score = tf.gather(tf.nn.softmax(logits / temperature), chosen, axis=1, batch_dims=1)
        return tf.clip_by_value(heatmap, 0.0, 1.0), chosen, score


def _scaled_to_peak(maps: tf.Tensor) -> tf.Tensor:
    return tf.math.divide_no_nan(maps, tf.reduce_max(maps, axis=[1, 2], keepdims=True))


def _normalised_cam(feature_map: tf.Tensor, grads: tf.Tensor, size: int) -> tf.Tensor:
    """Grad-CAM of one feature map [N, h, w, K] from its gradients: [N, size, size], peak 1 (or all zero)."""
    feature_map, grads = tf.cast(feature_map, tf.float32), tf.cast(grads, tf.float32)
    weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=3, keepdims=True))
    return _scaled_to_peak(tf.image.resize(cam, [size, size], method="bilinear")[..., 0])
