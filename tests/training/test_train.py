"""Training pieces that can be checked without a long run, and the CLI end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import encode
from tlserve.cli import main
from training.backbones.registry import get
from training.distribute import plan, tf_config_from_indexed_job
from training.model import build_classifier, unfreeze_top
from training.train import TrainConfig, _class_weights


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 8}, "image size"),
    ({"resize": "squash"}, "resize"),
    ({"augment": ("blur",)}, "unknown augmentation"),
    ({"backbone": "vgg99"}, "unknown backbone"),
    ({"dropout": 1.5}, "dropout"),
])
def test_config_errors_before_any_work(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="builtin:shapes", name="x", **changes).validate()


def test_unfreeze_top_keeps_batchnorm_frozen():
    model, base = build_classifier(get("mobilenet_v2"), 32, 3)
    assert not any(w.trainable for w in base.weights)
    weighted = [layer for layer in base.layers if layer.weights]
    non_bn = [layer for layer in weighted if "BatchNormalization" not in type(layer).__name__]
    assert unfreeze_top(base, None) == len(non_bn)
    assert unfreeze_top(base, 0) == 0
    assert unfreeze_top(base, 4) == sum("BatchNormalization" not in type(layer).__name__ for layer in weighted[-4:])
    assert all(not layer.trainable for layer in base.layers if "BatchNormalization" in type(layer).__name__)


def test_class_weights_balance_rare_classes():
    weights = _class_weights(np.array([0] * 8 + [1] * 2), 2)
    assert weights[1] == pytest.approx(4 * weights[0])
    assert weights[0] * 8 + weights[1] * 2 == pytest.approx(10)


@pytest.mark.parametrize("gpus, tf_config, expected", [
    (0, None, ("default", "float32")),
    (1, None, ("mirrored", "mixed_float16")),
    (4, None, ("mirrored", "mixed_float16")),
    (2, json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}),
     ("multi_worker_mirrored", "mixed_float16")),
    (0, json.dumps({"cluster": {"worker": ["a:1"]}}), ("default", "float32")),
])
def test_distribution_plan(gpus, tf_config, expected):
    # Only the decision is tested: no GPU and no second machine can run here.
    assert plan(gpus, tf_config) == expected


def test_distribution_plan_rejects_bad_tf_config():
    with pytest.raises(ValueError, match="TF_CONFIG"):
        plan(0, "{not json")


def test_tf_config_from_an_indexed_job():
    env = {"JOB_COMPLETION_INDEX": "1", "TLSERVE_TRAIN_WORKERS": "3",
           "TLSERVE_TRAIN_WORKER_ADDRESS": "tlserve-train-{index}.tlserve-train:2222"}
    config = json.loads(tf_config_from_indexed_job(env))
    assert config == {"cluster": {"worker": [f"tlserve-train-{i}.tlserve-train:2222" for i in range(3)]},
                      "task": {"type": "worker", "index": 1}}
    assert plan(0, json.dumps(config))[0] == "multi_worker_mirrored"
    assert tf_config_from_indexed_job({**env, "TF_CONFIG": "{}"}) is None  # an explicit TF_CONFIG wins
    assert tf_config_from_indexed_job({"JOB_COMPLETION_INDEX": "0"}) is None  # an Indexed Job of another kind
    for bad in ({"JOB_COMPLETION_INDEX": "3"}, {"TLSERVE_TRAIN_WORKER_ADDRESS": "w:2222"}, {"TLSERVE_TRAIN_WORKERS": "x"}):
        with pytest.raises(ValueError, match="TLSERVE_TRAIN_WORKER|JOB_COMPLETION_INDEX"):
            tf_config_from_indexed_job({**env, **bad})


def _folder_with_bad_files(root):
    rng = np.random.default_rng(0)
    for label, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (root / label).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            (root / label / f"{i}.png").write_bytes(encode(pixels))
    jpeg = encode(np.full((24, 24, 3), 200, np.uint8), "JPEG")
    (root / "red" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "blue" / "readme.txt").write_text("not an image")
    return root


def test_cli_trains_through_bad_files_and_evaluates(tmp_path, capsys):
    data = _folder_with_bad_files(tmp_path / "data")
    code = main(["train", "--data", str(data), "--name", "colours", "--out", str(tmp_path / "models"),
                 "--image-size", "32", "--head-epochs", "10", "--head-lr", "0.01", "--fine-tune-epochs", "1",
                 "--fine-tune-layers", "5", "--fine-tune-lr", "1e-4",
                 "--batch-size", "8", "--test-fraction", "0.25", "--val-fraction", "0.2", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    version = tmp_path / "models" / "colours" / "1"
    assert f"exported {version}" in out
    report_md = (version / "assets.extra/report/report.md").read_text()
    assert "truncated.jpg" in report_md and "readme.txt" in report_md
    assert "truncated.jpg" in out  # the console summary lists skipped images too

    code = main(["evaluate", "--model", str(tmp_path / "models" / "colours"), "--data", str(data),
                 "--out", str(tmp_path / "eval")])
    assert code == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n"] == 16 and report["accuracy"] > 0.9, report["accuracy"]  # red vs blue: 10 head epochs suffice


def test_cli_reports_bad_data_as_an_error(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "a.png")
    assert main(["train", "--data", str(tmp_path), "--name", "x", "--out", str(tmp_path / "m")]) == 2
    assert "at least two classes" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--data", "builtin:shapes"]) == 2


def test_train_uses_a_given_split(tmp_path):
    # bench/learning_curve.py trains on a few images per class and scores a fixed test split
    from training import data as datasets
    from training.train import train

    data = datasets.load_images("builtin:shapes")
    test = np.arange(0, len(data.labels), 3)
    rest = np.arange(len(data.labels)) % 3 != 0
    chosen = np.concatenate([np.flatnonzero((data.labels == c) & rest)[:5] for c in range(3)])  # 5 per class
    split = datasets.Split(chosen, np.empty(0, dtype=chosen.dtype), test, 0.25, 0.0, 0)
    cfg = TrainConfig(data="builtin:shapes", name="s", image_size=32, head_epochs=1, fine_tune_epochs=0,
                      batch_size=8, val_fraction=0.0, verbose=0)
    trained = train(cfg, data=data, split=split)
    assert trained.split is split and trained.test_scores.shape == (len(test), 3)
    assert trained.histories["phase1"].keys() == {"loss", "accuracy"}  # no validation split: none is made
