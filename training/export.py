"""Export a trained classifier as ``<root>/<name>/<version>/`` in TF Serving's layout.

The version is written under a hidden temporary name and renamed into place, so a repository watcher
(tlserve's or TF Serving's) never sees half a model, and an existing version is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from training.preprocessing import preprocess

LABELS_FILE = "assets/labels.txt"
METADATA_FILE = "assets.extra/metadata.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
REPORT_DIR = "assets.extra/report"
EXAMPLE_IMAGE_KEY = "image/encoded"
WARMUP_BATCH_SIZES = (1, 8, 32)
_LABEL = re.compile(r"^[^\n\r]+$")


class ExportError(ValueError):
    """The export cannot be written as asked (for example, the version already exists)."""


class ServingModule(tf.Module):
    """The exported signatures, all sharing one preprocessing function and one set of weights."""

    def __init__(self, model: keras.Model, classes: list[str], image_size: int, resize: str):
        super().__init__()
        self.model = model
        self.class_names = tf.constant(classes)
        pixel_spec = tf.TensorSpec([image_size, image_size, 3], tf.uint8)

        def one(image):
            return preprocess(image, image_size, resize)

        def outputs(pixels):
            scores = self.model(pixels, training=False)
            classes_ = tf.tile(self.class_names[tf.newaxis], [tf.shape(scores)[0], 1])
            return {"scores": scores, "classes": classes_}

        def many(images):
            return outputs(tf.map_fn(one, images, fn_output_signature=pixel_spec))

        self.preprocess = tf.function(lambda image: {"pixels": one(image)},
                                      input_signature=[tf.TensorSpec([], tf.string, name="image")])
        self.pixels = tf.function(outputs, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="pixels")])
        self.serving_default = tf.function(many, input_signature=[tf.TensorSpec([None], tf.string, name="images")])

        def classify(inputs):
            features = tf.io.parse_example(inputs, {EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
            return many(features[EXAMPLE_IMAGE_KEY])

        self.classify = tf.function(classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])

    def signatures(self) -> dict:
        return {"serving_default": self.serving_default, "pixels": self.pixels,
                "preprocess": self.preprocess, "classify": self.classify}


def existing_versions(model_dir: Path) -> list[int]:
    """Integer version directories under ``model_dir`` (leading zeros allowed, as TF Serving allows)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def write_warmup(path: Path, model_name: str, image: bytes, batch_sizes=WARMUP_BATCH_SIZES) -> None:
    """A few PredictionLog records (TF Serving's warm-up format), one per batch size served."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in batch_sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs["images"].CopyFrom(tf.make_tensor_proto([image] * size, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export(model: keras.Model, *, root: str | Path, name: str, classes: list[str], image_size: int, resize: str,
           metadata: dict, warmup_image: bytes, version: int | None = None,
           write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write the SavedModel, labels, metadata, warm-up records and whatever ``write_extra`` adds; return its path.

    ``write_extra`` receives the version directory while it is still hidden (used for the report).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ExportError(f"model name {name!r} must be letters, digits, '_', '.' or '-'")
    bad = [c for c in classes if not _LABEL.match(c)]
    if bad:
        raise ExportError(f"class names must be non-empty single lines: {bad[:3]}")
    model_dir = Path(root) / name
    taken = existing_versions(model_dir)
    if version is not None and (version < 1 or version in taken):
        raise ExportError(f"version {version} of {name} {'already exists' if version in taken else 'must be >= 1'}")
    version = version or (taken[-1] + 1 if taken else 1)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    try:
        module = ServingModule(model, classes, image_size, resize)
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        (staging / LABELS_FILE).parent.mkdir(exist_ok=True)
        (staging / LABELS_FILE).write_text("".join(f"{c}\n" for c in classes))
        meta_path = staging / METADATA_FILE
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps({**metadata, "name": name, "version": version}, indent=2) + "\n")
        write_warmup(staging / WARMUP_FILE, name, warmup_image)
        if write_extra:
            write_extra(staging)
        final = model_dir / str(version)
        if final.exists():
            raise ExportError(f"version {version} of {name} appeared while exporting; not overwriting it")
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
