"""The exported SavedModel: layout, signatures that agree with each other and with the in-memory model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from tests.conftest import encode
from tlserve.contract import EXAMPLE_IMAGE_KEY
from training.export import ExportError, WARMUP_BATCH_SIZES, existing_versions, export
from training.train import pixels_dataset


@pytest.fixture(scope="module")
def loaded(tiny_export):
    return tf.saved_model.load(str(tiny_export[0]))


def _test_images(trained, count=6):
    return [trained.data.images[i] for i in trained.split.test[:count]]


def _pixels(trained, images):
    cfg = trained.config
    return np.stack(list(pixels_dataset(images, cfg.image_size, cfg.resize).as_numpy_iterator()))


def test_layout_is_tf_serving_with_labels_metadata_warmup_and_report(tiny_export, tiny_training):
    path, report = tiny_export
    assert path.name == "1" and path.parent.name == "shapes"
    for part in ["saved_model.pb", "variables/variables.index", "assets/labels.txt", "assets.extra/metadata.json",
                 "assets.extra/tf_serving_warmup_requests", "assets.extra/report/report.json",
                 "assets.extra/report/report.md", "assets.extra/report/confusion_matrix.png"]:
        assert (path / part).is_file(), part
    assert (path / "assets/labels.txt").read_text().splitlines() == ["circle", "square", "triangle"]
    meta = json.loads((path / "assets.extra/metadata.json").read_text())
    assert meta["backbone"] == "mobilenet_v2" and meta["image_size"] == 32 and meta["version"] == 1
    assert meta["split"]["seed"] == 0 and len(meta["data"]["fingerprint"]) == 64
    assert meta["test_metrics"]["accuracy"] == pytest.approx(report["accuracy"])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_signatures_have_the_contract_names_and_keys(loaded):
    sigs = loaded.signatures
    assert set(sigs) >= {"serving_default", "pixels", "preprocess", "classify"}
    assert list(sigs["serving_default"].structured_input_signature[1]) == ["images"]
    assert list(sigs["pixels"].structured_input_signature[1]) == ["pixels"]
    assert list(sigs["preprocess"].structured_input_signature[1]) == ["image"]
    assert list(sigs["classify"].structured_input_signature[1]) == ["inputs"]
    # unknown_score is additive (issue 16): the anchors' outputs keep their names
    assert set(sigs["serving_default"].structured_outputs) == {"scores", "classes", "unknown_score"}


def _calibrated(tiny_export, uncalibrated):
    """The in-memory model's softmax at the export's temperature (scores are calibrated in the graph)."""
    t = json.loads((tiny_export[0] / "assets.extra/metadata.json").read_text())["calibration"]["temperature"]
    log_p = np.log(np.clip(uncalibrated, 1e-30, 1)) / t
    p = np.exp(log_p - log_p.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("batch", [1, 5])
def test_reloaded_model_equals_in_memory_model(loaded, tiny_training, tiny_export, batch):
    pixels = _pixels(tiny_training, _test_images(tiny_training, batch))
    in_memory = tiny_training.model(pixels, training=False).numpy()
    got = loaded.signatures["pixels"](pixels=tf.constant(pixels))
    np.testing.assert_allclose(got["scores"].numpy(), _calibrated(tiny_export, in_memory), atol=1e-5)
    np.testing.assert_array_equal(got["scores"].numpy().argmax(1), in_memory.argmax(1))
    assert got["classes"].shape == (batch, 3)
    assert [c.decode() for c in got["classes"].numpy()[0]] == ["circle", "square", "triangle"]


def test_serving_default_on_png_matches_the_evaluation_path(loaded, tiny_training, tiny_export):
    test = tiny_training.split.test
    images = [tiny_training.data.images[i] for i in test]
    got = loaded.signatures["serving_default"](images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(got, _calibrated(tiny_export, tiny_training.test_scores), atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), tiny_training.test_scores.argmax(1))


def test_classify_equals_serving_default(loaded, tiny_training):
    images = _test_images(tiny_training)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[img]))})).SerializeToString()
        for img in images]
    by_example = loaded.signatures["classify"](inputs=tf.constant(examples))["scores"].numpy()
    direct = loaded.signatures["serving_default"](images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(by_example, direct, atol=1e-6)


def test_preprocess_then_pixels_equals_serving_default(loaded, tiny_training):
    images = _test_images(tiny_training, 3)
    pixels = tf.stack([loaded.signatures["preprocess"](image=tf.constant(img))["pixels"] for img in images])
    assert pixels.dtype == tf.uint8 and pixels.shape == (3, 32, 32, 3)
    two_step = loaded.signatures["pixels"](pixels=pixels)["scores"].numpy()
    one_step = loaded.signatures["serving_default"](images=tf.constant(images))["scores"].numpy()
    np.testing.assert_allclose(two_step, one_step, atol=1e-6)


def test_animated_gif_is_served_as_its_first_frame(loaded, tmp_path):
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    first = np.asarray(Image.open(tmp_path / "a.gif").convert("RGB"))
    serve = loaded.signatures["serving_default"]
    from_gif = serve(images=tf.constant([(tmp_path / "a.gif").read_bytes()]))["scores"].numpy()
    from_png = serve(images=tf.constant([encode(first)]))["scores"].numpy()
    np.testing.assert_allclose(from_gif, from_png, atol=1e-6)


def test_warmup_records_parse_and_run(tiny_export, loaded):
    path = tiny_export[0] / "assets.extra/tf_serving_warmup_requests"
    sizes = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        sizes.append(out["scores"].shape[0])
    assert sizes == list(WARMUP_BATCH_SIZES)


def test_versions_count_up_and_are_never_overwritten(tiny_training, tmp_path):
    model = tiny_training.model
    args = dict(root=tmp_path, name="m", classes=tiny_training.data.classes, image_size=32, resize="stretch",
                metadata={}, warmup_image=tiny_training.data.images[0])
    (tmp_path / "m" / "00000041").mkdir(parents=True)  # TF Serving style leading zeros count as 41
    assert existing_versions(tmp_path / "m") == [41]
    assert export(model, **args).name == "42"
    with pytest.raises(ExportError, match="already exists"):
        export(model, **args, version=42)

    def fail(_):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        export(model, **args, write_extra=fail)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["00000041", "42"]


@pytest.mark.parametrize("name", ["../escape", "", "a/b", ".hidden", "x" * 256])  # 256: the server refuses it
def test_bad_model_names_are_refused(tiny_training, tmp_path, name):
    with pytest.raises(ExportError, match="model name"):
        export(tiny_training.model, root=tmp_path, name=name, classes=["a", "b"], image_size=32,
               resize="stretch", metadata={}, warmup_image=b"")


@pytest.mark.parametrize("version", [0, -1, 2**63])  # 2**63 does not fit TF Serving's int64 versions
def test_versions_out_of_range_are_refused(tiny_training, tmp_path, version):
    with pytest.raises(ExportError, match="must be >= 1 and fit in int64"):
        export(tiny_training.model, root=tmp_path, name="m", classes=["a", "b"], image_size=32,
               resize="stretch", metadata={}, warmup_image=b"", version=version)
    assert not (tmp_path / "m").exists()


def test_existing_versions_ignore_non_ascii_digit_names(tmp_path):
    """'²' and '١٢' pass str.isdigit(); int() refuses the first and reads the second as 12. Neither is a version
    folder for TF Serving or tlserve's server, so the export must ignore them too (it used to crash on '²')."""
    for name in ("3", "0005", "²", "١٢", "٣", "-1", "1.5", ".tmp-7-ab12"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a version")
    assert existing_versions(tmp_path) == [3, 5]


def test_resolve_version_dir_picks_the_folder_the_server_would(tmp_path):
    """The latest ASCII-integer folder, kept as found: '١٢' is not version 12; of '7' and '007' the shortest wins."""
    from training.evaluate import resolve_version_dir

    for name in ("1", "007", "7", "١٢", "²"):
        (tmp_path / name).mkdir()
    assert resolve_version_dir(tmp_path) == tmp_path / "7"
