"""How well each open-set score tells unseen digits from known ones (a benchmark, not a test; minutes).

    nice .venv/bin/python bench/open_set.py [--image-size 112] [--head-epochs 8] [--fine-tune-epochs 30]

Trains on builtin:digits restricted to the digits 0-7 with tlserve's default training settings and split rules
(stratified: test 25%, validation 15% of the rest, split seed 0, all on the known digits); the 8s and 9s are never
seen in training, calibration or threshold fitting. For each score (``training.open_set.METHODS``) it fits what
the export fits (temperature and threshold on the validation split at a 1% false-rejection target; the Gaussian
on the training split) and measures, on the known test split against every 8 and 9: AUROC, the false-positive rate
at 95% true-positive rate (unseen accepted when 95% of known test images are accepted), and the rejection rates at
the fitted threshold. Then it exports the best score by AUROC, runs the exported ``serving_default`` on the same
images, and measures the rejection rates again from the graph's ``unknown_score`` and the metadata's threshold.
Writes bench/results/open_set.json and prints a Markdown table (docs/training.md carries it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "open_set.json"
KNOWN = [str(d) for d in range(8)]
LABELS = {"msp": "max calibrated softmax (Hendrycks & Gimpel)", "energy": "energy (-logsumexp of the logits)",
          "mahalanobis": "Mahalanobis (pooled features, shared covariance)"}


def known_and_unseen():
    from training import data as datasets

    digits = datasets.load_images("builtin:digits")
    keep = [i for i, label in enumerate(digits.labels) if digits.classes[label] in KNOWN]
    unseen = [digits.images[i] for i, label in enumerate(digits.labels) if digits.classes[label] not in KNOWN]
    known = datasets.LabelledImages(classes=KNOWN, images=[digits.images[i] for i in keep],
                                    labels=np.array([int(digits.classes[digits.labels[i]]) for i in keep]),
                                    sources=[digits.sources[i] for i in keep], skipped=[])
    return known, unseen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--head-epochs", type=int, default=8)
    parser.add_argument("--fine-tune-epochs", type=int, default=30)
    parser.add_argument("--false-rejection", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import tensorflow as tf

    from tlserve import contract
    from training import open_set
    from training.evaluate import (
        export_trained,
        fit_trust,
        images_logits_and_features,
        logits_and_features,
    )
    from training.train import TrainConfig, train

    started = time.monotonic()
    known, unseen = known_and_unseen()
    cfg = TrainConfig(data="builtin:digits (0-7)", name="digits07", image_size=args.image_size,
                      head_epochs=args.head_epochs, fine_tune_epochs=args.fine_tune_epochs, verbose=0)
    trained = train(cfg, data=known)
    test = trained.split.test
    accuracy = float(np.mean(trained.test_scores.argmax(1) == known.labels[test]))
    print(f"trained on 0-7 in {trained.seconds:.0f} s: test accuracy {accuracy:.4f} ({len(test)} images); "
          f"{len(unseen)} unseen 8s and 9s", flush=True)
    test_logits, test_features = logits_and_features(trained, test)
    unseen_logits, unseen_features = images_logits_and_features(trained, unseen)

    rows = {}
    for method in open_set.METHODS:
        trust = fit_trust(trained, unknown_method=method, false_rejection=args.false_rejection)
        unknown = trust.unknown
        known_scores = unknown.score(test_logits, test_features)
        unseen_scores = unknown.score(unseen_logits, unseen_features)
        rows[method] = {
            "name": LABELS[method],
            "auroc": open_set.auroc(known_scores, unseen_scores),
            "fpr_at_95_tpr": open_set.fpr_at_95_tpr(known_scores, unseen_scores),
            "threshold": unknown.threshold,
            "val_false_rejection": unknown.measured["val_false_rejection"],
            "known_test_rejection": open_set.rejection_rate(known_scores, unknown.threshold),
            "unseen_rejection": open_set.rejection_rate(unseen_scores, unknown.threshold),
        }
        print(method, json.dumps(rows[method]), flush=True)
    calibration = trust.calibration.to_dict()
    best = max(rows, key=lambda m: rows[m]["auroc"])

    with tempfile.TemporaryDirectory() as tmp:
        path, _ = export_trained(trained, tmp, unknown_method=best, false_rejection=args.false_rejection)
        meta = json.loads((path / contract.METADATA_FILE).read_text())
        serve = tf.saved_model.load(str(path)).signatures[contract.DEFAULT_SIGNATURE]

        def graph_scores(images):
            return np.concatenate([serve(**{contract.IMAGES_INPUT: tf.constant(images[i:i + 64])})[
                contract.UNKNOWN_SCORE_OUTPUT].numpy() for i in range(0, len(images), 64)])

        threshold = meta[contract.METADATA_UNKNOWN][contract.UNKNOWN_THRESHOLD]
        known_graph = graph_scores([known.images[i] for i in test])
        unseen_graph = graph_scores(unseen)
        exported = {
            "score": meta[contract.METADATA_UNKNOWN][contract.UNKNOWN_METHOD], "threshold": threshold,
            "false_rejection_target": meta[contract.METADATA_UNKNOWN][contract.UNKNOWN_FALSE_REJECTION_TARGET],
            "known_test_rejection": open_set.rejection_rate(known_graph, threshold),
            "unseen_rejection": open_set.rejection_rate(unseen_graph, threshold),
            "auroc": open_set.auroc(known_graph, unseen_graph),
            "fpr_at_95_tpr": open_set.fpr_at_95_tpr(known_graph, unseen_graph),
        }
    result = {
        "command": "nice .venv/bin/python bench/open_set.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "training": {"known_classes": KNOWN, "unseen_classes": ["8", "9"], "image_size": args.image_size,
                     "head_epochs": args.head_epochs, "fine_tune_epochs": args.fine_tune_epochs,
                     "split": trained.split.to_dict(), "known_test_accuracy": accuracy,
                     "unseen_images": len(unseen), "seconds": round(trained.seconds, 1)},
        "calibration": calibration,
        "false_rejection_target": args.false_rejection,
        "methods": rows,
        "best": best,
        "exported": exported,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """The Markdown table of docs/training.md."""
    target = result["false_rejection_target"]
    lines = ["| score | AUROC | FPR at 95% TPR | known test rejected | unseen 8/9 rejected |",
             "|---|---|---|---|---|"]
    for method, row in result["methods"].items():
        mark = " (exported)" if method == result["best"] else ""
        lines.append(f"| {row['name']}{mark} | {row['auroc']:.4f} | {row['fpr_at_95_tpr']:.4f} | "
                     f"{row['known_test_rejection']:.4f} | {row['unseen_rejection']:.4f} |")
    e = result["exported"]
    note = (f"Rejection rates at each score's threshold, fitted on the validation split for a "
            f"{target:.0%} false-rejection target. Measured again through the exported graph "
            f"(`{e['score']}`, threshold {e['threshold']:.6g}): known test images rejected "
            f"{e['known_test_rejection']:.4f}, unseen rejected {e['unseen_rejection']:.4f}, AUROC {e['auroc']:.4f}.")
    lines += ["", note]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
