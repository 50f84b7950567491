"""Loading a user's labelled images, checking them, and splitting them reproducibly.

Every image is decoded once, here, by the very decoder the exported model uses
(:func:`training.preprocessing.decode`), so a file that would break training or serving is found up front and
left out with a reason instead of failing half-way through an epoch. Files are checked one at a time and
not kept in memory: a folder or CSV gives :class:`ImageFiles`, which reads a file's bytes when asked for them
(the training pipeline reads them inside tf.data), so the data may be larger than memory. Files must not
change between the check and the end of training.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from training.preprocessing import IMAGE_SUFFIXES, decode

ACCEPTED_FORMS = "a folder of class sub-folders, a .csv of path,label, builtin:digits or builtin:shapes"
_MAX_LISTED = 10


class DataError(ValueError):
    """Bad training data; message says what is wrong and how to fix it."""


class ImageFiles(Sequence):
    """Encoded images as a sequence of bytes read from their files on access (nothing is held in memory).

    ``files[i]`` reads one file, ``files[a:b]`` a list of them; :meth:`take` gives the files at some indices."""

    def __init__(self, paths: list[str], digests: list[str] | None = None):
        self.paths = list(paths)
        self.digests = list(digests) if digests is not None else None  # SHA-256 hex of each, when known

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [Path(p).read_bytes() for p in self.paths[index]]
        return Path(self.paths[index]).read_bytes()

    def take(self, indices) -> ImageFiles:
        digests = [self.digests[int(i)] for i in indices] if self.digests is not None else None
        return ImageFiles([self.paths[int(i)] for i in indices], digests)


def take(images: Sequence[bytes], indices) -> Sequence[bytes]:
    """``images`` at ``indices``: an :class:`ImageFiles` stays one (no file is read), a list is a list."""
    if isinstance(images, ImageFiles):
        return images.take(indices)
    return [images[int(i)] for i in indices]


@dataclass
class LabelledImages:
    """Images with integer labels; ``labels[i]`` indexes ``classes`` and belongs to ``images[i]``.

    ``images`` is a list of bytes for the built-in sets and an :class:`ImageFiles` for a folder or CSV."""

    classes: list[str]
    images: Sequence[bytes]
    labels: np.ndarray
    sources: list[str]
    skipped: list[tuple[str, str]]


@dataclass
class Split:
    """Index arrays into a :class:`LabelledImages`, in the order ``train_test_split`` returned them."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_fraction: float
    val_fraction: float
    seed: int

    def to_dict(self) -> dict:
        """JSON-ready summary for reports and model metadata."""
        return {
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "test_fraction": self.test_fraction,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }


def load_images(spec: str, *, min_per_class: int = 5) -> LabelledImages:
    """Load labelled images from ``spec``: a folder of class sub-folders, a ``.csv`` of ``path,label`` rows,
    ``builtin:digits`` or ``builtin:shapes``.

    Images the decoder rejects are left out and listed in ``skipped``. Raises :class:`DataError` for an
    unknown spec, missing files or malformed CSV rows, and when fewer than two classes or fewer than
    ``min_per_class`` usable images in some class remain.
    """
    return _labelled(*_source(spec), min_per_class=min_per_class)


