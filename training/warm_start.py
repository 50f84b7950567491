"""A served version read back as a trainable Keras classifier: what it is (backbone, size, classes) and its weights.

No extra file is needed in the export. :func:`training.export.export` saves a ``ServingModule`` whose attribute
``model`` is the Keras classifier, so the SavedModel's ``variables/`` is an object-graph checkpoint holding that
classifier under ``model``. A classifier built again by :func:`training.model.build_classifier` with the same
backbone, size and class count has the same object graph, and ``tf.train.Checkpoint(model=...)`` restores every
weight into it by position in that graph (the export's own variables, the unknown score's Gaussian, are left
alone). Exports made before this module work too; stock TF Serving never reads anything new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlserve import contract
from training.backbones import registry
from training.evaluate import resolve_version_dir
from training.explain import LOGITS_LAYER
from training.model import build_classifier
from training.preprocessing import RESIZE_POLICIES

_CHECKPOINT = Path("variables") / "variables"  # the SavedModel's variables, a TF checkpoint prefix


class WarmStartError(ValueError):
    """The served version cannot be a starting point (missing files, unknown backbone, another size)."""


@dataclass(frozen=True)
class StartingPoint:
    """A served version to retrain from, as its export describes it."""

    version_dir: Path
    backbone: str
    image_size: int
    resize: str
    classes: list[str]  # assets/labels.txt, in the order of the model's outputs
    metadata: dict

    @property
    def name(self) -> str:
        return self.version_dir.parent.name

    @property
    def repository(self) -> Path:
        return self.version_dir.parent.parent


def starting_point(init_from: str | Path) -> StartingPoint:
    """``models/<name>/<version>``, or the newest version of ``models/<name>``, read from its metadata and labels."""
    version_dir = resolve_version_dir(init_from)
    try:
        metadata = json.loads((version_dir / contract.METADATA_FILE).read_text())
        classes = (version_dir / contract.LABELS_FILE).read_text().splitlines()
    except (OSError, ValueError) as err:
        raise WarmStartError(f"{version_dir} is not a tlserve export to retrain from: {err}") from err
    if not isinstance(metadata, dict):
        raise WarmStartError(f"{version_dir / contract.METADATA_FILE} is not a JSON object")
    backbone, size, resize = metadata.get("backbone"), metadata.get("image_size"), metadata.get("resize")
    if backbone not in registry.BACKBONES:
        raise WarmStartError(f"{version_dir}: backbone {backbone!r} in its metadata is not one tlserve builds "
                             f"({', '.join(registry.BACKBONES)})")
    if not isinstance(size, int) or resize not in RESIZE_POLICIES:
        raise WarmStartError(f"{version_dir}: its metadata needs an integer image_size and a resize in "
                             f"{RESIZE_POLICIES}, got {size!r} and {resize!r}")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise WarmStartError(f"{version_dir / contract.LABELS_FILE} must list at least two distinct classes")
    return StartingPoint(version_dir, backbone, size, resize, classes, metadata)


def check_matches(start: StartingPoint, *, backbone: str | None, image_size: int | None,
                  resize: str | None) -> None:
    """A WarmStartError for a flag that asks for another backbone, size or resize than the served version's:
    its weights fit only its own architecture, and another size or resize would feed them other pixels."""
    asked = {"--backbone": (backbone, start.backbone), "--image-size": (image_size, start.image_size),
             "--resize": (resize, start.resize)}
    wrong = [f"{flag} {given} (it has {served})" for flag, (given, served) in asked.items()
             if given is not None and given != served]
    if wrong:
        raise WarmStartError(f"cannot warm-start from {start.version_dir}: {'; '.join(wrong)}. Its weights fit only "
                             f"its own backbone and size: leave these flags out, or train a new model without "
                             f"--init-from")


def load_weights(start: StartingPoint, model: keras.Model) -> None:
    """Set every weight of ``model`` (a :func:`build_classifier` of the start's backbone and size) from the
    served version. ``model`` has the served classes first, in their order, and may have more: their head rows
    keep the fresh initialisation ``model`` was built with, the served rows keep their weights."""
    served, _ = build_classifier(registry.get(start.backbone), start.image_size, len(start.classes),
                                 pretrained=False)
    try:
        status = tf.train.Checkpoint(model=served).read(str(start.version_dir / _CHECKPOINT))
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise WarmStartError(f"the weights in {start.version_dir} do not fit a {start.backbone} classifier of "
                             f"{start.image_size} px and {len(start.classes)} classes, as its metadata says: "
                             f"{str(err).splitlines()[0]}") from err
    status.expect_partial()  # the ServingModule's own variables (the unknown score's Gaussian) stay unread
    _copy(served, model, len(start.classes))


def _copy(served: keras.Model, model: keras.Model, served_classes: int) -> None:
    old_head, new_head = served.get_layer(LOGITS_LAYER), model.get_layer(LOGITS_LAYER)
    head_ids = {id(w) for w in (*old_head.weights, *new_head.weights)}
    body = [(o, n) for o, n in zip(served.weights, model.weights, strict=True)
            if id(o) not in head_ids and id(n) not in head_ids]
    for old, new in body:
        if tuple(old.shape) != tuple(new.shape):
            raise WarmStartError(f"weight {new.path} has shape {tuple(new.shape)}, the export's {tuple(old.shape)}")
        new.assign(old.numpy())
    kernel, bias = new_head.kernel.numpy(), new_head.bias.numpy()
    kernel[:, :served_classes] = old_head.kernel.numpy()
    bias[:served_classes] = old_head.bias.numpy()
    new_head.kernel.assign(kernel)
    new_head.bias.assign(np.asarray(bias))
