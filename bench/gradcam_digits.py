"""Does a digits model's Grad-CAM look at the ink? The issue's property, measured on an exported model.

    .venv/bin/python bench/gradcam_digits.py models/digits/1

Runs the export's ``explain`` signature (top class) on the test split of builtin:digits (the default split: the
one `tlserve train` uses) and prints, as JSON: the fraction of test digits whose heatmap peaks inside the
bounding box of the digit's ink (the non-zero pixels of the 8 x 8 original, scaled to the input size), the
fraction with more heat inside that box than outside, the mean share of heat inside it, and the mean share of
the image the box covers (what a uniform heatmap would score). The box is generous (0.74 of the image) and the
digits are centred, so it prints the same figures for a centred blob that ignores the image (``baseline``), and
two that a blob cannot fake: the share of heat on the digit's own ink pixels, and ``ink_specificity``, that
share minus the share on another test digit's ink (0 for any map that ignores the image).
tests/training/test_trust_digits.py uses the same functions.
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


INK_LEVEL = 64  # of 255: a quarter of full ink (4 of the originals' 16 levels)


def ink_mask(png: bytes, size: int) -> np.ndarray:
    """The digit's ink pixels (at least :data:`INK_LEVEL`), the original scaled to ``size`` by nearest neighbour."""
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    rows = np.arange(size) * gray.shape[0] // size
    cols = np.arange(size) * gray.shape[1] // size
    return gray[rows][:, cols] >= INK_LEVEL


def centred_blob(size: int) -> np.ndarray:
    """A heatmap that ignores the image: a Gaussian at the centre, sigma a quarter of the side."""
    r = np.arange(size) - (size - 1) / 2
    return np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (size / 4) ** 2)).astype(np.float32)


def peak(heatmap: np.ndarray) -> tuple[float, float]:
    """Where the heatmap peaks: the centre of the pixels at its maximum (bilinear upsampling of a coarse map makes
    flat tops at the borders, where argmax alone would always answer the plateau's first corner)."""
    rows, cols = np.nonzero(heatmap >= heatmap.max() - 1e-6)
    return float(rows.mean()), float(cols.mean())


def properties(heatmaps: np.ndarray, boxes: list[tuple[int, int, int, int]], inks: np.ndarray) -> dict:
    """Fraction of images whose peak lies in the ink box, of those with more heat inside the box than outside,
    the mean share of heat and of area inside the box, and the mean share of heat on the image's own ink
    (``inks``: :func:`ink_mask` per image) and on the next image's ink."""
    peak_in, more_inside, heat_share, area_share, own, other = [], [], [], [], [], []
    for heatmap, (top, bottom, left, right), ink, next_ink in zip(heatmaps, boxes, inks, np.roll(inks, 1, axis=0),
                                                                   strict=True):
        inside = np.zeros(heatmap.shape, bool)
        inside[top:bottom, left:right] = True
        r, c = peak(heatmap)
        peak_in.append(top <= r < bottom and left <= c < right)
        total = heatmap.sum()
        more_inside.append(heatmap[inside].sum() > heatmap[~inside].sum())
        heat_share.append(heatmap[inside].sum() / total if total else 0.0)
        area_share.append(inside.mean())
        own.append(heatmap[ink].sum() / total if total else 0.0)
        other.append(heatmap[next_ink].sum() / total if total else 0.0)
    return {"peak_inside": float(np.mean(peak_in)), "more_mass_inside": float(np.mean(more_inside)),
            "mean_mass_inside": float(np.mean(heat_share)), "mean_box_area": float(np.mean(area_share)),
            "heat_on_ink": float(np.mean(own)), "ink_specificity": float(np.mean(own) - np.mean(other)),
            "images": len(boxes)}


def measure(heatmaps: np.ndarray, images: list[bytes], size: int) -> dict:
    """:func:`properties` of ``heatmaps`` of ``images``, and beside them those of :func:`centred_blob`."""
    boxes = [ink_box(png, size) for png in images]
    inks = np.stack([ink_mask(png, size) for png in images])
    return {**properties(heatmaps, boxes, inks),
            "baseline": properties(np.stack([centred_blob(size)] * len(images)), boxes, inks)}


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
    print(json.dumps({"model": str(version_dir), "image_size": size, **measure(heatmaps_of(explain, images), images,
                                                                                size)}))


if __name__ == "__main__":
    main()
