"""Does a digits model's Grad-CAM look at the ink? The issue's property, measured on an exported model.

    .venv/bin/python bench/gradcam_digits.py models/digits/1

Runs the export's ``explain`` signature (top class) on the test split of builtin:digits (the default split: the
one `tlserve train` uses) and prints, as JSON: the fraction of test digits whose heatmap peaks inside the
bounding box of the digit's ink (the non-zero pixels of the 8 x 8 original, scaled to the input size), the
fraction with more heat inside that box than outside, the mean share of heat inside it, and the mean share of
the image the box covers (what a uniform heatmap would score). tests/training/test_trust_digits.py uses the
same functions.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image


def ink_box(png: bytes, size: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, of the non-zero pixels of a digit image, scaled to ``size``."""
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    rows, cols = np.flatnonzero(gray.max(axis=1) > 0), np.flatnonzero(gray.max(axis=0) > 0)
    scale_r, scale_c = size / gray.shape[0], size / gray.shape[1]
    return (int(rows[0] * scale_r), int((rows[-1] + 1) * scale_r), int(cols[0] * scale_c),
            int((cols[-1] + 1) * scale_c))


def peak(heatmap: np.ndarray) -> tuple[float, float]:
    """Where the heatmap peaks: the centre of the pixels at its maximum (bilinear upsampling of a coarse map makes
    flat tops at the borders, where argmax alone would always answer the plateau's first corner)."""
    rows, cols = np.nonzero(heatmap >= heatmap.max() - 1e-6)
    return float(rows.mean()), float(cols.mean())


def properties(heatmaps: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> dict:
    """Fraction of images whose peak lies in the ink box, of those with more heat inside the box than outside,
    and the mean share of heat and of area inside the box."""
    peak_in, more_inside, heat_share, area_share = [], [], [], []
    for heatmap, (top, bottom, left, right) in zip(heatmaps, boxes, strict=True):
        inside = np.zeros(heatmap.shape, bool)
        inside[top:bottom, left:right] = True
        r, c = peak(heatmap)
        peak_in.append(top <= r < bottom and left <= c < right)
        total = heatmap.sum()
        more_inside.append(heatmap[inside].sum() > heatmap[~inside].sum())
        heat_share.append(heatmap[inside].sum() / total if total else 0.0)
        area_share.append(inside.mean())
    return {"peak_inside": float(np.mean(peak_in)), "more_mass_inside": float(np.mean(more_inside)),
            "mean_mass_inside": float(np.mean(heat_share)), "mean_box_area": float(np.mean(area_share)),
            "images": len(boxes)}


def heatmaps_of(explain, images: list[bytes], batch: int = 64) -> np.ndarray:
    """Top-class heatmaps from an ``explain`` signature."""
    import tensorflow as tf

    from tlserve import contract

    return np.concatenate([explain(**{
        contract.IMAGES_INPUT: tf.constant(images[i:i + batch]),
        contract.CLASS_INDEX_INPUT: tf.constant([contract.EXPLAIN_TOP_CLASS] * len(images[i:i + batch]), tf.int32),
    })[contract.HEATMAP_OUTPUT].numpy() for i in range(0, len(images), batch)])


def main() -> None:
    import tensorflow as tf

    from tlserve import contract
    from training import data as datasets

    version_dir = Path(sys.argv[1])
    meta = json.loads((version_dir / contract.METADATA_FILE).read_text())
    split = meta["split"]
    digits = datasets.load_images("builtin:digits")
    test = datasets.split_indices(digits.labels, test_fraction=split["test_fraction"],
                                  val_fraction=split["val_fraction"], seed=split["seed"]).test
    images = [digits.images[i] for i in test]
    explain = tf.saved_model.load(str(version_dir)).signatures[contract.EXPLAIN_SIGNATURE]
    size = meta["image_size"]
    print(json.dumps({"model": str(version_dir), "image_size": size,
                      **properties(heatmaps_of(explain, images), [ink_box(png, size) for png in images])}))


if __name__ == "__main__":
    main()
