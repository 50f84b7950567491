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

from tlserve import contract
from training.calibration import Calibration
from training.explain import Parts
from training.open_set import UnknownScore
from training.preprocessing import preprocess

WARMUP_BATCH_SIZES = (1, 8, 32)
_LABEL = re.compile(r"^[^\n\r]+$")


class ExportError(ValueError):
    """The export cannot be written as asked (for example, the version already exists)."""


class ServingModule(tf.Module):
    """The exported signatures, all sharing one preprocessing function and one set of weights.

    For a tlserve classifier (:class:`training.explain.Parts` finds its layers) ``scores`` are
    ``softmax(logits / temperature)`` (``calibration``; temperature 1 without it), the image signatures add
    ``unknown_score`` when ``unknown`` is given, and ``explain`` / ``explain_pixels`` give Grad-CAM heatmaps.
    Any other Keras model is exported as before: its own output is ``scores``.
    """

    def __init__(self, model: keras.Model, classes: list[str], image_size: int, resize: str, *,
                 calibration: Calibration | None = None, unknown: UnknownScore | None = None):
        super().__init__()
        self.model = model
        self.class_names = tf.constant(classes)
        num_classes = len(classes)
        pixel_spec = tf.TensorSpec([image_size, image_size, 3], tf.uint8)
        parts = Parts(model) if Parts.available(model) else None
        if parts is None and (calibration or unknown):
            raise ExportError("calibration and the unknown score need a classifier from training.model "
                              "(layers 'normalise', 'pool' and 'logits')")
        temperature = float(calibration.temperature) if calibration else 1.0
        self._track_unknown(unknown)

        def one(image):
            return preprocess(image, image_size, resize)

        def unknown_score(unknown: UnknownScore, logits, pooled):
            if unknown.method == "msp":  # 1 - max(scores), without rounding to 0 (see training.open_set.scores)
                z = logits / temperature
                ratios = tf.exp(z - tf.reduce_max(z, axis=1, keepdims=True)) * (1.0 - tf.one_hot(
                    tf.argmax(z, axis=1), num_classes))
                rest = tf.reduce_sum(ratios, axis=1)
                return rest / (1.0 + rest)
            if unknown.method == "energy":
                return -tf.reduce_logsumexp(logits, axis=1)
            z = tf.matmul(pooled, self.gauss_factor)
            return tf.reduce_min(tf.reduce_sum(tf.square(z), axis=1, keepdims=True) - 2.0 * tf.matmul(
                z, self.gauss_means, transpose_b=True) + tf.reduce_sum(tf.square(self.gauss_means), axis=1), axis=1)

        def outputs(pixels):
            result = {}
            if parts is None:
                scores = self.model(pixels, training=False)
            else:
                _, pooled, logits = parts(pixels)
                scores = tf.nn.softmax(logits / temperature)
                if unknown is not None:
                    result[contract.UNKNOWN_SCORE_OUTPUT] = unknown_score(unknown, logits, pooled)
            classes_ = tf.tile(self.class_names[tf.newaxis], [tf.shape(scores)[0], 1])
            return {contract.SCORES_OUTPUT: scores, contract.CLASSES_OUTPUT: classes_, **result}

        def decode_all(images):
            return tf.map_fn(one, images, fn_output_signature=pixel_spec)

        def many(images):
            return outputs(decode_all(images))

        self.preprocess = tf.function(lambda image: {contract.PREPROCESS_OUTPUT: one(image)},
                                      input_signature=[tf.TensorSpec([], tf.string, name=contract.IMAGE_INPUT)])
        self.pixels = tf.function(outputs, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=contract.PIXELS_INPUT)])
        self.serving_default = tf.function(many, input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.IMAGES_INPUT)])

        def classify(inputs):
            features = tf.io.parse_example(inputs, {contract.EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
            return many(features[contract.EXAMPLE_IMAGE_KEY])

        self.classify = tf.function(classify, input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
        self.explain = self.explain_pixels = None
        if parts is not None:
            def explain_pixels(pixels, class_index):
                checks = [
                    tf.debugging.assert_equal(tf.shape(class_index)[0], tf.shape(pixels)[0],
                                              message="class_index needs one entry per image"),
                    tf.debugging.assert_greater_equal(class_index, contract.EXPLAIN_TOP_CLASS,
                                                      message="class_index must be -1 (top class) or a class"),
                    tf.debugging.assert_less(class_index, num_classes,
                                             message=f"class_index must be below {num_classes}, the class count")]
                with tf.control_dependencies(checks):
                    heatmap, chosen, score = parts.gradcam(pixels, tf.identity(class_index), temperature, image_size)
                return {contract.HEATMAP_OUTPUT: heatmap, contract.EXPLAINED_CLASS_OUTPUT: chosen,
                        contract.EXPLAINED_SCORE_OUTPUT: score}

            class_spec = tf.TensorSpec([None], tf.int32, name=contract.CLASS_INDEX_INPUT)
            self.explain_pixels = tf.function(explain_pixels, input_signature=[
                tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name=contract.PIXELS_INPUT), class_spec])
            self.explain = tf.function(lambda images, class_index: explain_pixels(decode_all(images), class_index),
                                       input_signature=[tf.TensorSpec([None], tf.string, name=contract.IMAGES_INPUT),
                                                        class_spec])

    def _track_unknown(self, unknown: UnknownScore | None) -> None:
        # Variables, not constants: a 1280 x 1280 factor belongs in variables/, not in saved_model.pb.
        if unknown is not None and unknown.method == "mahalanobis":
            if unknown.gaussian is None:
                raise ExportError("a mahalanobis unknown score needs its fitted Gaussian")
            self.gauss_factor = tf.Variable(unknown.gaussian.factor.astype("float32"), trainable=False,
                                            name="gaussian_factor")
            self.gauss_means = tf.Variable(unknown.gaussian.projected_means.astype("float32"), trainable=False,
                                           name="gaussian_projected_means")

    def signatures(self) -> dict:
        found = {contract.DEFAULT_SIGNATURE: self.serving_default, contract.PIXELS_SIGNATURE: self.pixels,
                 contract.PREPROCESS_SIGNATURE: self.preprocess, contract.CLASSIFY_SIGNATURE: self.classify}
        if self.explain is not None:
            found[contract.EXPLAIN_SIGNATURE] = self.explain
            found[contract.EXPLAIN_PIXELS_SIGNATURE] = self.explain_pixels
        return found


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """The version folders under ``model_dir`` by number, paths as found, by the contract's rule (as the server
    reads them): ASCII-integer names only, so '²' or '١٢' are ignored; of '7' and '007' the first in
    ``contract.version_name_order`` is version 7."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    found: dict[int, Path] = {}
    for path in sorted(model_dir.iterdir(), key=lambda p: contract.version_name_order(p.name)):
        number = contract.parse_version(path.name)
        if number is not None and number not in found and path.is_dir():
            found[number] = path
    return dict(sorted(found.items()))


def existing_versions(model_dir: Path) -> list[int]:
    """The version numbers under ``model_dir``, ascending (leading zeros allowed, as TF Serving allows)."""
    return list(version_dirs(model_dir))


def write_warmup(path: Path, model_name: str, image: bytes, batch_sizes=WARMUP_BATCH_SIZES) -> None:
    """A few PredictionLog records (TF Serving's warm-up format), one per batch size served."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for size in batch_sizes:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = contract.DEFAULT_SIGNATURE
            request.inputs[contract.IMAGES_INPUT].CopyFrom(tf.make_tensor_proto([image] * size, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export(model: keras.Model, *, root: str | Path, name: str, classes: list[str], image_size: int, resize: str,
           metadata: dict, warmup_image: bytes, version: int | None = None,
           write_extra: Callable[[Path], None] | None = None, calibration: Calibration | None = None,
           unknown: UnknownScore | None = None) -> Path:
    """Write the SavedModel, labels, metadata, warm-up records and whatever ``write_extra`` adds; return its path.

    ``write_extra`` receives the version directory while it is still hidden (used for the report).
    ``calibration`` and ``unknown`` go into the graph (see :class:`ServingModule`) and into the metadata as
    ``"calibration"`` and ``"unknown"`` (keys in :mod:`tlserve.contract`).
    """
    if not contract.valid_model_name(name):
        raise ExportError(f"model name {name!r} must be letters, digits, '_', '.' or '-', start with a letter or "
                          f"digit and be at most {contract.MAX_NAME_LENGTH} characters")
    bad = [c for c in classes if not _LABEL.match(c)]
    if bad:
        raise ExportError(f"class names must be non-empty single lines: {bad[:3]}")
    model_dir = Path(root) / name
    taken = existing_versions(model_dir)
    if version is not None and version in taken:
        raise ExportError(f"version {version} of {name} already exists")
    if version is not None and not 1 <= version <= contract.MAX_VERSION:
        raise ExportError(f"version {version} of {name} must be >= 1 and fit in int64, as TF Serving's versions do")
    version = version or (taken[-1] + 1 if taken else 1)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / contract.staging_name(version, uuid.uuid4().hex[:8])
    try:
        module = ServingModule(model, classes, image_size, resize, calibration=calibration, unknown=unknown)
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        (staging / contract.LABELS_FILE).parent.mkdir(exist_ok=True)
        (staging / contract.LABELS_FILE).write_text("".join(f"{c}\n" for c in classes))
        meta_path = staging / contract.METADATA_FILE
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        trust = {**({contract.METADATA_CALIBRATION: calibration.to_dict()} if calibration else {}),
                 **({contract.METADATA_UNKNOWN: unknown.to_dict()} if unknown else {})}
        meta_path.write_text(json.dumps({**metadata, **trust, "name": name, "version": version}, indent=2) + "\n")
        write_warmup(staging / contract.WARMUP_FILE, name, warmup_image)
        if write_extra:
            write_extra(staging)
        final = model_dir / str(version)
        if final.exists():
            raise ExportError(f"version {version} of {name} appeared while exporting; not overwriting it")
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