def load_sources(specs: str | Sequence[str], *, min_per_class: int = 5) -> LabelledImages:
    """Several sources (each one of :func:`load_images`' forms) combined into one set: classes of the same name
    are one class, whichever source they come from; the classes are sorted by name.

    The class checks apply to the combination, not to each source (a folder of captures may hold a single
    class). A source that cannot be read is a :class:`DataError` naming it. The images stay
    :class:`ImageFiles` when every source is a folder or CSV; a built-in set in the mix makes them one list
    of bytes (the files are read into memory: the built-in sets are small, the files should be too)."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if len(specs) == 1:
        return load_images(specs[0], min_per_class=min_per_class)
    if not specs:
        raise DataError(f"no training data given: use {ACCEPTED_FORMS}")
    names: set[str] = set()
    usable: list[tuple[str, str, Any]] = []
    skipped: list[tuple[str, str]] = []
    all_lazy = True
    parts = []
    for spec in specs:
        try:
            part = _source(spec)
        except DataError as err:
            raise DataError(f"data source {spec!r}: {err}") from err
        parts.append(part)
        all_lazy &= part[3]
    seen: set[str] = set()
    for class_names, items, left_out, lazy in parts:
        names.update(class_names)
        skipped += left_out
        for source, label, image in items:
            if source in seen:  # a file given twice (two CSVs listing it) would fall in train and test
                skipped.append((source, "listed by more than one data source; used once"))
                continue
            seen.add(source)
            # A file's bytes are read again only when a built-in set is in the mix: then every image is bytes.
            usable.append((source, label, image if lazy == all_lazy else Path(source).read_bytes()))
    return _labelled(sorted(names), usable, skipped, all_lazy, min_per_class=min_per_class)


def _source(spec: str) -> tuple[list[str], list[tuple[str, str, Any]], list[tuple[str, str]], bool]:
    """One source's class names, its usable (source, label, image bytes or, when lazy, their SHA-256), the
    (source, reason) of what was left out, and whether it is lazy (files read again when needed)."""
    if spec == "builtin:digits":
        return _decoded(*_digits())
    if spec == "builtin:shapes":
        return _decoded(*_shapes())
    if not spec.strip() or spec.startswith("builtin:"):
        raise DataError(f"unknown data {spec!r}: use {ACCEPTED_FORMS}")
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec} does not exist: use {ACCEPTED_FORMS}")
    not_images: list[tuple[str, str]] = []
    if path.is_dir():
        class_names, entries, not_images = _folder_entries(path)
    elif path.suffix.lower() == ".csv":
        class_names, entries = _csv_entries(path)
    else:
        raise DataError(f"cannot read training data from {spec}: use {ACCEPTED_FORMS}")
    if not entries:
        raise DataError(f"no images found in {spec}: expected {ACCEPTED_FORMS}, "
                        f"with images ending in {', '.join(IMAGE_SUFFIXES)}")
    return _decoded(class_names, _read_files(entries), not_images, lazy=True)


def split_indices(labels: np.ndarray, *, test_fraction: float = 0.25, val_fraction: float = 0.15,
                  seed: int = 0) -> Split:
    """Stratified train/val/test split of ``range(len(labels))``.

    The test set comes first, via ``train_test_split(np.arange(n), test_size=test_fraction, stratify=labels,
    random_state=seed)``, so for ``builtin:digits`` it is the usual scikit-learn baseline split; validation is
    then ``val_fraction`` of the rest, stratified, same seed (``val_fraction=0`` gives an empty ``val``).
    Indices keep the order ``train_test_split`` returns (shuffled, not sorted).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), not {test_fraction}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be at least 0 and below 1, not {val_fraction}")
    labels = np.asarray(labels)
    rest, test = _stratified(np.arange(len(labels)), labels, test_fraction, seed, "test")
    if val_fraction:
        train, val = _stratified(rest, labels[rest], val_fraction, seed, "validation")
    else:
        train, val = rest, np.empty(0, dtype=rest.dtype)
    return Split(train, val, test, test_fraction, val_fraction, seed)


def fingerprint(data: LabelledImages) -> str:
    """SHA-256 hex of the (image hash, class name) pairs, sorted, so file order and paths do not matter."""
    images = data.images
    digests = (images.digests if isinstance(images, ImageFiles) and images.digests is not None
               else (hashlib.sha256(image).hexdigest() for image in images))  # files: hashed when checked
    pairs = sorted((digest, data.classes[label]) for digest, label in zip(digests, data.labels, strict=True))
    # JSON keeps the encoding unambiguous whatever characters the class names contain.
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def _stratified(indices, labels, fraction, seed, name):
    try:
        return train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as err:
        raise DataError(f"cannot split {len(indices)} images into a stratified {name} set holding every "
                        f"class ({err}); add images to the smallest classes or change the fractions") from err


