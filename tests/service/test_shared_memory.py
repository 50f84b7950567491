"""The system shared-memory registry on real POSIX shared-memory objects (files under a tmp root, as /dev/shm holds
them): bounds, objects removed or truncated under the server, hostile keys, the region limit, shutdown."""

from __future__ import annotations

import os

import pytest

from service.core.dataplane import SharedMemoryRef, SharedMemoryRegion
from service.core.errors import InvalidInput, NotFound
from service.shared_memory import SystemSharedMemory


@pytest.fixture
def shm(tmp_path):
    registry = SystemSharedMemory(root=tmp_path, max_regions=3)
    (tmp_path / "obj").write_bytes(bytes(range(64)))
    yield registry
    registry.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_read_and_write_within_the_region(shm, tmp_path):
    shm.register(SharedMemoryRegion("r", "/obj", 16, 32))
    assert shm.read(SharedMemoryRef("r", 4, 8)) == bytes([24, 25, 26, 27])
    shm.write(SharedMemoryRef("r", 4, 0), b"\xff\xfe")  # an output may be shorter than its byte size
    assert (tmp_path / "obj").read_bytes()[16:18] == b"\xff\xfe"
    assert shm.status() == [SharedMemoryRegion("r", "/obj", 16, 32)]
    assert shm.status("r") == [SharedMemoryRegion("r", "/obj", 16, 32)]


@pytest.mark.parametrize("ref, text", [
    (SharedMemoryRef("r", 8, 28), "exceeds the region's 32 bytes"),
    (SharedMemoryRef("r", 33), "exceeds the region's 32 bytes"),
    (SharedMemoryRef("nope", 4), "unknown shared memory region 'nope'"),
])
def test_every_bound_is_a_clear_client_error(shm, ref, text):
    shm.register(SharedMemoryRegion("r", "/obj", 16, 32))
    for call in (lambda: shm.read(ref), lambda: shm.write(ref, b"")):
        with pytest.raises(InvalidInput, match=text):
            call()
    with pytest.raises(InvalidInput, match="the output needs 9 bytes"):
        shm.write(SharedMemoryRef("r", 8), b"x" * 9)


@pytest.mark.parametrize("region, text", [
    (SharedMemoryRegion("r", "/missing", 0, 4), "does not exist"),
    (SharedMemoryRegion("r", "/obj", 60, 8), "exceeds the 64 bytes"),
    (SharedMemoryRegion("r", "/../obj", 0, 4), "must be '/name'"),
    (SharedMemoryRegion("r", "/a/obj", 0, 4), "must be '/name'"),
    (SharedMemoryRegion("r", "/", 0, 4), "must be '/name'"),
    (SharedMemoryRegion("r", "/ob\0j", 0, 4), "must be '/name'"),
    (SharedMemoryRegion("", "/obj", 0, 4), "region name"),
    (SharedMemoryRegion("r", "/obj", -1, 4), "must not be negative"),
])
def test_bad_registrations(shm, region, text):
    with pytest.raises(InvalidInput, match=text):
        shm.register(region)
    assert shm.status() == []


def test_symlinks_fifos_and_directories_are_refused(shm, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "obj")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for key in ("/link", "/fifo", "/dir"):
        with pytest.raises(InvalidInput):
            shm.register(SharedMemoryRegion("r", key, 0, 0))
    assert shm.status() == []


def test_names_are_unique_and_regions_bounded(shm):
    fds = open_fds()
    shm.register(SharedMemoryRegion("a", "/obj", 0, 8))
    with pytest.raises(InvalidInput, match="already registered"):
        shm.register(SharedMemoryRegion("a", "/obj", 0, 8))
    shm.register(SharedMemoryRegion("b", "/obj", 0, 8))
    shm.register(SharedMemoryRegion("c", "/obj", 0, 8))
    with pytest.raises(InvalidInput, match="at most 3"):
        shm.register(SharedMemoryRegion("d", "/obj", 0, 8))
    shm.unregister("b")
    shm.unregister("b")  # unknown: nothing to do, as Triton
    assert [r.name for r in shm.status()] == ["a", "c"]
    with pytest.raises(NotFound):
        shm.status("b")
    shm.close()  # shutdown: every descriptor back
    assert shm.status() == [] and open_fds() == fds


def test_an_object_truncated_under_the_server_is_an_error_not_a_crash(shm, tmp_path):
    shm.register(SharedMemoryRegion("r", "/obj", 0, 64))
    os.truncate(tmp_path / "obj", 10)
    with pytest.raises(InvalidInput, match="shrank"):
        shm.read(SharedMemoryRef("r", 32))
    with pytest.raises(InvalidInput, match="shrank"):
        shm.write(SharedMemoryRef("r", 32), b"x" * 32)
    assert os.path.getsize(tmp_path / "obj") == 10  # a write never grows the client's object


def test_a_region_whose_key_was_removed_is_reclaimed(shm, tmp_path):
    """Its owner unlinked it (or went away and the system cleaned up): nobody can reach that memory any more."""
    fds = open_fds()
    shm.register(SharedMemoryRegion("r", "/obj", 0, 8))
    shm.register(SharedMemoryRegion("s", "/obj", 0, 8))
    (tmp_path / "obj").unlink()
    with pytest.raises(InvalidInput, match="was reclaimed"):
        shm.read(SharedMemoryRef("r", 4))
    assert shm.status() == []  # the status call swept 's' too
    assert open_fds() == fds  # both descriptors closed
    (tmp_path / "obj").write_bytes(b"new object, same key")
    shm.register(SharedMemoryRegion("r", "/obj", 0, 8))  # registering again works
    assert shm.read(SharedMemoryRef("r", 3)) == b"new"


def test_the_runtime_closes_every_region_at_shutdown(tmp_path):
    """The one lifecycle's stop (every entry point's) gives every region's descriptor back."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from service.app import build_runtime
    from service.settings import Settings

    (tmp_path / "repo").mkdir()
    runtime = build_runtime(Settings(model_repo=tmp_path / "repo", grpc_port=-1), CollectorRegistry())
    runtime.dataplane.shared_memory.root = tmp_path
    (tmp_path / "obj").write_bytes(b"\0" * 8)

    async def serve_and_stop():
        await runtime.start()
        runtime.dataplane.shared_memory_register(SharedMemoryRegion("r", "/obj", 0, 8))
        assert len(runtime.dataplane.shared_memory_status()) == 1
        await runtime.stop()

    fds = open_fds()
    asyncio.run(serve_and_stop())
    assert runtime.dataplane.shared_memory_status() == [] and open_fds() <= fds
