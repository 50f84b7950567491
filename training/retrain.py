"""Retraining from the served version: warm-start from its weights, fine-tune briefly on the combined data, score
the new model and the served one on the same (new) test split, and export the next version only if it is not
worse (or when forced).

The served version is scored as it is served: its own ``serving_default`` on the test images' encoded bytes. A
class the data adds is one the served version cannot answer, so its test images count as its mistakes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlserve import contract
from training import data as datasets
from training import open_set
from training.evaluate import export_trained, exported_outputs
from training.train import TrainConfig, TrainedModel, train
from training.warm_start import StartingPoint, load_weights

# Brief by default: the head is already trained and the backbone already tuned to this domain, so phase 1 only
# has to place the new head rows, and phase 2 nudges the backbone at a tenth of a first training's peak rate.
HEAD_EPOCHS = 3
FINE_TUNE_EPOCHS = 5
FINE_TUNE_LEARNING_RATE = 1e-4


class RetrainError(ValueError):
    """The data cannot retrain this served version."""


class Refused(Exception):
    """The retrained model scores worse than the version it started from; nothing was exported."""


@dataclass
class Retrained:
    trained: TrainedModel
    start: StartingPoint
    comparison: dict  # report.json's "comparison": see compare()

    @property
    def worse(self) -> bool:
        return self.comparison["new_accuracy"] < self.comparison["old_accuracy"]


def config(start: StartingPoint, **given) -> TrainConfig:
    """The TrainConfig of a retraining: the served version's backbone, size, resize and name; the brief
    schedule above unless ``given`` sets it; every other field from ``given`` or TrainConfig's defaults."""
    brief = {"head_epochs": HEAD_EPOCHS, "fine_tune_epochs": FINE_TUNE_EPOCHS,
             "fine_tune_learning_rate": FINE_TUNE_LEARNING_RATE}
    return TrainConfig(**{**brief, **given, "name": start.name, "backbone": start.backbone,
                          "image_size": start.image_size, "resize": start.resize})


def in_served_order(data: datasets.LabelledImages, start: StartingPoint) -> tuple[datasets.LabelledImages, list[str]]:
    """``data`` relabelled so that the served classes come first in the served order (their head rows keep
    their index), the new classes after them, sorted; and the new classes.

    Every served class must have images: fine-tuning on data without a class teaches the model to never answer
    it (and leaves no test image to tell)."""
    missing = [c for c in start.classes if c not in data.classes]
    if missing:
        trained_on = start.metadata.get("data", {}).get("spec", "the data it was trained on")
        raise RetrainError(f"the data has no images of {missing}, classes of {start.version_dir}: retraining without "
                           f"them would unlearn them. Add the data it was trained on ({trained_on}) as another --data")
    added = sorted(set(data.classes) - set(start.classes))
    order = [*start.classes, *added]
    index = np.array([order.index(c) for c in data.classes], dtype=np.int64)
    return dataclasses.replace(data, classes=order, labels=index[data.labels]), added


def compare(classes: list[str], y_true: np.ndarray, old_pred: np.ndarray, new_pred: np.ndarray, *, model: str,
            added: list[str]) -> dict:
    """Accuracy and per-class recall of the served (``old_pred``) and the new model on the same test images;
    every array indexes ``classes``."""
    per_class = []
    for i, label in enumerate(classes):
        mine = y_true == i
        old, new = (float(np.mean(p[mine] == i)) if mine.any() else 0.0 for p in (old_pred, new_pred))
        per_class.append({"label": label, "support": int(mine.sum()), "old_recall": old, "new_recall": new,
                          "change": new - old})
    return {"model": model, "test_images": int(len(y_true)), "old_accuracy": float(np.mean(old_pred == y_true)),
            "new_accuracy": float(np.mean(new_pred == y_true)), "added_classes": list(added), "per_class": per_class}


def retrain(start: StartingPoint, cfg: TrainConfig, strategy=None) -> Retrained:
    """Load and combine ``cfg.data``, warm-start from ``start``, fine-tune, and compare on the new test split."""
    data = datasets.load_sources(cfg.data, min_per_class=cfg.min_per_class)
    data, added = in_served_order(data, start)
    trained = train(cfg, data=data, strategy=strategy, warm_start=lambda model: load_weights(start, model))
    test = trained.split.test
    served = exported_outputs(start.version_dir, datasets.take(data.images, test))
    served_labels = [label.decode() for label in served[contract.CLASSES_OUTPUT][0]]
    # Served classes by name, not position: the served version's labels are the first of data.classes.
    old_pred = np.array([data.classes.index(served_labels[i]) for i in served[contract.SCORES_OUTPUT].argmax(1)])
    comparison = compare(data.classes, data.labels[test], old_pred, trained.test_scores.argmax(axis=1),
                         model=str(start.version_dir), added=added)
    return Retrained(trained, start, comparison)


def publish(result: Retrained, *, force: bool = False, version: int | None = None, root: Path | None = None,
            unknown_method: str | None = None,
            false_rejection: float = open_set.DEFAULT_FALSE_REJECTION) -> tuple[Path, dict]:
    """Export the retrained model as the next version beside the one it started from (``root``: another
    repository, for the other workers of a cluster) with the comparison in its report; :class:`Refused` if it
    scores worse and not ``force``. The unknown score keeps the served version's method unless given."""
    c = result.comparison
    if result.worse and not force:
        raise Refused(f"not exporting: the retrained model's accuracy is {c['new_accuracy']:.4f} on the "
                      f"{c['test_images']} test images, below {c['old_accuracy']:.4f} for {c['model']} it started "
                      f"from; pass --force to export it anyway")
    served_unknown = result.start.metadata.get(contract.METADATA_UNKNOWN) or {}
    method = unknown_method or served_unknown.get(contract.UNKNOWN_METHOD) or open_set.DEFAULT_METHOD
    if method not in contract.UNKNOWN_METHODS:
        method = open_set.DEFAULT_METHOD
    return export_trained(result.trained, root or result.start.repository, version, unknown_method=method,
                          false_rejection=false_rejection, comparison=c)
