"""ModelRepository's reconciliation on its own (no server): what one model's failure may not do to the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.core.dataplane import AVAILABLE
from service.repository.config import ModelSpec
from service.repository.discovery import LocalFolders, VersionDir
from service.repository.manager import ModelRepository
from tests.conftest import TESTDATA
from tests.service.conftest import copy_version

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"


class Loaded:
    """What the repository keeps of a loaded version; loading here only records the folder."""

    def __init__(self, path: Path):
        self.path, self.signatures = path, {}

    async def drain_and_stop(self) -> None:
        pass


class FlakyMount(LocalFolders):
    """Local folders where one model's files cannot be read (a stale NFS handle, say): that cannot be provoked on
    this machine's file system, so the error is raised here, for that model only."""

    def __init__(self, broken: str):
        self.broken = broken

    def stamp(self, entry: VersionDir) -> tuple:
        if Path(entry.path).parent.name == self.broken:
            raise OSError(116, "Stale file handle")
        return super().stamp(entry)


def test_one_model_whose_files_cannot_be_read_does_not_stop_the_others(tmp_path):
    for name in ("a", "b", "c"):
        copy_version(HALF_PLUS_TWO, tmp_path / name, "1")
    specs = [ModelSpec(name, tmp_path / name) for name in ("a", "b", "c")]
    source = FlakyMount(broken="b")
    repository = ModelRepository(lambda: specs, lambda name, number, path: Loaded(path), poll_interval_s=0,
                                 sources=lambda base: source)

    async def run():
        await repository.sync()
        return {name: [s.state for s in repository.statuses(name)] for name in ("a", "b", "c")}

    states = asyncio.run(run())
    assert states["a"] == [AVAILABLE] and states["c"] == [AVAILABLE], states
    assert repository.ready_model("a") and repository.ready_model("c") and not repository.ready_model("b")
