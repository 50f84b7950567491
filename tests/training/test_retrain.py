"""`tlserve train --init-from`: retraining from a served version (issue 17), on copies of the tiny export."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import RETRAIN_QUICK, cross_or_circle, encode
from tlserve import contract
from tlserve.cli import main
from training import data as datasets


@pytest.fixture
def served(tiny_export, tmp_path):
    """A model repository in tmp holding a copy of the tiny export as ``shapes/1`` (the fixture's stays as it is)."""
    version_dir, _ = tiny_export
    shutil.copytree(version_dir, tmp_path / "models" / "shapes" / "1")
    return tmp_path / "models" / "shapes"


@pytest.fixture
def new_data(tmp_path):
    """A class-folder layout: a new class (16 crosses) and 6 more circles, a class the served model knows."""
    rng = np.random.default_rng(1)
    for label, count in (("cross", 16), ("circle", 6)):
        (tmp_path / "new" / label).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "new" / label / f"{i}.png").write_bytes(encode(cross_or_circle(label, rng)))
    return tmp_path / "new"


def _served_accuracy(version_dir, specs, order) -> float:
    """The served version's accuracy on the test split a retraining on ``specs`` makes (labels numbered in
    ``order``: the served classes, then the new ones), computed here apart from training.retrain: its own
    serving_default on the test images' bytes, answers compared by label."""
    from training.evaluate import exported_outputs

    data = datasets.load_sources(specs)
    labels = np.array([order.index(data.classes[y]) for y in data.labels])  # a stratified split depends on them
    test = datasets.split_indices(labels).test
    outputs = exported_outputs(version_dir, datasets.take(data.images, test))
    answered = outputs[contract.CLASSES_OUTPUT][0][outputs[contract.SCORES_OUTPUT].argmax(axis=1)]
    return float(np.mean([a.decode() == order[y] for a, y in zip(answered, labels[test], strict=True)]))


def test_load_sources_merges_classes_by_name_and_names_a_bad_source(new_data, tmp_path):
    merged = datasets.load_sources(["builtin:shapes", str(new_data)])
    shapes = datasets.load_images("builtin:shapes")
    assert merged.classes == ["circle", "cross", "square", "triangle"]
    counts = dict(zip(merged.classes, np.bincount(merged.labels), strict=True))
    assert counts["circle"] == np.sum(shapes.labels == 0) + 6 and counts["cross"] == 16
    assert len(merged.images) == len(shapes.images) + 22
    assert merged.images[-1] == (new_data / "cross" / "9.png").read_bytes()  # sorted by name: "9.png" is last
    # Two folders stay files read when needed; the same file from two sources is used once.
    twice = datasets.load_sources([str(new_data), str(new_data)], min_per_class=1)
    assert isinstance(twice.images, datasets.ImageFiles) and len(twice.images) == 22 and len(twice.skipped) == 22
    with pytest.raises(datasets.DataError, match="data source 'nowhere'.*does not exist"):
        datasets.load_sources(["builtin:shapes", "nowhere"])
    shutil.copytree(new_data / "cross", tmp_path / "one" / "cross")
    assert datasets.load_sources(["builtin:shapes", str(tmp_path / "one")]).classes[1] == "cross"
    with pytest.raises(datasets.DataError, match="only the class 'cross'"):  # the combination is checked
        datasets.load_sources([str(tmp_path / "one"), str(tmp_path / "one")])


def test_warm_start_restores_the_served_weights_and_keeps_their_head_rows(served):
    from training.backbones import registry
    from training.model import build_classifier
    from training.warm_start import load_weights, starting_point

    start = starting_point(served)  # the newest version
    assert (start.version_dir.name, start.image_size, start.classes) == ("1", 32, ["circle", "square", "triangle"])
    model, _ = build_classifier(registry.get(start.backbone), 32, 4, pretrained=False)
    fresh_row = model.get_layer("logits").kernel.numpy()[:, 3].copy()
    load_weights(start, model)
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    logits = tf.keras.Model(model.inputs, model.get_layer("logits").output)([pixels]).numpy()
    temperature = start.metadata["calibration"]["temperature"]
    served_scores = tf.saved_model.load(str(start.version_dir)).signatures["pixels"](
        pixels=tf.constant(pixels))["scores"].numpy()
    np.testing.assert_allclose(tf.nn.softmax(logits[:, :3] / temperature).numpy(), served_scores, atol=1e-4)
    np.testing.assert_array_equal(model.get_layer("logits").kernel.numpy()[:, 3], fresh_row)  # the new row

    meta_file = start.version_dir / contract.METADATA_FILE
    meta_file.write_text(json.dumps({**start.metadata, "backbone": "efficientnet_lite0"}))
    other, _ = build_classifier(registry.get("efficientnet_lite0"), 32, 3, pretrained=False)
    with pytest.raises(ValueError, match="do not fit a efficientnet_lite0 classifier"):
        load_weights(starting_point(served), other)


