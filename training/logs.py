"""TensorBoard logs of a training run (``tlserve train --log-dir DIR``).

Written with TensorFlow's own summary writer and ``tf.summary.write``, in the format of TensorBoard's scalar
and image plugins. TensorFlow 2.21 no longer installs the ``tensorboard`` package, and without it
``tf.summary.scalar`` and ``tf.summary.image`` raise ``TBNotInstalledError``; the package is only needed to view
the logs (``pip install tensorboard``, then ``tensorboard --logdir DIR``):

- per epoch, over both phases on one epoch axis: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``
  (with a validation split), ``learning_rate`` (the rate at the end of the epoch) and ``phase`` (1 or 2);
- at the end: ``confusion_matrix``, an image of the test split's confusion matrix (rows true, columns
  predicted), and ``test_accuracy``.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str, data_class: int) -> bytes:
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
                                       data_class=data_class).SerializeToString()


_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)
_IMAGE = _metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE)


def scalar(tag: str, value: float, step: int) -> None:
    """What ``tf.summary.scalar`` writes (a float32 scalar tensor, the scalars plugin)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR)


def image(tag: str, png: bytes, width: int, height: int, step: int) -> None:
    """What ``tf.summary.image`` writes for one image: a string tensor [width, height, PNG]."""
    tf.summary.write(tag, tf.constant([str(width), str(height), png], tf.string), step=step, metadata=_IMAGE)


def current_rate(optimizer) -> float:
    """The optimizer's learning rate now (a schedule evaluated at its step count)."""
    rate = optimizer.learning_rate
    if callable(rate):  # a LearningRateSchedule held as such
        rate = rate(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(rate))


class EpochScalars(keras.callbacks.Callback):
    """Writes each epoch's logs, the learning rate and the phase to ``writer`` at step ``first_epoch + epoch``."""

    def __init__(self, writer, phase: int, first_epoch: int):
        super().__init__()
        self.writer, self.phase, self.first_epoch = writer, phase, first_epoch
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        step = self.first_epoch + epoch
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                scalar(name, float(value), step)
            scalar("learning_rate", current_rate(self.model.optimizer), step)
            scalar("phase", self.phase, step)
        self.writer.flush()
        self.epochs = epoch + 1


def confusion_png(matrix: np.ndarray, classes: list[str], title: str) -> bytes:
    """The report's confusion-matrix figure, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from training.report import confusion_figure

    fig = confusion_figure(matrix, classes, title)
    FigureCanvasAgg(fig)  # no pyplot: no display, no global state
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return buffer.getvalue()


def _png_size(png: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    return int.from_bytes(png[20:24], "big"), int.from_bytes(png[16:20], "big")


def write_confusion(writer, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], step: int) -> None:
    """The test split's confusion matrix as an image, and its accuracy, at ``step``."""
    n = len(classes)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    accuracy = float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")
    png = confusion_png(matrix, classes, f"test split: accuracy {accuracy:.3f}, {len(y_true)} images")
    height, width = _png_size(png)
    with writer.as_default():
        image("confusion_matrix", png, width, height, step)
        scalar("test_accuracy", accuracy, step)
    writer.flush()
