"""The classifier: uint8 pixels -> backbone normalisation -> backbone -> pooling, dropout, dense -> softmax."""

from __future__ import annotations

import keras
from keras import layers

from tlserve import contract
from training.backbones.normalisation import Normalise
from training.backbones.registry import Backbone


def build_classifier(backbone: Backbone, image_size: int, num_classes: int, *, dropout: float = 0.2,
                     weights: str | None = None, pretrained: bool = True) -> tuple[keras.Model, keras.Model]:
    """Return ``(classifier, base)``; ``base`` is the backbone inside it, frozen, to unfreeze for fine-tuning.

    The base is called with ``training=False`` so its BatchNormalization layers stay in inference mode
    even once unfrozen: updating their statistics on a few small batches would wreck the pretrained
    features (the Keras transfer-learning guide's advice). ``pretrained=False`` skips loading the ImageNet
    weights (training.warm_start sets every weight from an export instead).
    """
    base = backbone.features(image_size, weights, pretrained=pretrained)
    base.trainable = False
    pixels = keras.Input((image_size, image_size, 3), dtype="uint8", name=contract.PIXELS_INPUT)
    x = Normalise.of(backbone.normalisation, name="normalise")(pixels)
    x = base(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    # float32 even under mixed precision: softmax in float16 loses the small probabilities.
    scores = layers.Activation("softmax", dtype="float32", name=contract.SCORES_OUTPUT)(x)
    return keras.Model(pixels, scores, name=f"{backbone.name}_classifier"), base


def unfreeze_top(base: keras.Model, count: int | None) -> int:
    """Make the last ``count`` weighted layers of ``base`` trainable (all when None); BatchNorm stays frozen.

    Returns how many layers were unfrozen.
    """
    base.trainable = True
    weighted = [layer for layer in base.layers if layer.weights]
    if count is not None:
        weighted = weighted[-count:] if count > 0 else []
    chosen = {id(layer) for layer in weighted}
    unfrozen = 0
    for layer in base.layers:
        trainable = id(layer) in chosen and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += trainable
    return unfrozen
