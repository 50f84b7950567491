"""A version's warm-up at load (``VersionLoader``): the export's records and the ``pixels`` warm-up run at once,
on a real tiny export; a bad record still refuses the version."""

from __future__ import annotations

import shutil
import threading

import pytest

from service.codec.images import ImageLimits
from service.core.errors import InvalidInput
from service.runtime.savedmodel import LoadedModel
from service.serving.loader import VersionLoader
from service.serving.version import BatchingSettings
from tlserve.contract import WARMUP_FILE
from training.export import write_warmup

LOADER = VersionLoader(lambda name: BatchingSettings(), ImageLimits(), device=lambda: None)


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
