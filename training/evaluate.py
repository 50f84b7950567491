"""Evaluation reports: for a model just trained (its test split) and for an exported model on other data."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlserve import contract
from training import calibration as calib
from training import data as datasets
from training import open_set
from training.backbones import registry
from training.explain import LOGITS_LAYER, POOL_LAYER
from training.export import export, version_dirs
from training.reference import prediction_reference
from training.report import EvaluationInput, write_report
from training.train import TrainedModel, pixels_dataset

EVAL_BATCH = 32


def _tlserve_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tlserve")
    except PackageNotFoundError:
        return "unknown"


def logits_and_features(trained: TrainedModel, indices: np.ndarray,
                        probe: keras.Model | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n, C], pooled backbone features [n, D]) of the images ``indices`` of ``trained``'s data, float64,
    through the export's own preprocessing and no augmentation (``probe``: a :func:`probe_model` to reuse)."""
    return images_logits_and_features(trained, [trained.data.images[i] for i in indices], probe)


def images_logits_and_features(trained: TrainedModel, images: list[bytes],
                               probe: keras.Model | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`logits_and_features` of any encoded images."""
    cfg, model = trained.config, trained.model
    if not len(images):
        return np.zeros((0, len(trained.data.classes))), np.zeros((0, model.get_layer(POOL_LAYER).output.shape[-1]))
    probe = probe or probe_model(model)
    pixels = pixels_dataset(list(images), cfg.image_size, cfg.resize).batch(64)
    logits, features = probe.predict(pixels, verbose=0)
    return np.asarray(logits, np.float64), np.asarray(features, np.float64)


def probe_model(model: keras.Model) -> keras.Model:
    """pixels -> (logits, pooled features) of a classifier from :func:`training.model.build_classifier`."""
    return keras.Model(model.inputs, [model.get_layer(LOGITS_LAYER).output, model.get_layer(POOL_LAYER).output])


@dataclass
class Trust:
    """Calibration and the unknown score of a training run, fitted on its validation split (None without one),
    and the test split's logits and calibrated scores."""

    calibration: calib.Calibration | None
    unknown: open_set.UnknownScore | None
    test_logits: np.ndarray
    test_scores: np.ndarray  # calibrated: what the export answers for the test images
    test_unknown_scores: np.ndarray | None


def fit_trust(trained: TrainedModel, *, unknown_method: str = open_set.DEFAULT_METHOD,
              false_rejection: float = open_set.DEFAULT_FALSE_REJECTION) -> Trust:
    """Temperature on the validation split's logits; the unknown score's Gaussian (if any) on the training
    split's features and its threshold on the validation split; both measured on the test split."""
    split, labels = trained.split, trained.data.labels
    probe = probe_model(trained.model)
    test_logits, test_features = logits_and_features(trained, split.test, probe)
    if not len(split.val):
        return Trust(None, None, test_logits, calib.softmax(test_logits), None)
    val_logits, val_features = logits_and_features(trained, split.val, probe)
    cal = calib.calibrate(val_logits, labels[split.val], test_logits, labels[split.test])
    train_features = (logits_and_features(trained, split.train, probe)[1] if unknown_method == "mahalanobis"
                      else None)
    unknown = open_set.fit_unknown(unknown_method, false_rejection=false_rejection, temperature=cal.temperature,
                                   val_logits=val_logits, val_features=val_features, train_features=train_features,
                                   train_labels=labels[split.train], num_classes=len(trained.data.classes))
    test_unknown = unknown.score(test_logits, test_features)
    unknown.measured["test_false_rejection"] = open_set.rejection_rate(test_unknown, unknown.threshold)
    return Trust(cal, unknown, test_logits, calib.softmax(test_logits, cal.temperature), test_unknown)


def test_split_evaluation(trained: TrainedModel, info: dict, trust: Trust | None = None,
                          comparison: dict | None = None) -> EvaluationInput:
    """The held-out test split of a training run, as report input (with ``trust``: calibrated scores, the
    uncalibrated ones beside them, and the unknown score; with ``comparison``: training.retrain's scores of the
    version it started from beside the new ones)."""
    test = trained.split.test
    extra: dict = {"comparison": comparison} if comparison else {}
    if trust is not None:
        extra |= {"scores": trust.test_scores, "uncalibrated_scores": calib.softmax(trust.test_logits),
                 "calibration": trust.calibration.to_dict() if trust.calibration else None,
                 "unknown": trust.unknown.to_dict() if trust.unknown else None,
                 "unknown_scores": trust.test_unknown_scores}
    return EvaluationInput(**{
        "classes": trained.data.classes, "y_true": trained.data.labels[test], "scores": trained.test_scores,
        "images": [trained.data.images[i] for i in test], "sources": [trained.data.sources[i] for i in test],
        "skipped": list(trained.data.skipped), "histories": trained.histories, "info": info, **extra})


def export_trained(trained: TrainedModel, root: str | Path, version: int | None = None, *,
                   unknown_method: str = open_set.DEFAULT_METHOD,
                   false_rejection: float = open_set.DEFAULT_FALSE_REJECTION,
                   comparison: dict | None = None) -> tuple[Path, dict]:
    """Export ``trained`` calibrated, with its unknown score and its evaluation report inside; return the version
    directory and the report. ``unknown_method`` is one of ``open_set.METHODS``; ``false_rejection`` is the
    fraction of known (validation) images the threshold may reject; ``comparison`` (training.retrain's) goes
    into the report and, as ``retrained_from``, into the metadata."""
    cfg = trained.config
    test = trained.split.test
    trust = fit_trust(trained, unknown_method=unknown_method, false_rejection=false_rejection)
    accuracy = float(np.mean(trust.test_scores.argmax(axis=1) == trained.data.labels[test]))
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
        **({"retrained_from": {k: comparison[k] for k in ("model", "old_accuracy", "new_accuracy", "added_classes")}}
           if comparison else {}),
        contract.METADATA_REFERENCE: prediction_reference(trust.test_scores, trained.data.labels[test],
                                                          len(trained.data.classes)),
    }
    report: dict = {}

    def write_into(version_dir: Path) -> None:
        info = {"model": cfg.name, "backbone": cfg.backbone, "image size": cfg.image_size,
                "data": cfg.data, "seed": cfg.seed, "training seconds": round(trained.seconds, 1)}
        report.update(write_report(test_split_evaluation(trained, info, trust, comparison),
                                   version_dir / contract.REPORT_DIR))

    path = export(trained.model, root=root, name=cfg.name, classes=trained.data.classes,
                  image_size=cfg.image_size, resize=cfg.resize, metadata=metadata,
                  warmup_image=trained.data.images[int(test[0])], version=version, write_extra=write_into,
                  calibration=trust.calibration, unknown=trust.unknown)
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
    outputs = exported_outputs(version_dir, data.images)
    scores = outputs[contract.SCORES_OUTPUT]
    y_true = np.array([labels.index(data.classes[i]) for i in data.labels])
    info = {"model": str(version_dir), "data": data_spec}
    # An export with an unknown score (issue 16) also reports how many of these known images it would reject;
    # older exports have neither the output nor the metadata, and are reported as before.
    unknown_meta = _metadata(version_dir).get(contract.METADATA_UNKNOWN)
    unknown_scores = outputs.get(contract.UNKNOWN_SCORE_OUTPUT) if unknown_meta else None
    ev = EvaluationInput(classes=labels, y_true=y_true, scores=scores, images=data.images, sources=data.sources,
                         skipped=list(data.skipped), info=info,
                         unknown=unknown_meta if unknown_scores is not None else None, unknown_scores=unknown_scores)
    return write_report(ev, out_dir)


def exported_outputs(version_dir: Path, images) -> dict[str, np.ndarray]:
    """Each output of the export's ``serving_default`` (what a server answers) for the encoded ``images``, in
    batches of :data:`EVAL_BATCH`."""
    serve = tf.saved_model.load(str(version_dir)).signatures[contract.DEFAULT_SIGNATURE]
    outputs = [serve(**{contract.IMAGES_INPUT: tf.constant(images[i:i + EVAL_BATCH])})
               for i in range(0, len(images), EVAL_BATCH)]
    return {key: np.concatenate([out[key].numpy() for out in outputs]) for key in outputs[0]}


def _metadata(version_dir: Path) -> dict:
    path = version_dir / contract.METADATA_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