def _folder_entries(root: Path) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Class names, (path, class) pairs from ``root/<class>/<image>`` in sorted order, and the (path, reason)
    of files left out for not being images, so that the report can say what was not used."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # Hidden files include macOS "._x.jpg" metadata, which has an image suffix but is no image.
    files = [(f, d.name) for d in class_dirs for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")]
    entries = [(str(f), label) for f, label in files if f.suffix.lower() in IMAGE_SUFFIXES]
    not_images = [(str(f), f"not an image file (suffix {f.suffix or 'none'!r})")
                  for f, _ in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    return [d.name for d in class_dirs], entries, not_images


def _csv_entries(csv_path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Class names and (path, class) pairs from ``path,label`` rows; every listed file must exist."""
    entries = []
    # utf-8-sig: spreadsheets often save CSVs with a byte-order mark that would otherwise spoil the header.
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            cells = [c.strip() for c in row]
            if not any(cells) or (reader.line_num == 1 and cells == ["path", "label"]):
                continue
            if len(cells) != 2 or not cells[0] or not cells[1]:
                raise DataError(f"{csv_path} line {reader.line_num}: expected 'path,label' with both filled "
                                f"in, got {row!r}")
            entries.append((str(csv_path.parent / cells[0]), cells[1]))
    missing = [p for p, _ in entries if not Path(p).is_file()]
    if missing:
        listed = "\n  ".join(missing[:_MAX_LISTED])
        more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise DataError(f"{len(missing)} file(s) listed in {csv_path} do not exist (relative paths are relative "
                        f"to the CSV's folder):\n  {listed}{more}")
    return sorted({label for _, label in entries}), entries


def _read_files(entries):
    """(path, label, bytes) of each file, one at a time; an unreadable file gives ``(path, label, OSError)``."""
    for path, label in entries:
        try:
            yield path, label, Path(path).read_bytes()
        except OSError as err:
            yield path, label, err


def _decoded(class_names, items, skipped, *, lazy=False):
    """Decode every image once and drop the ones the model's decoder rejects: ``(class_names, usable, skipped,
    lazy)`` for :func:`_labelled`.

    ``items`` may be a generator: one image's bytes at a time are held. ``lazy``: keep the paths and the
    bytes' SHA-256, not the bytes (the images are files that :class:`ImageFiles` reads again when needed)."""
    skipped = list(skipped)
    usable: list[tuple[str, str, Any]] = []  # (source, label, image bytes, or their sha256 when lazy)
    for source, label, image in items:
        reason = (f"cannot read file: {image.strerror or image}" if isinstance(image, OSError)
                  else _decode_error(image))
        if reason:
            skipped.append((source, reason))
        else:
            usable.append((source, label, hashlib.sha256(image).hexdigest() if lazy else image))
    return list(class_names), usable, skipped, lazy


def _labelled(class_names, usable, skipped, lazy, *, min_per_class):
    """Enforce the class checks on the decoded images and label them by their class's index."""
    if len(class_names) < 2:
        found = f"only the class {class_names[0]!r}" if class_names else "no classes"
        raise DataError(f"found {found}; a classifier needs at least two classes of images")
    counts = {name: 0 for name in class_names}
    for _, label, _ in usable:
        counts[label] += 1
    too_few = [f"{name!r} has {n}" for name, n in counts.items() if n < min_per_class]
    if too_few:
        note = f" ({len(skipped)} unreadable image(s) were skipped)" if skipped else ""
        raise DataError(f"too few usable images: {', '.join(too_few)}; every class needs at least "
                        f"{min_per_class}{note}. Add images to those classes or remove them")
    index = {name: i for i, name in enumerate(class_names)}
    sources = [source for source, _, _ in usable]
    return LabelledImages(
        classes=list(class_names),
        images=ImageFiles(sources, [d for _, _, d in usable]) if lazy else [image for _, _, image in usable],
        labels=np.array([index[label] for _, label, _ in usable], dtype=np.int64),
        sources=sources,
        skipped=skipped,
    )


def _decode_error(image: bytes) -> str | None:
    try:
        decode(tf.constant(image))
    except tf.errors.OpError as err:
        # TF wraps the useful sentence in graph-node and op names; keep only the sentence.
        return re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", err.message, flags=re.S) or "cannot decode image"
    return None


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _digits():
    """scikit-learn's 8x8 digits as gray RGB PNGs, in the dataset's order (its baseline split depends on it)."""
    digits = load_digits()
    gray = np.round(digits.images * 255 / 16).astype(np.uint8)
    items = [(f"builtin:digits#{i}", str(target), _png(np.repeat(g[:, :, None], 3, axis=2)))
             for i, (g, target) in enumerate(zip(gray, digits.target, strict=True))]
    return [str(d) for d in range(10)], items, []


def _shapes(per_class: int = 30, size: int = 32):
    """Seeded coloured circles, squares and triangles on contrasting backgrounds."""
    rng = np.random.default_rng(0)
    classes = ["circle", "square", "triangle"]
    items: list[tuple[str, str, bytes]] = []
    for name in classes:
        for _ in range(per_class):
            background = rng.integers(0, 256, 3)
            colour = rng.integers(0, 256, 3)
            while np.abs(colour - background).sum() < 200:  # keep the shape visible against the background
                colour = rng.integers(0, 256, 3)
            r = int(rng.integers(6, 13))
            x, y = (int(v) for v in rng.integers(r, size - r, 2))
            image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
            draw = ImageDraw.Draw(image)
            box, fill = [x - r, y - r, x + r, y + r], tuple(int(c) for c in colour)
            if name == "circle":
                draw.ellipse(box, fill=fill)
            elif name == "square":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
            items.append((f"builtin:shapes#{len(items)}", name, _png(np.asarray(image))))
    return classes, items, []
