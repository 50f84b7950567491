"""A version's warm-up at load (``VersionLoader``): the export's records and the ``pixels`` warm-up run at once,
on a real tiny export; a bad record still refuses the version."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from service.codec.images import ImageLimits
from service.core.errors import InvalidInput
from service.runtime.savedmodel import LoadedModel
from service.serving.loader import VersionLoader
from service.serving.version import BatchingSettings
from tests.conftest import encode
from tlserve.contract import PIXELS_INPUT, PIXELS_SIGNATURE, WARMUP_FILE
from training.export import write_warmup

LOADER = VersionLoader(lambda name: BatchingSettings(), ImageLimits(), device=lambda: None)
SMALL_PNG = encode(np.full((32, 32, 3), 128, np.uint8))


def test_the_records_and_the_pixels_warm_up_run_at_once(tiny_export, monkeypatch):
    """Two functions of one SavedModel, so they can share the cores: one after the other they took 1.9 s at 224 px
    (records 1.2, pixels 0.7). Each warm-up thread's first call waits here for the other's: run one after the
    other, the first waits alone and the load fails."""
    path, _ = tiny_export
    meet = threading.Barrier(2, timeout=30)
    seen: set[int] = set()
    run = LoadedModel.run

    def meeting_run(self, signature, inputs):
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            meet.wait()
        return run(self, signature, inputs)

    monkeypatch.setattr(LoadedModel, "run", meeting_run)
    served = LOADER("shapes", 1, path)
    assert served.images and len(seen) == 2


def test_a_bad_warm_up_record_still_refuses_the_version(tiny_export, tmp_path):
    path, _ = tiny_export
    copy = tmp_path / "1"
    shutil.copytree(path, copy)
    write_warmup(copy / WARMUP_FILE, "shapes", b"not an image")
    with pytest.raises(InvalidInput, match="warm-up record 1"):
        LOADER("shapes", 1, copy)


def _pixel_batches(monkeypatch) -> list[int]:
    """The batch sizes ``pixels`` is run at, in order, while the test loads a version."""
    sizes: list[int] = []
    run = LoadedModel.run

    def recording_run(self, signature, inputs):
        if signature == PIXELS_SIGNATURE:
            sizes.append(len(inputs[PIXELS_INPUT]))
        return run(self, signature, inputs)

    monkeypatch.setattr(LoadedModel, "run", recording_run)
    return sizes


def test_pixels_skips_the_full_batch_a_warm_up_record_already_ran(tiny_export, monkeypatch):
    """The first full batch of a process is the slow one, for every function (measured at 224 px: ``pixels`` at 32
    after the records' ``serving_default`` at 32 ran in 226 ms, its steady time being 212-246 ms); its first call
    at any size is slow too. So ``pixels`` runs at 1 (and at the sizes batches are padded to), and at the full
    batch only when no record ran one: the tiny export's records run 1, 8 and 32 images."""
    path, _ = tiny_export
    sizes = _pixel_batches(monkeypatch)
    LOADER("shapes", 1, path)
    assert sizes == [1]


def test_pixels_runs_the_full_batch_when_no_record_did(tiny_export, tmp_path, monkeypatch):
    path, _ = tiny_export
    copy = tmp_path / "1"
    shutil.copytree(path, copy)
    write_warmup(copy / WARMUP_FILE, "shapes", SMALL_PNG, batch_sizes=(1, 4))
    sizes = _pixel_batches(monkeypatch)
    LOADER("shapes", 1, copy)
    assert sizes == [1, 32]
    (copy / WARMUP_FILE).unlink()  # no records at all
    sizes.clear()
    LOADER("shapes", 1, copy)
    assert sizes == [1, 32]
    sizes.clear()
    padded = VersionLoader(lambda name: BatchingSettings(max_batch_size=16, allowed_batch_sizes=(4, 16)),
                           ImageLimits(), device=lambda: None)
    padded("shapes", 1, copy)
    assert sizes == [1, 4, 16]
