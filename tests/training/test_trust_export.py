"""The trust outputs of an export: calibrated scores, unknown_score, the explain signatures, their metadata, and that
a server holding an export without them takes the new one (and back) without breaking its clients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tlserve import contract
from training import calibration as calib
from training import open_set
from training.backbones.registry import get
from training.evaluate import export_trained, logits_and_features
from training.explain import Parts
from training.export import ServingModule
from training.model import build_classifier
from training.train import pixels_dataset

IMAGE_SIGNATURES = (contract.DEFAULT_SIGNATURE, contract.PIXELS_SIGNATURE, contract.CLASSIFY_SIGNATURE)


@pytest.fixture(scope="module")
def loaded(tiny_export):
    return tf.saved_model.load(str(tiny_export[0]))


@pytest.fixture(scope="module")
def meta(tiny_export):
    return json.loads((tiny_export[0] / contract.METADATA_FILE).read_text())


def _images(trained, count=6):
    return [trained.data.images[i] for i in trained.split.test[:count]]


def _pixels(trained, images):
    cfg = trained.config
    return np.stack(list(pixels_dataset(images, cfg.image_size, cfg.resize).as_numpy_iterator()))


def _examples(images):
    return [tf.train.Example(features=tf.train.Features(feature={contract.EXAMPLE_IMAGE_KEY: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[img]))})).SerializeToString() for img in images]


def _run(loaded, signature, trained, images):
    arg = {contract.DEFAULT_SIGNATURE: lambda: {contract.IMAGES_INPUT: tf.constant(images)},
           contract.PIXELS_SIGNATURE: lambda: {contract.PIXELS_INPUT: tf.constant(_pixels(trained, images))},
           contract.CLASSIFY_SIGNATURE: lambda: {contract.EXAMPLES_INPUT: tf.constant(_examples(images))}}[signature]
    return {k: v.numpy() for k, v in loaded.signatures[signature](**arg()).items()}


def test_metadata_records_calibration_and_unknown_under_the_contract_keys(meta):
    cal = meta[contract.METADATA_CALIBRATION]
    for key in (contract.CALIBRATION_TEMPERATURE, contract.CALIBRATION_ECE_BEFORE, contract.CALIBRATION_ECE_AFTER,
                contract.CALIBRATION_NLL_BEFORE, contract.CALIBRATION_NLL_AFTER, contract.CALIBRATION_ECE_FLOOR):
        assert np.isfinite(cal[key]), key
    assert cal[contract.CALIBRATION_TEMPERATURE] > 0
    unknown = meta[contract.METADATA_UNKNOWN]
    assert unknown[contract.UNKNOWN_METHOD] == open_set.DEFAULT_METHOD
    assert unknown[contract.UNKNOWN_FALSE_REJECTION_TARGET] == open_set.DEFAULT_FALSE_REJECTION
    assert np.isfinite(unknown[contract.UNKNOWN_THRESHOLD])
    assert unknown[contract.UNKNOWN_OUTPUT] == contract.UNKNOWN_SCORE_OUTPUT
    assert unknown["val_false_rejection"] <= open_set.DEFAULT_FALSE_REJECTION


@pytest.mark.parametrize("signature", IMAGE_SIGNATURES)
def test_image_signatures_keep_their_outputs_and_add_unknown_score(loaded, tiny_training, signature):
    out = _run(loaded, signature, tiny_training, _images(tiny_training, 5))
    assert set(out) == {contract.SCORES_OUTPUT, contract.CLASSES_OUTPUT, contract.UNKNOWN_SCORE_OUTPUT}
    assert out[contract.SCORES_OUTPUT].shape == (5, 3) and out[contract.CLASSES_OUTPUT].shape == (5, 3)
    assert out[contract.UNKNOWN_SCORE_OUTPUT].shape == (5,) and out[contract.UNKNOWN_SCORE_OUTPUT].dtype == np.float32
    spec = loaded.signatures[signature].structured_outputs[contract.UNKNOWN_SCORE_OUTPUT]
    assert spec.shape.as_list() == [None] and spec.dtype == tf.float32


def test_scores_are_the_temperature_scaled_softmax_and_keep_the_models_argmax(loaded, tiny_training, meta):
    t = meta[contract.METADATA_CALIBRATION][contract.CALIBRATION_TEMPERATURE]
    assert abs(t - 1) > 1e-3  # otherwise this test could not tell calibrated from uncalibrated scores
    images = [tiny_training.data.images[i] for i in tiny_training.split.test]
    got = _run(loaded, contract.DEFAULT_SIGNATURE, tiny_training, images)[contract.SCORES_OUTPUT]
    logits, _ = logits_and_features(tiny_training, tiny_training.split.test)
    np.testing.assert_allclose(got, calib.softmax(logits, t), atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), tiny_training.test_scores.argmax(1))


def test_the_default_unknown_score_is_exported_and_its_test_rate_recorded(loaded, tiny_training, meta):
    got = _run(loaded, contract.DEFAULT_SIGNATURE, tiny_training,
               [tiny_training.data.images[i] for i in tiny_training.split.test])[contract.UNKNOWN_SCORE_OUTPUT]
    unknown = meta[contract.METADATA_UNKNOWN]
    assert unknown[contract.UNKNOWN_METHOD] == open_set.DEFAULT_METHOD
    assert unknown["test_false_rejection"] == pytest.approx(np.mean(got > unknown[contract.UNKNOWN_THRESHOLD]))


@pytest.mark.parametrize("method", open_set.METHODS)
def test_each_unknown_score_in_the_graph_equals_the_fitted_one(tiny_training, tmp_path, method):
    path, report = export_trained(tiny_training, tmp_path, unknown_method=method)
    meta = json.loads((path / contract.METADATA_FILE).read_text())
    assert meta[contract.METADATA_UNKNOWN][contract.UNKNOWN_METHOD] == method
    loaded = tf.saved_model.load(str(path))
    test = tiny_training.split.test
    got = _run(loaded, contract.PIXELS_SIGNATURE, tiny_training,
               [tiny_training.data.images[i] for i in test])[contract.UNKNOWN_SCORE_OUTPUT]
    logits, features = logits_and_features(tiny_training, test)
    t = meta[contract.METADATA_CALIBRATION][contract.CALIBRATION_TEMPERATURE]
    gaussian = None
    if method == "mahalanobis":
        train_features = logits_and_features(tiny_training, tiny_training.split.train)[1]
        gaussian = open_set.Gaussian.fit(train_features, tiny_training.data.labels[tiny_training.split.train], 3)
    expected = open_set.scores(method, logits=logits, temperature=t, features=features, gaussian=gaussian)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4)
    assert report["unknown"]["score"] == method


def test_explain_signatures_have_the_contract_interface(loaded):
    for name, (first, second) in contract.EXPLAIN_SIGNATURE_INPUTS.items():
        sig = loaded.signatures[name]
        assert set(sig.structured_input_signature[1]) == {first, second}
        assert sig.structured_input_signature[1][second].dtype == tf.int32
        assert set(sig.structured_outputs) == {contract.HEATMAP_OUTPUT, contract.EXPLAINED_CLASS_OUTPUT,
                                               contract.EXPLAINED_SCORE_OUTPUT}
    assert loaded.signatures["explain"].structured_input_signature[1]["images"].dtype == tf.string


def test_explain_gives_heatmaps_in_0_1_for_the_top_or_the_asked_class(loaded, tiny_training):
    images = _images(tiny_training, 4)
    scores = _run(loaded, contract.DEFAULT_SIGNATURE, tiny_training, images)[contract.SCORES_OUTPUT]
    asked = np.array([-1, 0, 2, -1], np.int32)
    out = loaded.signatures["explain"](images=tf.constant(images), class_index=tf.constant(asked))
    heatmap = out["heatmap"].numpy()
    assert heatmap.shape == (4, 32, 32) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0 and heatmap.max() <= 1
    expected = np.where(asked < 0, scores.argmax(1), asked)
    np.testing.assert_array_equal(out["class_index"].numpy(), expected)
    np.testing.assert_allclose(out["score"].numpy(), scores[np.arange(4), expected], atol=1e-5)
    by_pixels = loaded.signatures["explain_pixels"](pixels=tf.constant(_pixels(tiny_training, images)),
                                                    class_index=tf.constant(asked))
    np.testing.assert_allclose(by_pixels["heatmap"].numpy(), heatmap, atol=1e-5)


@pytest.mark.parametrize("asked", [[3], [-2], [0, 0]])  # beyond the 3 classes; below -1; two indices for one image
def test_explain_refuses_a_bad_class_index(loaded, tiny_training, asked):
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["explain"](images=tf.constant(_images(tiny_training, 1)),
                                     class_index=tf.constant(asked, tf.int32))


def test_gradcam_on_the_last_map_equals_cam_computed_by_hand():
    """For global average pooling and one dense layer, Grad-CAM is CAM: ReLU(sum_k w[k, c] A_k), up to scale."""
    model, _ = build_classifier(get("mobilenet_v2"), 96, 4)  # 96 px: a 3 x 3 feature map
    rng = np.random.default_rng(0)
    dense = model.get_layer("logits")
    kernel = rng.normal(size=dense.kernel.shape).astype("float32")
    kernel[:, 0] = -np.abs(kernel[:, 0])  # features are >= 0 (ReLU6): class 0's map is all zero
    kernel[:, 1] = np.abs(kernel[:, 1])  # and class 1's positive everywhere
    dense.kernel.assign(kernel)
    parts = Parts(model, strides=())  # the last map alone
    pixels = rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    heatmaps, chosen, _ = parts.gradcam(tf.constant(pixels), tf.constant([1, 0, -1], tf.int32), 1.0, 96)
    fmap = parts.trunk(tf.constant(pixels), training=False).numpy()
    assert fmap.shape[1:3] == (3, 3)
    heatmaps = heatmaps.numpy()
    for i, c in enumerate(chosen.numpy()):
        cam = np.maximum((fmap[i] * kernel[:, c]).sum(axis=2), 0)
        expected = tf.image.resize(cam[None, :, :, None], [96, 96], method="bilinear").numpy()[0, :, :, 0]
        expected = expected / expected.max() if expected.max() > 0 else expected
        np.testing.assert_allclose(heatmaps[i], expected, atol=1e-4)
    assert heatmaps[0].max() == pytest.approx(1.0) and heatmaps[1].max() == 0.0


@pytest.mark.parametrize(("size", "sides"), [(96, (6, 12)), (100, (7, 13))])  # 100: sides rounded up
def test_the_export_explains_the_feature_maps_at_a_sixteenth_and_an_eighth_of_the_input(size, sides):
    """Not the last map (1/32: 3 x 3 at 96 px), and never a padding layer's output (its zero border)."""
    import keras

    model, base = build_classifier(get("mobilenet_v2"), size, 4)
    parts = Parts(model)
    for name, side in zip(parts.explained_names, sides, strict=True):
        layer = base.get_layer(name)
        assert layer.output.shape[1:3] == (side, side) and not isinstance(layer, keras.layers.ZeroPadding2D)
        after = base.layers[base.layers.index(layer) + 1:]  # the last layer that wide
        assert all(len(later.output.shape) != 4 or later.output.shape[1] != side
                   or isinstance(later, keras.layers.ZeroPadding2D) for later in after)
    assert Parts(model, strides=()).explained_names == [base.layers[-1].name]
    module = ServingModule(model, ["a", "b", "c", "d"], size, "stretch")
    pixels = tf.constant(np.random.default_rng(1).integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    asked = tf.constant([-1, 2], tf.int32)
    heatmaps = module.explain_pixels(pixels, asked)["heatmap"].numpy()
    np.testing.assert_allclose(heatmaps, parts.gradcam(pixels, asked, 1.0, size)[0].numpy(), atol=1e-5)
    one = [Parts(model, strides=(s,)).gradcam(pixels, asked, 1.0, size)[0].numpy() for s in (16, 8)]
    mean = (one[0] + one[1]) / 2  # the two maps' mean, scaled to peak 1
    np.testing.assert_allclose(heatmaps, mean / mean.max(axis=(1, 2), keepdims=True), atol=1e-5)


def _old_style_export(trained, path):
    """What an export made before issue 16 offers: the four signatures, outputs scores and classes only."""
    module = ServingModule(trained.model, trained.data.classes, 32, "stretch")
    sigs = {k: v for k, v in module.signatures().items() if k in contract.SIGNATURE_INPUTS}
    tf.saved_model.save(module, str(path), signatures=sigs)
    return path


def test_a_server_takes_the_new_export_over_an_old_one_and_back(tiny_export, tiny_training, tmp_path):
    from service.repository.compatibility import interface_problem
    from service.runtime.signatures import read_meta_graph, read_signatures

    old = read_signatures(read_meta_graph(_old_style_export(tiny_training, tmp_path / "old")))
    new = read_signatures(read_meta_graph(tiny_export[0]))
    assert contract.EXPLAIN_SIGNATURE not in old and contract.EXPLAIN_SIGNATURE in new
    assert contract.UNKNOWN_SCORE_OUTPUT in new[contract.DEFAULT_SIGNATURE].outputs
    assert contract.UNKNOWN_SCORE_OUTPUT not in old[contract.DEFAULT_SIGNATURE].outputs
    assert interface_problem(old, new) is None
    assert interface_problem(new, old) is None  # rolling back to an older export is no break either
