"""Data larger than memory: files are listed and checked one at a time, and training reads them inside tf.data,
caches the decoded pixels on disk (``--cache-dir``) and shuffles through a bounded buffer.

The end-to-end test runs ``tlserve train`` in a process of its own on a generated folder whose decoded pixels
(at the training size) are 409 MB, and measures that process's peak RSS (``ru_maxrss``). Its cap is the
TensorFlow baseline (the peak of the same command on a tenth of the images) plus half the pixels: caching them
in memory, as before, cannot stay under it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import data as datasets
from training.train import (SHUFFLE_BUFFER_BYTES, cache_on_disk, pixel_bytes, pixels_dataset, shuffle_buffer)

REPO = Path(__file__).resolve().parents[2]
SIZE, PER_CLASS, BATCH = 224, 1500, 8


def _write_folder(root: Path, per_class: int, size: int) -> Path:
    """Two classes of smooth JPEGs (a few KB each encoded, size*size*3 bytes each decoded)."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    rng = np.random.default_rng(0)
    for c, name in enumerate(("warm", "cool")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a, b = rng.uniform(0.3, 1, 2)
            base = np.stack([np.outer(ramp * a, ramp * b)] * 3, axis=-1)
            tint = np.array([1.0, 0.5, 0.2] if c == 0 else [0.2, 0.5, 1.0], np.float32)
            pixels = (255 * np.clip(base * tint + rng.uniform(0, 0.2), 0, 1)).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=85)
    return root


MEASURED = textwrap.dedent("""
    import json, resource, sys
    from tlserve.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


def _train_measured(folder: Path, out: Path, *extra: str) -> dict:
    """``tlserve train`` on ``folder`` in a process of its own: its exit code, stdout and peak RSS in bytes."""
    argv = ["train", "--data", str(folder), "--name", "big", "--out", str(out), "--image-size", str(SIZE),
            "--batch-size", str(BATCH), "--head-epochs", "1", "--fine-tune-epochs", "0", "--test-fraction", "0.05",
            "--val-fraction", "0.05", "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", MEASURED, *argv], env=env, cwd=out.parent,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stdout": proc.stdout}


@pytest.fixture
def big_tmp(tmp_path):
    """tmp_path, emptied afterwards: pytest keeps the last runs' folders, and these hold ~500 MB."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_training_on_pixels_larger_than_the_cap_stays_under_it(big_tmp):
    tmp_path = big_tmp
    # The TensorFlow baseline: the same command on a tenth of the images (TensorFlow, the model, training and
    # export, and 43 MB of pixels). The cap: that plus half the pixels of the large folder.
    small = _train_measured(_write_folder(tmp_path / "small", PER_CLASS // 10, SIZE), tmp_path / "models-small",
                            "--cache-dir", str(tmp_path / "cache-small"))
    folder = _write_folder(tmp_path / "data", PER_CLASS, SIZE)
    cached = pixel_bytes(int(2 * PER_CLASS * 0.95), SIZE)  # training and validation images, decoded
    result = _train_measured(folder, tmp_path / "models", "--cache-dir", str(tmp_path / "cache"))
    cap = small["peak"] + cached // 2
    mb = lambda b: f"{b / 2**20:.0f} MB"  # noqa: E731
    print(f"pixels {mb(cached)}, baseline {mb(small['peak'])}, cap {mb(cap)}, peak {mb(result['peak'])}")
    assert result["peak"] < cap, (f"peak RSS {mb(result['peak'])} over the cap {mb(cap)} (baseline "
                                  f"{mb(small['peak'])} + half the pixels, {mb(cached)})")
    assert "exported" in result["stdout"]
    assert any(p.name.endswith(".index") for p in (tmp_path / "cache").iterdir())  # the pixels went to disk
    meta = json.loads(next((tmp_path / "models" / "big").glob("*/assets.extra/metadata.json")).read_text())
    assert meta["training"]["pixel_cache"] == "disk"


def test_folders_are_checked_without_keeping_their_bytes(tmp_path):
    folder = _write_folder(tmp_path / "data", 6, 32)
    data = datasets.load_images(str(folder))
    assert isinstance(data.images, datasets.ImageFiles) and len(data.images) == 12
    assert data.images[3] == Path(data.sources[3]).read_bytes()  # read from the file when asked
    assert data.images[1:3] == [Path(p).read_bytes() for p in data.sources[1:3]]
    subset = datasets.take(data.images, [5, 0])
    assert isinstance(subset, datasets.ImageFiles) and subset.paths == [data.sources[5], data.sources[0]]
    pixels = np.stack(list(pixels_dataset(subset, 32, "stretch").as_numpy_iterator()))
    assert pixels.shape == (2, 32, 32, 3)
    # the fingerprint of a folder is the same as of the same images held in memory
    in_memory = datasets.LabelledImages(data.classes, list(data.images), data.labels, data.sources, [])
    assert datasets.fingerprint(data) == datasets.fingerprint(in_memory)


def test_where_the_pixels_are_cached_and_how_much_is_shuffled():
    gib = 2**30
    assert not cache_on_disk(1000, 224, None, 24 * gib)  # 150 MB of 24 GiB: memory
    assert cache_on_disk(1000, 224, "/tmp/cache", 24 * gib)  # asked for
    assert cache_on_disk(100_000, 224, None, 24 * gib)  # 15 GB: more than a quarter
    assert shuffle_buffer(1000, 224, False, 32) == 1000  # in memory: everything
    assert shuffle_buffer(100_000, 224, True, 32) == SHUFFLE_BUFFER_BYTES // pixel_bytes(1, 224)
    assert shuffle_buffer(100, 224, True, 32) == 100
    assert shuffle_buffer(10**6, 4096, True, 32) == 32  # at least a batch


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_disk_and_memory_caches_train_alike(tmp_path, cache):
    from training.train import TrainConfig, train

    folder = _write_folder(tmp_path / "data", 10, 32)
    extra = {"cache_dir": str(tmp_path / "cache")} if cache == "disk" else {}
    cfg = TrainConfig(data=str(folder), name="x", image_size=32, head_epochs=2, fine_tune_epochs=0,
                      batch_size=8, verbose=0, **extra)
    first = train(cfg)
    assert first.info["pixel_cache"] == cache
    if cache == "disk":
        files = sorted(p.name for p in (tmp_path / "cache").iterdir())
        assert any(f.endswith(".index") for f in files), files
        second = train(cfg)  # the same images: the cache is reused, not rebuilt
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files
        assert second.histories["phase1"].keys() == first.histories["phase1"].keys()
