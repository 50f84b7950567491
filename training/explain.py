"""The classifier taken apart for the export: the feature map, the logits, and Grad-CAM on that feature map.

:func:`training.model.build_classifier` builds pixels -> normalise -> backbone (its output is the last
convolutional feature map) -> ``pool`` -> dropout -> ``logits`` -> softmax ``scores``. :class:`Parts` splits that
into a trunk (pixels -> feature map) and a head (feature map -> pooled features, logits), sharing the weights, so
that the export can divide the logits by the temperature, score the pooled features, and take the gradient of a
class's logit with respect to the feature map (Grad-CAM, Selvaraju et al., 2017).
"""

from __future__ import annotations

import keras
import tensorflow as tf

POOL_LAYER = "pool"
LOGITS_LAYER = "logits"


class Parts:
    """The trunk and head of a classifier built by :func:`training.model.build_classifier`."""

    def __init__(self, model: keras.Model):
        self.pool = model.get_layer(POOL_LAYER)
        self.logits_layer = model.get_layer(LOGITS_LAYER)
        self.trunk = keras.Model(model.inputs, self.pool.input, name="trunk")

    @staticmethod
    def available(model: keras.Model) -> bool:
        """Whether ``model`` has the layers this needs (any tlserve classifier does)."""
        names = {layer.name for layer in model.layers}
        return {POOL_LAYER, LOGITS_LAYER} <= names

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
        respect to the last feature map; the channel weights are the spatial means of those gradients; the map
        is the ReLU of the weighted sum of channels, resized bilinearly to the input size and divided by its
        maximum (an all-zero map stays zero: no region speaks for the class).
        """
        feature_map = tf.cast(self.trunk(pixels, training=False), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(feature_map)
            _, logits = self.head(feature_map)
            top = tf.argmax(logits, axis=1, output_type=tf.int32)
            chosen = tf.where(class_index < 0, top, class_index)
            picked = tf.gather(logits, chosen, axis=1, batch_dims=1)
        grads = tape.gradient(picked, feature_map)
        weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=3, keepdims=True))
        cam = tf.image.resize(cam, [size, size], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
        heatmap = tf.math.divide_no_nan(cam, peak)
        score = tf.gather(tf.nn.softmax(logits / temperature), chosen, axis=1, batch_dims=1)
        return tf.clip_by_value(heatmap, 0.0, 1.0), chosen, score
