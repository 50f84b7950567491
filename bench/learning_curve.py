"""Few labels: test accuracy on digits against labelled images per class (a benchmark, not a test).

    nice .venv/bin/python bench/learning_curve.py [--per-class 5 10 20 50 all] [--seeds 0 1 2]

The test split is the one every digits figure in this project uses (stratified 25%, random_state=0: 450
images); the other 1,347 are the pool. For each number k of labelled images per class and each seed, k
images of each class are drawn from the pool (``all``: the whole pool) and four methods learn from exactly
those images, nothing else:

- ``tlserve``: `tlserve train`'s defaults (MobileNetV2 at 112 px, head then whole backbone fine-tuned);
  no validation split (it would take labels away), so early stopping watches the training loss;
- ``frozen_features_logreg``: logistic regression on the frozen ImageNet MobileNetV2's pooled features at
  112 px (the same preprocessing and normalisation as tlserve's model);
- ``svc_raw_pixels``: scikit-learn's SVC(gamma=0.001) on the 64 raw pixels (0.991 on all of the pool);
- ``logreg_raw_pixels``: logistic regression on the raw pixels.

Rows (labels_per_class, method, seed, accuracy, ...) go to bench/results/learning_curve.json after every
run, so an interrupted run keeps what it measured. Runs with fewer labels come first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "learning_curve.json"
METHODS = ("svc_raw_pixels", "logreg_raw_pixels", "frozen_features_logreg", "tlserve")
IMAGE_SIZE = 112


def choose(pool: np.ndarray, labels: np.ndarray, k: int | None, seed: int) -> np.ndarray:
    """k pool indices per class (all of the pool for None), drawn with ``seed``."""
    if k is None:
        return np.sort(pool)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(pool[labels[pool] == c], k, replace=False)
                                   for c in np.unique(labels)]))


def frozen_features(images: list[bytes]) -> np.ndarray:
    """Pooled features of the frozen ImageNet MobileNetV2, through tlserve's own preprocessing."""
    import keras

    from training.backbones.normalisation import Normalise
    from training.backbones.registry import get
    from training.train import pixels_dataset

    backbone = get("mobilenet_v2")
    base = backbone.features(IMAGE_SIZE, None)
    x = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8")
    y = keras.layers.GlobalAveragePooling2D()(base(Normalise.of(backbone.normalisation)(x), training=False))
    model = keras.Model(x, y)
    return model.predict(pixels_dataset(images, IMAGE_SIZE, "stretch").batch(64), verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", nargs="+", default=["5", "10", "20", "50", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    from training import data as datasets
    from training.train import TrainConfig, train

    digits = load_digits()
    data = datasets.load_images("builtin:digits")
    assert np.array_equal(data.labels, digits.target)
    test = datasets.split_indices(data.labels, test_fraction=0.25, val_fraction=0, seed=0).test
    pool = np.setdiff1d(np.arange(len(data.labels)), test)
    features = frozen_features(data.images) if "frozen_features_logreg" in args.methods else None

    rows: list[dict] = []
    if args.out.exists():  # resume: keep what an earlier run measured
        rows = [r for r in json.loads(args.out.read_text())["rows"]]
    done = {(r["labels_per_class"], r["method"], r["seed"]) for r in rows}

    def record(row: dict) -> None:
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "test_images": int(len(test)), "pool_images": int(len(pool)), "image_size": IMAGE_SIZE,
            "rows": rows}, indent=1) + "\n")
        print(f"{row['labels_per_class']:>4} {row['method']:<24} seed {row['seed']}  accuracy {row['accuracy']:.4f}"
              f"  ({row['train_images']} images, {row['seconds']:.0f} s)", flush=True)

    for k_text in args.per_class:
        k = None if k_text == "all" else int(k_text)
        for seed in args.seeds:
            chosen = choose(pool, data.labels, k, seed)
            y_train, y_test = data.labels[chosen], data.labels[test]
            for method in args.methods:
                key = (k_text, method, seed)
                if key in done or (k is None and method != "tlserve" and seed != args.seeds[0]):
                    continue  # the classical methods are deterministic on the whole pool: one seed is enough
                started = time.monotonic()
                extra: dict = {}
                if method == "svc_raw_pixels":
                    predicted = SVC(gamma=0.001).fit(digits.data[chosen], y_train).predict(digits.data[test])
                elif method == "logreg_raw_pixels":
                    predicted = LogisticRegression(max_iter=5000).fit(digits.data[chosen], y_train).predict(
                        digits.data[test])
                elif method == "frozen_features_logreg":
                    predicted = LogisticRegression(max_iter=5000).fit(features[chosen], y_train).predict(
                        features[test])
                else:
                    split = datasets.Split(train=chosen, val=np.empty(0, dtype=chosen.dtype), test=test,
                                           test_fraction=0.25, val_fraction=0.0, seed=0)
                    cfg = TrainConfig(data="builtin:digits", name="digits", seed=seed, val_fraction=0.0, verbose=0)
                    trained = train(cfg, data=data, split=split)
                    predicted = trained.test_scores.argmax(axis=1)
                    extra["kept_phase"] = trained.info["selected"]["phase"]
                record({**extra, "labels_per_class": k_text, "method": method, "seed": seed,
                        "accuracy": float(np.mean(predicted == y_test)), "train_images": int(len(chosen)),
                        "test_images": int(len(test)), "seconds": round(time.monotonic() - started, 1)})


if __name__ == "__main__":
    main()
