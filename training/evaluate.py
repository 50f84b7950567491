"""Evaluation reports: for a model just trained (its test split) and for an exported model on other data."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from tlserve import contract
from training import data as datasets
from training.backbones import registry
from training.export import export, version_dirs
from training.report import EvaluationInput, write_report
from training.train import TrainedModel

EVAL_BATCH = 32


def _tlserve_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlserve")
    except PackageNotFoundError:
        return "unknown"


def test_split_evaluation(trained: TrainedModel, info: dict) -> EvaluationInput:
    """The held-out test split of a training run, as report input."""
    test = trained.split.test
    return EvaluationInput(
        classes=trained.data.classes, y_true=trained.data.labels[test], scores=trained.test_scores,
        images=[trained.data.images[i] for i in test], sources=[trained.data.sources[i] for i in test],
        skipped=list(trained.data.skipped), histories=trained.histories, info=info,
    )


def export_trained(trained: TrainedModel, root: str | Path, version: int | None = None) -> tuple[Path, dict]:
    """Export ``trained`` with its evaluation report inside; return the version directory and the report."""
    cfg = trained.config
    test = trained.split.test
    accuracy = float(np.mean(trained.test_scores.argmax(axis=1) == trained.data.labels[test]))
    metadata = {
        "tlserve_version": _tlserve_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backbone": cfg.backbone,
        "image_size": cfg.image_size,
        "resize": cfg.resize,
        "normalisation": asdict(registry.get(cfg.backbone).normalisation),
        "classes": trained.data.classes,
        "inputs": dict(contract.SIGNATURE_INPUTS),
        "test_metrics": {"accuracy": accuracy, "test_images": int(len(test))},
        "split": trained.split.to_dict(),
        "data": {"spec": cfg.data, "fingerprint": datasets.fingerprint(trained.data),
                 "images": len(trained.data.images), "skipped": len(trained.data.skipped)},
        "seed": cfg.seed,
        "split_seed": cfg.split_seed,
        "training": {**trained.info, "seconds": round(trained.seconds, 1)},
    }
    report: dict = {}

    def write_into(version_dir: Path) -> None:
        info = {"model": cfg.name, "backbone": cfg.backbone, "image size": cfg.image_size,
                "data": cfg.data, "seed": cfg.seed, "training seconds": round(trained.seconds, 1)}
        report.update(write_report(test_split_evaluation(trained, info), version_dir / contract.REPORT_DIR))

    path = export(trained.model, root=root, name=cfg.name, classes=trained.data.classes,
                  image_size=cfg.image_size, resize=cfg.resize, metadata=metadata,
                  warmup_image=trained.data.images[int(test[0])], version=version, write_extra=write_into)
    return path, report


def resolve_version_dir(model: str | Path) -> Path:
    """``models/<name>/<version>`` as given, or the latest version under ``models/<name>``."""
    path = Path(model)
    if (path / contract.SAVED_MODEL_FILE).is_file():
        return path
    versions = version_dirs(path)
    if not versions:
        raise FileNotFoundError(f"{path} is neither a SavedModel version directory nor a model with versions")
    return versions[max(versions)]


def evaluate_exported(model: str | Path, data_spec: str, out_dir: str | Path) -> dict:
    """Score an exported model's ``serving_default`` on labelled images and write the report to ``out_dir``."""
    version_dir = resolve_version_dir(model)
    labels = (version_dir / contract.LABELS_FILE).read_text().splitlines()
    data = datasets.load_images(data_spec, min_per_class=1)
    unknown = sorted(set(data.classes) - set(labels))
    if unknown:
        raise datasets.DataError(f"classes not known to the model: {unknown}; the model knows {labels}")
    serve = tf.saved_model.load(str(version_dir)).signatures[contract.DEFAULT_SIGNATURE]
    scores = np.concatenate([
        serve(**{contract.IMAGES_INPUT: tf.constant(data.images[i:i + EVAL_BATCH])})[contract.SCORES_OUTPUT].numpy()
        for i in range(0, len(data.images), EVAL_BATCH)
    ])
    y_true = np.array([labels.index(data.classes[i]) for i in data.labels])
    info = {"model": str(version_dir), "data": data_spec}
    ev = EvaluationInput(classes=labels, y_true=y_true, scores=scores, images=data.images, sources=data.sources,
                         skipped=list(data.skipped), info=info)
    return write_report(ev, out_dir)