def test_init_from_adds_a_class_merges_sources_and_exports_the_next_version(served, new_data, capsys):
    specs = ["builtin:shapes", str(new_data)]
    code = main(["train", "--init-from", str(served), "--data", specs[0], "--data", specs[1], *RETRAIN_QUICK])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    version = served / "2"
    assert f"exported {version}" in out and "new classes: cross" in out
    order = ["circle", "square", "triangle", "cross"]  # the served classes keep their places, the new one after
    assert (version / contract.LABELS_FILE).read_text().split() == order
    report = json.loads((version / "assets.extra/report/report.json").read_text())
    comparison = report["comparison"]
    # Both scored on the same test images: the new model's figure is its report's, the old one's recomputed here.
    assert comparison["test_images"] == report["n"] and comparison["new_accuracy"] == pytest.approx(report["accuracy"])
    assert comparison["old_accuracy"] == pytest.approx(_served_accuracy(served / "1", specs, order))
    assert comparison["new_accuracy"] >= comparison["old_accuracy"]
    cross = next(c for c in comparison["per_class"] if c["label"] == "cross")
    assert cross["support"] > 0 and cross["old_recall"] == 0 and comparison["added_classes"] == ["cross"]
    assert f"recall {cross['old_recall']:.3f} -> {cross['new_recall']:.3f}" in out  # per-class lines on stdout
    assert "the version it started from" in (version / "assets.extra/report/report.md").read_text()
    meta = json.loads((version / contract.METADATA_FILE).read_text())
    assert meta["retrained_from"]["model"] == str(served / "1") and meta["data"]["images"] == 90 + 22


def test_a_worse_retraining_is_refused_unless_forced(served, capsys):
    # A deliberately worse setup: the whole backbone fine-tuned at a peak rate of 10 collapses the model onto one
    # class (seen here: 0.74 -> 0.35). The msp unknown score: the Gaussian of mahalanobis cannot be fitted on the
    # collapsed features (the forced export then failed with "Matrix is not positive definite").
    worse = ["train", "--init-from", str(served / "1"), "--data", "builtin:shapes", "--head-epochs", "0",
             "--fine-tune-epochs", "1", "--fine-tune-lr", "10", "--augment", "", "--batch-size", "16", "--quiet",
             "--unknown-score", "msp"]
    assert main(worse) == 1
    out, err = capsys.readouterr()
    old = _served_accuracy(served / "1", ["builtin:shapes"], ["circle", "square", "triangle"])
    before, after = re.search(r"accuracy (\S+) -> (\S+)", out).groups()
    assert float(before) == pytest.approx(old, abs=1e-4) and float(after) < old
    assert f"accuracy is {after}" in err and f"below {before}" in err and "--force" in err, err
    assert sorted(p.name for p in served.iterdir()) == ["1"]  # nothing exported, nothing left behind

    assert main([*worse, "--force"]) == 0
    out = capsys.readouterr().out
    assert "exported although worse" in out and (served / "2" / contract.SAVED_MODEL_FILE).is_file()


@pytest.mark.parametrize("flags, message", [
    (["--image-size", "64"], "--image-size 64 \\(it has 32\\)"),
    (["--backbone", "efficientnet_lite0"], "--backbone efficientnet_lite0 \\(it has mobilenet_v2\\)"),
    (["--name", "other"], "--name other differs from shapes"),
    (["--out", "elsewhere"], "--out does not apply"),
])
def test_init_from_refuses_what_cannot_match_before_training(served, flags, message, capsys):
    assert main(["train", "--init-from", str(served), "--data", "builtin:shapes", *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_init_from_needs_every_served_class_in_the_data(served, new_data, capsys):
    assert main(["train", "--init-from", str(served), "--data", str(new_data), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no images of ['square', 'triangle']" in err and "builtin:shapes" in err
    assert main(["train", "--init-from", str(served.parent / "nothing"), "--data", "builtin:shapes"]) == 2
