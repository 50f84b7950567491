"""Which feature map should Grad-CAM explain? Each backbone resolution measured on the digits, beside a blob.

    nice .venv/bin/python bench/gradcam_layers.py [IMAGE_SIZE HEAD_EPOCHS FINE_TUNE_EPOCHS]   # default 80 2 2

Trains MobileNetV2 on builtin:digits with the default split (80 px, 2 + 2 epochs: the model of
tests/training/test_trust_digits.py, about a minute on 2 cores) and prints, as JSON, bench/gradcam_digits.py's
measures of the top-class Grad-CAM on the feature map at 1/32 (the backbone's last), 1/16, 1/8 and 1/4 of the
input size, and the mean of 1/16 and 1/8 (the export's; :class:`training.explain.Parts` with those strides), and of
a centred blob that ignores the image.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.gradcam_digits import measure


def main() -> None:
    import tensorflow as tf

    from training.explain import Parts
    from training.preprocessing import preprocess
    from training.train import TrainConfig, train

    size, head, fine = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (80, 2, 2)
    trained = train(TrainConfig(data="builtin:digits", name="digits", image_size=size, head_epochs=head,
                                fine_tune_epochs=fine, verbose=0))
    images = [trained.data.images[i] for i in trained.split.test]
    pixels = tf.stack([preprocess(tf.constant(png), size, "stretch") for png in images])
    rows = {"image_size": size, "epochs": [head, fine], "seconds": round(trained.seconds, 1)}
    for strides in ((), (16,), (8,), (4,), (16, 8)):
        parts = Parts(trained.model, strides)
        run = tf.function(lambda p, parts=parts: parts.gradcam(p, -tf.ones([tf.shape(p)[0]], tf.int32), 1.0, size))
        heatmaps = np.concatenate([run(pixels[i:i + 64])[0].numpy() for i in range(0, len(images), 64)])
        found = measure(heatmaps, images, size)
        rows["baseline"] = found.pop("baseline")
        rows[f"strides {strides or (32,)}: {', '.join(parts.explained_names)}"] = found
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
