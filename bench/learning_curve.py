"""Few labels: test accuracy on digits against labelled images per class (a benchmark, not a test).

    nice .venv/bin/python bench/learning_curve.py [--per-class 5 10 20 50 all] [--seeds 0 1 2]
    .venv/bin/python bench/learning_curve.py --summary docs/learning_curve.png   # table (markdown) and plot

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


LABELS = {"tlserve": "tlserve (MobileNetV2 fine-tuned)", "svc_raw_pixels": "SVC, raw pixels",
          "logreg_raw_pixels": "logistic regression, raw pixels",
          "frozen_features_logreg": "logistic regression, frozen MobileNetV2 features"}


def summarise(rows: list[dict]) -> tuple[list[str], dict[str, dict[str, tuple[float, float, int]]]]:
    """Labels-per-class values in order, and {method: {k: (mean, std, seeds)}} of the test accuracy."""
    order = sorted({r["labels_per_class"] for r in rows}, key=lambda k: (k == "all", int(k) if k != "all" else 0))
    table: dict[str, dict[str, tuple[float, float, int]]] = {}
    for method in ("tlserve", "svc_raw_pixels", "logreg_raw_pixels", "frozen_features_logreg"):
        for k in order:
            values = [r["accuracy"] for r in rows if r["method"] == method and r["labels_per_class"] == k]
            if values:
                table.setdefault(method, {})[k] = (float(np.mean(values)), float(np.std(values)), len(values))
    return order, table


def markdown(order, table) -> str:
    lines = ["| labels per class | " + " | ".join(LABELS[m] for m in table) + " |",
             "|---|" + "---|" * len(table)]
    for k in order:
        cells = []
        for m in table:
            mean, std, n = table[m].get(k, (float("nan"), 0.0, 0))
            cells.append(f"{mean:.3f} ± {std:.3f} ({n})" if n > 1 else f"{mean:.3f} ({n})" if n else "")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(order, table, pool: int, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x_of = {k: (pool / 10 if k == "all" else int(k)) for k in order}
    for m, points in table.items():
        ks = [k for k in order if k in points]
        ax.errorbar([x_of[k] for k in ks], [points[k][0] for k in ks], yerr=[points[k][1] for k in ks],
                    marker="o", capsize=3, label=LABELS[m], linewidth=2.5 if m == "tlserve" else 1.2)
    ax.set_xscale("log")
    ax.set_xticks([x_of[k] for k in order], [k if k != "all" else f"all\n({pool} images)" for k in order])
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class (digits, 10 classes)")
    ax.set_ylabel("test accuracy (450 images)")
    ax.set_title("Few labels: mean over seeds, error bars one standard deviation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", nargs="+", default=["5", "10", "20", "50", "all"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--summary", type=Path, metavar="PNG",
                        help="print the results in --out as a markdown table, plot them into PNG, and stop")
    args = parser.parse_args()
    if args.summary:
        results = json.loads(args.out.read_text())
        order, table = summarise(results["rows"])
        print(markdown(order, table))
        plot(order, table, results["pool_images"], args.summary)
        return

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
