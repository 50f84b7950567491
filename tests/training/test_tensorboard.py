"""``--log-dir``: TensorBoard event files with per-epoch scalars of both phases and the confusion matrix, read
back with TensorFlow's own event reader (TF 2.21 no longer installs the tensorboard package; it is only
needed to view the logs)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from tlserve.cli import main


def _events(log_dir):
    """{tag: [(step, value)]} of every scalar and image in the event files under ``log_dir``."""
    found = collections.defaultdict(list)
    files = sorted(p for p in log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no event files in {log_dir}"
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found[value.tag].append((event.step, tf.make_ndarray(value.tensor)))
    return found


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    code = main(["train", "--data", "builtin:shapes", "--name", "shapes", "--out", str(root / "models"),
                 "--image-size", "32", "--head-epochs", "2", "--fine-tune-epochs", "3", "--fine-tune-layers", "10",
                 "--batch-size", "16", "--patience", "10", "--log-dir", str(root / "logs"), "--quiet"])
    assert code == 0
    return _events(root / "logs")


def test_scalars_of_both_phases_per_epoch(logged):
    for tag in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "phase"):
        assert [step for step, _ in logged[tag]] == [0, 1, 2, 3, 4], (tag, logged[tag])
    assert [float(v) for _, v in logged["phase"]] == [1, 1, 2, 2, 2]
    rates = [float(v) for _, v in logged["learning_rate"]]
    assert rates[:2] == pytest.approx([3e-3, 3e-3])  # phase 1: Adam at --head-lr
    assert 0 < rates[2] <= 1e-3 and rates[2] != pytest.approx(rates[3])  # phase 2: the schedule moves
    assert all(np.isfinite(float(v)) for _, v in logged["loss"])


def test_confusion_matrix_image_and_test_accuracy(logged):
    [(step, image)] = logged["confusion_matrix"]
    assert step == 5
    # An image summary's tensor: width, height, then the encoded PNG.
    width, height, png = image
    pixels = tf.image.decode_png(png).numpy()
    assert pixels.shape[:2] == (int(height), int(width)) and pixels.shape[0] > 100
    [(_, accuracy)] = logged["test_accuracy"]
    assert 0 <= float(accuracy) <= 1
